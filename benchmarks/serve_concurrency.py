#!/usr/bin/env python
"""``kb serve`` under 1 and under 8 concurrent API clients: everybody answered, how long they wait.

Starts a real ``kb serve`` (the default generator unless ``--model``) on a
loopback port with a throwaway home, uploads the sample documents through the
API, then:

1. one client asks the questions one after another (``--questions`` of them);
2. ``--clients`` clients (8) each ask one of the same questions at the same moment.

Every request streams (``stream: true``). Per request: time to the first answer
token, total time, the queue positions the server sent while it waited, whether
the final chunk carried the checked answer with citations. Reported: p50/p95 of
both times per round, every request answered or not, the positions seen.

    .venv/bin/python benchmarks/serve_concurrency.py --out serve.json

Deliberately not here: throughput with several server processes (one generator
per process by design), a model server behind kb serve (KB_LLM_BASE_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server_helpers import start_server, wait_for_job  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--questions", type=int, default=8, help="Questions the single client asks in turn.")
    parser.add_argument("--model", default=None, help="KB_LLM_MODEL for the server (default: the built-in default).")
    parser.add_argument("--home", type=Path, default=Path("/tmp/kb-serve-bench"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    extra = {"KB_LLM_MODEL": args.model} if args.model else {"KB_LLM_MODEL": os.environ.get("KB_LLM_MODEL", "qwen2.5-coder-1.5b-instruct-q4_k_m")}
    args.home.mkdir(parents=True, exist_ok=True)
    home = args.home / f"home-{int(time.time())}"
    server = start_server(home, args.home / "server.log", **extra)
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            client.post("/v1/collections", json={"name": "guide"}).raise_for_status()
            files = [("files", (p.name, p.read_bytes())) for p in sorted((REPO / "data").iterdir()) if p.is_file()]
            job = wait_for_job(client, client.post("/v1/collections/guide/documents", files=files).json())
            assert job["status"] == "done", job
        ask(server.url, "warm up: which port?", "warm-up")  # the generator loads on the first question

        rounds = []
        started = time.perf_counter()
        single = [ask(server.url, QUESTIONS[i % len(QUESTIONS)], "solo") for i in range(args.questions)]
        rounds.append((summary("1 client, one question after another", single, time.perf_counter() - started), single))

        results: list[dict] = [{}] * args.clients
        barrier = threading.Barrier(args.clients)

        def one(index: int) -> None:
            barrier.wait()
            results[index] = ask(server.url, QUESTIONS[index % len(QUESTIONS)], f"client-{index}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rounds.append((summary(f"{args.clients} clients at once", results, time.perf_counter() - started), results))
    finally:
        server.stop()

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    report = {"machine": machine, "model": extra["KB_LLM_MODEL"],
              "rounds": [{"summary": s, "requests": r} for s, r in rounds]}
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print(machine, extra["KB_LLM_MODEL"])
    print("| round | answered | first token p50 / p95 | total p50 / p95 | wall | queue positions seen |")
    print("|---|---|---|---|---|---|")
    for s, _ in rounds:
        print(f"| {s['round']} | {s['answered']}/{s['requests']} | {s['first_token_p50_s']:.1f} / {s['first_token_p95_s']:.1f} s "
              f"| {s['total_p50_s']:.1f} / {s['total_p95_s']:.1f} s | {s['wall_s']:.0f} s | {s['positions_seen']} |")


if __name__ == "__main__":
    main()
