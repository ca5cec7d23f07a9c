#!/usr/bin/env python
"""One ``kb serve``, shared: a colleague's question among another user's six, and a question while an
upload is being indexed.

Starts a real ``kb serve`` (``--model``, default the 0.5B model: the figures are ratios) on a loopback
port with a throwaway home and the sample documents in collection ``guide``, then:

1. **fairness**: user A sends ``--batch`` (6) streamed questions at once, user B one question 1.5 s
   later; reported: the order in which the seven finished, B's place, the queue positions each saw
   (did any of A's go up?), B's time to first token and total;
2. **sharing the cores**: the same question asked ``--repeat`` times alone, then as often while
   ``--pdfs`` (the 10-Q filings) are uploaded to another collection and indexed in the same process;
   reported: p50 total time alone, while indexing, and the ratio (issue 23's target: at most 2).

    .venv/bin/python benchmarks/serve_sharing.py --pdfs ../shared/data/pdf/sec-10-q --files 4 --out sharing.json

Deliberately not here: many clients at once (``serve_concurrency.py``), the web UI.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm.models import QWEN_0_5B  # noqa: E402
from tests.server_helpers import start_server, wait_for_job  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
QUESTION = "Which port does the web interface listen on?"
# Timed questions: answered by generation (a refusal would time retrieval only), and different from one
# another, so llama.cpp cannot reuse the previous prompt's computation for the next.
TIMED = ["List the kb commands and what each does.", "What do the exit codes of kb mean?",
         "How long are chunks and how much do neighbouring chunks overlap?"]
A_QUESTIONS = ["List the kb commands.", "What are the exit codes?", "How long are chunks?",
               "Which model answers?", "Where is the index kept?", "How do I start the web UI?"]


def ask(url: str, user: str, question: str, results: dict, key: str) -> None:
    started = time.perf_counter()
    first = None
    positions = []
    with httpx.Client(base_url=url, timeout=900) as client, client.stream(
            "POST", "/v1/chat/completions", json={"model": "guide", "stream": True, "user": user,
                                                  "messages": [{"role": "user", "content": question}]}) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            kb = event.get("kb") or {}
            if "queue_position" in kb and "text" not in kb:
                positions.append(kb["queue_position"])
            delta = (event.get("choices") or [{}])[0].get("delta") or {}
            if delta.get("content") and first is None:
                first = time.perf_counter() - started
    results[key] = {"user": user, "first_token_s": first, "total_s": time.perf_counter() - started,
                    "finished_at": time.perf_counter(), "positions": positions}


def fairness(url: str, batch: int) -> dict:
    results: dict = {}
    threads = [threading.Thread(target=ask, args=(url, "user-a", A_QUESTIONS[n % len(A_QUESTIONS)], results, f"a{n}"))
               for n in range(batch)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    b = threading.Thread(target=ask, args=(url, "user-b", QUESTION, results, "b"))
    b.start()
    for thread in (*threads, b):
        thread.join()
    order = sorted(results, key=lambda key: results[key]["finished_at"])
    went_up = [key for key, r in results.items() if any(later > earlier for earlier, later in zip(r["positions"], r["positions"][1:]))]
    return {"finish_order": order, "b_place": order.index("b") + 1, "a_positions_went_up": went_up,
            "b_first_token_s": results["b"]["first_token_s"], "b_total_s": results["b"]["total_s"],
            "requests": results}


def timed_questions(url: str, repeat: int) -> list[float]:
    times = []
    for n in range(repeat):
        results: dict = {}
        ask(url, "user-c", TIMED[n % len(TIMED)], results, "q")
        times.append(results["q"]["total_s"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=Path, required=True)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default=QWEN_0_5B.name)
    parser.add_argument("--home", type=Path, default=Path("/tmp/kb-serve-sharing"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--env", action="append", default=[], help="KB_X=value for the server (repeatable).")
    args = parser.parse_args()
    import shutil

    shutil.rmtree(args.home, ignore_errors=True)
    extra = dict(item.split("=", 1) for item in args.env)
    server = start_server(args.home, args.home.parent / "serve-sharing.log", KB_LLM_MODEL=args.model, **extra)
    report: dict = {"model": args.model, "env": extra}
    try:
        with httpx.Client(base_url=server.url, timeout=900) as client:
            assert client.post("/v1/collections", json={"name": "guide"}).status_code == 201
            files = [("files", (p.name, p.read_bytes())) for p in sorted((REPO / "data").iterdir()) if p.is_file()]
            wait_for_job(client, client.post("/v1/collections/guide/documents", files=files).json())
            timed_questions(server.url, 1)  # warm
            ask(server.url, "user-c", QUESTION, {}, "warm")
            report["fairness"] = fairness(server.url, args.batch)
            print("fairness:", {k: v for k, v in report["fairness"].items() if k != "requests"}, flush=True)
            alone = timed_questions(server.url, args.repeat)
            assert client.post("/v1/collections", json={"name": "filings"}).status_code == 201
            pdfs = [("files", (p.name, p.read_bytes())) for p in sorted(args.pdfs.glob("*.pdf"))[: args.files]]
            job = client.post("/v1/collections/filings/documents", files=pdfs).json()
            time.sleep(5)  # the job is reading and embedding
            during = timed_questions(server.url, args.repeat)
            status = client.get(f"/v1/jobs/{job['id']}").json()["status"]
            ingest_started = time.perf_counter()
            finished = wait_for_job(client, job, timeout=7200)
            report["sharing"] = {
                "alone_s": alone, "while_indexing_s": during, "job_still_running_after_questions": status == "running",
                "ratio_p50": statistics.median(during) / statistics.median(alone),
                "ingest_rest_s": time.perf_counter() - ingest_started, "ingest_summary": finished.get("summary"),
            }
            print("sharing:", report["sharing"], flush=True)
    finally:
        server.stop()
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
