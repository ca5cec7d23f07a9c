#!/usr/bin/env python
"""``kb serve`` under 1 and under 8 concurrent clients, the web UI's and the API's: everybody answered, how long they wait.

Starts a real ``kb serve`` (the default generator unless ``--model``) on a
loopback port with a throwaway home, uploads the sample documents through the
API, then:

1. one client asks the questions one after another (``--questions`` of them);
2. ``--clients`` clients (8) each ask ``--per-client`` questions (one after another) at the same moment;
   with ``--browser-clients K``, K of them are browsers (Debian's chromium, driven by playwright) asking
   in the web UI, a ``kb ui`` started against the service: UI and API together, one model, one queue;
3. with ``--fairness``: user A sends 6 questions at once through the API, user B one question 1.5 s
   later (in the web UI when there are browser clients): where B finishes, the positions B is told.

Every API request streams (``stream: true``). Per question: time to the first answer token (in a
browser: to the first text of the answer on the page, looked for every 0.1 s), total time (in a
browser: until the answer is drawn again with its rating buttons, i.e. checked and saved), the queue
positions the client was told. Reported: p50/p95 of both times per round and per kind of client,
every question answered or not, and the peak resident memory (VmHWM) of the service and of the UI.

    .venv/bin/python benchmarks/serve_concurrency.py --out serve.json
    .venv/bin/python benchmarks/serve_concurrency.py --browser-clients 4 --per-client 2 --fairness --out serve-ui.json

Deliberately not here: throughput with several server processes (one generator
per process by design), a model server behind kb serve (KB_LLM_BASE_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ui_clients import BrowserClient  # noqa: E402
from tests.server_helpers import free_port, start_server, wait_for_job, wait_until_up  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "Which port does the web interface listen on?",
    "How do I start the web UI?",
    "Which command indexes a folder?",
    "What happens when an ingest is interrupted?",
    "Which address does the web UI bind to?",
    "How can I make answers faster?",
    "What does kb search show?",
    "网页界面默认监听哪个端口？",
]


def ask(url: str, question: str, client_name: str) -> dict:
    started = time.perf_counter()
    first_token = None
    positions: list[int] = []
    final = None
    with httpx.Client(base_url=url, timeout=900) as client, client.stream(
        "POST", "/v1/chat/completions",
        json={"model": "guide", "stream": True, "user": client_name,
              "messages": [{"role": "user", "content": question}]},
    ) as response:
        status = response.status_code
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            choice = event["choices"][0]
            if choice["delta"].get("content") and first_token is None:
                first_token = time.perf_counter()
            if "kb" in event and choice["finish_reason"] is None:
                positions.append(event["kb"]["queue_position"])
            if choice["finish_reason"] == "stop":
                final = event["kb"]
    finished = time.perf_counter()
    return {
        "question": question, "status": status, "answered": bool(final and final["text"]),
        "cited": bool(final and (final["citations"] or final["closest_passages"])),
        "abstained": bool(final and final["abstained"]),
        "first_token_s": round((first_token or finished) - started, 2), "total_s": round(finished - started, 2),
        "queue_positions": positions,
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(name: str, results: list[dict], wall: float) -> dict:
    firsts = [r["first_token_s"] for r in results]
    totals = [r["total_s"] for r in results]
    return {
        "round": name, "requests": len(results), "answered": sum(r["answered"] for r in results),
        "with_citations_or_passages": sum(r["cited"] for r in results),
        "first_token_p50_s": statistics.median(firsts), "first_token_p95_s": percentile(firsts, 0.95),
        "total_p50_s": statistics.median(totals), "total_p95_s": percentile(totals, 0.95),
        "wall_s": round(wall, 1), "positions_seen": sorted({p for r in results for p in r["queue_positions"]}),
    }


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's resident memory from /proc: its peak (VmHWM) or now (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        for task in Path(f"/proc/{current}/task").iterdir():
            children = [int(c) for c in (task / "children").read_text().split()]
            found += children
            frontier += children
    return found


def start_ui(service_url: str, home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``kb ui`` against the running service (it starts none of its own: KB_SERVICE_URL names one)."""
    port = free_port()
    env = {**os.environ, "KB_HOME": str(home), "KB_SERVICE_URL": service_url, "KB_COLLECTION": "guide",
           "KB_UI_PORT": str(port)}
    handle = log.open("w")
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "ui"], env=env, cwd=REPO, stdout=handle,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/_stcore/health", process, log, "kb ui")
    return process, url


