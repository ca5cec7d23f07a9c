"""Ask one question through the real web UI in headless Chromium and save a screenshot.

A developer's check of what a person sees, not part of the test suite (that uses
streamlit's AppTest). Needs Debian's ``chromium`` and the ``playwright`` Python
package in any environment (it drives /usr/bin/chromium; nothing is downloaded):

    apt-get install chromium && python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright
    /tmp/pw/bin/python scripts/ui_screenshot.py "Which port does the web interface listen on?" ui.png

It starts ``.venv/bin/kb ui`` on a free localhost port with the current ``KB_*``
settings, so index the documents first (``make run`` or ``kb ingest data``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds:.0f}s")


def main(question: str, output: Path) -> None:
    port = free_port()
    env = {**os.environ, "KB_UI_PORT": str(port), "KB_UI_HOST": "127.0.0.1"}
    server = subprocess.Popen([str(REPO / ".venv" / "bin" / "kb"), "ui"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/_stcore/health", 60)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            box = page.get_by_test_id("stChatInputTextArea")
            box.wait_for(timeout=300_000)  # first start loads the models
            box.fill(question)
            box.press("Enter")
            page.get_by_text("Sources", exact=True).wait_for(timeout=300_000)
            page.locator("[data-testid='stExpander']").first.click()
            time.sleep(1)
            page.screenshot(path=str(output), full_page=True)
            print(page.locator("[data-testid='stChatMessage']").last.inner_text())
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Which port does the web interface listen on?",
         Path(sys.argv[2] if len(sys.argv) > 2 else "ui-screenshot.png"))
