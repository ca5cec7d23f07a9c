"""``kb ui``: the web UI and, when none answers at its address, the service it is a client of.

The UI (Streamlit) loads no model: it asks the service (``kb serve``) for
everything. So that one command still gives a working page, ``kb ui`` starts
``kb serve`` itself when nothing answers at ``KB_SERVICE_URL`` (by default the
local service at ``KB_SERVE_HOST``:``KB_SERVE_PORT``), waits until it has loaded
its models, then starts Streamlit; it stops both when either stops or when it is
stopped (Ctrl-C, SIGTERM), and the children stop with it even when it is killed
(Linux: the parent-death signal). A service named by ``KB_SERVICE_URL`` is never
started here: it is somebody else's.

Deliberately not here: the UI's page (``ui.streamlit_app``), the service (``server``), process managers
(systemd units, containers: run ``kb serve`` and ``kb ui`` there as two services).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from app.settings import Settings
from client.service import ServiceClient

SERVICE_START_TIMEOUT_S = 900.0  # the first start assembles and checks the model files (minutes on a slow disk)
PR_SET_PDEATHSIG = 1


class _Stopped(Exception):
    """SIGTERM or SIGHUP reached ``kb ui``."""


def run_ui(settings: Settings, ui_command: Sequence[str], ui_environment: dict[str, str]) -> int:
    """Runs the UI (and the service when none answers) until one of them exits or ``kb ui`` is stopped."""
    children: list[tuple[str, subprocess.Popen]] = []

    def stop(signum, frame) -> None:
        raise _Stopped()

    for stopping in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stopping, stop)
    try:
        address = settings.service_address
        if not ServiceClient(address).healthy():
            if settings.service_url:
                print(f"kb ui: note: the service at {address} does not answer yet; the page says so until it does",
                      file=sys.stderr)
            else:
                print(f"Starting the service (kb serve) on {address}: loading the models…", flush=True)
                service = _child([sys.executable, "-m", "server"], dict(os.environ))
                children.append(("kb serve", service))
                _wait_for(address, service)
        print(f"Web UI on http://{settings.ui_host}:{settings.ui_port}, a client of the service at {address} "
              "(Ctrl-C to stop)", flush=True)
        children.append(("the web UI", _child(list(ui_command), ui_environment)))
        while True:
            for name, child in children:
                if child.poll() is not None:
                    print(f"kb ui: {name} exited ({child.returncode}); stopping", file=sys.stderr)
                    return child.returncode or 0
            time.sleep(0.5)
    except (KeyboardInterrupt, _Stopped):
        return 0
    except RuntimeError as exc:
        print(f"kb ui: {exc}", file=sys.stderr)
        return 2
    finally:
        for _, child in reversed(children):
            _stop(child)


def _child(command: list[str], environment: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=environment, preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _die_with_parent() -> None:
    """In the child before it runs: SIGTERM when ``kb ui`` dies, however it dies (kill -9 included)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for(address: str, service: subprocess.Popen) -> None:
    probe = ServiceClient(address)
    deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"kb serve exited ({service.returncode}) before it answered; its messages are above")
        if probe.healthy():
            return
        time.sleep(1.0)
    raise RuntimeError(f"kb serve did not answer at {address} within {SERVICE_START_TIMEOUT_S:.0f} s")


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