def run_clients(api_url: str, plan: list[tuple[str, list[str], float]], browsers: dict) -> list[list[dict]]:
    """Each entry of ``plan`` is one client: (name, questions one after another, seconds to wait after the start);
    a name that ``browsers`` holds asks in that browser, any other through the API. All start together."""
    results: list[list[dict]] = [[] for _ in plan]
    barrier = threading.Barrier(len(plan))

    def one(index: int) -> None:
        name, questions, delay = plan[index]
        barrier.wait()
        time.sleep(delay)
        for question in questions:
            answer = browsers[name].ask(question) if name in browsers else ask(api_url, question, name)
            answer["client"] = "web UI" if name in browsers else "API"
            answer["who"] = name
            answer["finished_at"] = time.perf_counter()
            results[index].append(answer)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(plan))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=1, help="Questions each concurrent client asks in turn.")
    parser.add_argument("--browser-clients", type=int, default=0, help="How many of the clients ask in the web UI.")
    parser.add_argument("--fairness", action="store_true", help="Also the 6+1 case (A: 6 at once, B: 1 after 1.5 s).")
    parser.add_argument("--questions", type=int, default=8, help="Questions the single client asks in turn.")
    parser.add_argument("--model", default=None, help="KB_LLM_MODEL for the server (default: the built-in default).")
    parser.add_argument("--home", type=Path, default=Path("/tmp/kb-serve-bench"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    extra = {"KB_LLM_MODEL": args.model} if args.model else {"KB_LLM_MODEL": os.environ.get("KB_LLM_MODEL", "qwen2.5-coder-1.5b-instruct-q4_k_m")}
    args.home.mkdir(parents=True, exist_ok=True)
    home = args.home / f"home-{int(time.time())}"
    server = start_server(home, args.home / "server.log", **extra)
    ui = None
    browsers: dict = {}
    memory: dict[str, float] = {}
    rounds = []
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            client.post("/v1/collections", json={"name": "guide"}).raise_for_status()
            files = [("files", (p.name, p.read_bytes())) for p in sorted((REPO / "data").iterdir()) if p.is_file()]
            job = wait_for_job(client, client.post("/v1/collections/guide/documents", files=files).json())
            assert job["status"] == "done", job
        ask(server.url, "warm up: which port?", "warm-up")  # the generator loads on the first question
        if args.browser_clients or args.fairness:
            ui, ui_url = start_ui(server.url, home, args.home / "ui.log")
            names = [f"browser-{i}" for i in range(args.browser_clients)] + (["browser-B"] if args.fairness else [])
            for name in names:
                browsers[name] = BrowserClient(ui_url)
        memory["service_idle_rss_mb"] = memory_mb(server.process.pid, "VmRSS")
        if ui is not None:
            memory["ui_idle_rss_mb"] = sum(memory_mb(pid, "VmRSS") for pid in [ui.pid, *descendants(ui.pid)])

        started = time.perf_counter()
        single = [ask(server.url, QUESTIONS[i % len(QUESTIONS)], "solo") for i in range(args.questions)]
        for result in single:
            result["client"] = "API"
        rounds.append((summary("1 client, one question after another", single, time.perf_counter() - started), single))
        if browsers:  # the same, asked in the web UI: what the UI adds to a question
            started, alone = time.perf_counter(), []
            for i in range(args.questions):
                browser = next(iter(browsers.values()))
                browser.new_conversation()  # each question on its own, as the API client asks them (no history)
                alone.append(browser.ask(QUESTIONS[i % len(QUESTIONS)]))
            browser.new_conversation()
            rounds.append((summary("1 browser in the web UI, one question after another", alone,
                                   time.perf_counter() - started), alone))

        plan = []
        for index in range(args.clients):
            name = f"browser-{index}" if index < args.browser_clients else f"client-{index}"
            questions = [QUESTIONS[(index + turn * 3) % len(QUESTIONS)] for turn in range(args.per_client)]
            plan.append((name, questions, 0.0))
        started = time.perf_counter()
        results = [r for per_client in run_clients(server.url, plan, browsers) for r in per_client]
        wall = time.perf_counter() - started
        label = f"{args.clients} clients x {args.per_client} at once"
        if args.browser_clients:
            label += f" ({args.browser_clients} in the web UI)"
        rounds.append((summary(label, results, wall), results))
        for kind in ("web UI", "API") if args.browser_clients else ():
            mine = [r for r in results if r["client"] == kind]
            rounds.append((summary(f"  of which {kind}", mine, wall), mine))

        if args.fairness:
            b_name = "browser-B" if browsers else "B"
            plan = [("A", [QUESTIONS[i]], 0.0) for i in range(6)] + [(b_name, [QUESTIONS[6]], 1.5)]
            started = time.perf_counter()
            results = [r for per_client in run_clients(server.url, plan, browsers) for r in per_client]
            order = sorted(results, key=lambda r: r["finished_at"])
            b = next(r for r in results if r["who"] == b_name)
            b["finished_rank"] = order.index(b) + 1
            rounds.append((summary(f"6+1: A 6 at once (API), B 1 after 1.5 s ({b['client']}): B finished "
                                   f"{b['finished_rank']} of 7, positions told {b['queue_positions']}", results,
                                   time.perf_counter() - started), results))
        memory["service_peak_rss_mb"] = memory_mb(server.process.pid)
        if ui is not None:
            memory["ui_peak_rss_mb"] = sum(memory_mb(pid) for pid in [ui.pid, *descendants(ui.pid)])
    finally:
        for browser in browsers.values():
            browser.close()
        if ui is not None:
            ui.terminate()
            ui.wait(timeout=60)
        server.stop()

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    report = {"machine": machine, "model": extra["KB_LLM_MODEL"], "memory": memory,
              "rounds": [{"summary": s, "requests": r} for s, r in rounds]}
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print(machine, extra["KB_LLM_MODEL"], memory)
    print("| round | answered | first token p50 / p95 | total p50 / p95 | wall | queue positions seen |")
    print("|---|---|---|---|---|---|")
    for s, _ in rounds:
        print(f"| {s['round']} | {s['answered']}/{s['requests']} | {s['first_token_p50_s']:.1f} / {s['first_token_p95_s']:.1f} s "
              f"| {s['total_p50_s']:.1f} / {s['total_p95_s']:.1f} s | {s['wall_s']:.0f} s | {s['positions_seen']} |")


if __name__ == "__main__":
    main()
