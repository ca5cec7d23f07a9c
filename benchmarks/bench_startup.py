"""Start-up cost of the query side: build the pipeline, answer one retrieval, in a fresh process.

Each case runs in its own Python process (imports and model loads are what is
measured), side by side in one run:

- ``lazy``: as the CLI does it: the built-in second embedder (all-MiniLM-L6-v2)
  loads torch and its model only when an English question first needs it;
- ``loaded at start``: the second embedder is made to embed right after the
  pipeline is built, which is what start-up cost before it was lazy (and what
  the UI's ``Pipeline.warm_up`` still pays, behind its start-up spinner).

For a Chinese and an English question: seconds to build the pipeline, seconds
for the first retrieval, whether torch got imported, peak RSS. The generator
is not loaded (see bench_pipeline.py for that).

Example (the sample documents, after ``kb ingest data``)::

    .venv/bin/python benchmarks/bench_startup.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from app.pipeline import Pipeline
from app.settings import load_settings
pipeline = Pipeline.from_settings(load_settings())
if sys.argv[2] == "loaded at start" and pipeline.second_embedder is not None:
    pipeline.second_embedder.embed_query("warm up")
t1 = time.perf_counter()
pipeline.retrieve(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"start_s": t1 - t0, "first_query_s": t2 - t1, "torch": "torch" in sys.modules,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

QUESTIONS = {"zh": "中文文本文件支持哪些编码？", "en": "Which port does the web interface listen on?"}


def run_case(question: str, mode: str) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", CHILD, question, mode], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    for language, question in QUESTIONS.items():
        for mode in ("lazy", "loaded at start"):
            runs = [run_case(question, mode) for _ in range(args.repeat)]
            print(json.dumps({
                "question": language, "second_embedder": mode,
                "start_s": round(statistics.median(r["start_s"] for r in runs), 2),
                "first_query_s": round(statistics.median(r["first_query_s"] for r in runs), 2),
                "torch_imported": runs[0]["torch"],
                "max_rss_mb": round(statistics.median(r["max_rss_mb"] for r in runs)),
            }, ensure_ascii=False))


if __name__ == "__main__":
    main()
