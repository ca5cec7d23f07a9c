"""Starting a real ``kb serve`` on a loopback port for the service's tests.

The server runs as its own process, exactly as ``kb serve`` runs it, with the
small built-in generator (Qwen2.5-Coder-0.5B) so that answers come in seconds:
the tests check the service (citations travel, permissions hold, uploads land),
not the model's wisdom.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from llm.models import QWEN_0_5B

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def kb_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "KB_HOME": str(home), "KB_LLM_MODEL": QWEN_0_5B.name, "KB_THREADS": "2"}
    env.update(extra)
    return env


BECOME_OTHER_PROCESSES = ("serve", "ui")  # `kb serve` execs the server in its place; `kb ui` starts Streamlit


def kb_process(home: Path, *args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess:
    """Run ``kb`` against ``home`` in a process of its own, as a user starts it."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=kb_env(home, **extra), input=stdin,
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def kb(home: Path, *args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess:
    """Run a ``kb`` command against ``home`` in this process, through typer's runner: the same commands,
    options, output and exit codes as the console script, without starting a process (each start imports
    torch and sentence-transformers, ~8 s of CPU). An error that is not an exit code is raised here, with
    its traceback, instead of ending as exit code 1. The console scripts themselves, as a user starts
    them, are tested in test_cli (as is ``--ray`` with no address, which ``kb``'s ``main`` completes). A
    command that loads models loads them here, unless the test asks for the ``run_models`` fixture.
    """
    from typer.testing import CliRunner

    from cli.main import commands

    if args and args[0] in BECOME_OTHER_PROCESSES:
        raise ValueError(f"`kb {args[0]}` replaces or starts processes: run it with kb_process")
    variables = {name: value for name, value in kb_env(home, **extra).items() if name.startswith("KB_")}
    unset = {name: None for name in os.environ if name.startswith("KB_") and name not in variables}
    done = CliRunner().invoke(commands, list(args), input=stdin, env={**unset, **variables}, catch_exceptions=False)
    return subprocess.CompletedProcess(["kb", *args], done.exit_code, done.stdout, done.stderr)


@dataclass
class RunningServer:
    url: str
    home: Path
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(home: Path, log: Path, **extra: str) -> RunningServer:
    port = free_port()
    env = kb_env(home, KB_SERVE_PORT=str(port), **extra)
    handle = log.open("w")  # a pipe would fill up and stall the server
    process = subprocess.Popen([sys.executable, "-m", "server"], env=env, cwd=REPO, stdout=handle,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/healthz", process, log, "kb serve")
    return RunningServer(url, home, process, log)


def wait_until_up(health_url: str, process: subprocess.Popen, log: Path, name: str, timeout: float = 180) -> None:
    """Until ``health_url`` answers 200; RuntimeError (with the log's end) if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text(encoding='utf-8')[-3000:]}")
        try:
            if httpx.get(health_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{name} did not start within {timeout:.0f} s: {log.read_text(encoding='utf-8')[-3000:]}")


# What a robust client retries: a GET whose connection broke before an answer came (a keep-alive connection
# the server closed as the request went out, a reset under load). A GET changes nothing, so asking again is safe.
RETRIED = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


def get_retrying(client: httpx.Client, path: str, attempts: int = 5) -> httpx.Response:
    for attempt in range(attempts):
        try:
            return client.get(path)
        except RETRIED:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def wait_for_job(client: httpx.Client, job: dict, timeout: float = 900) -> dict:
    """Poll a job until it ends, as a robust client polls: GETs retried, a pause between them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get_retrying(client, f"/v1/jobs/{job['id']}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job did not finish within {timeout:.0f} s: {job}")
