"""Ingest throughput on Ray: passages per second with 1 and 2 embedder actors, against the in-process ingest.

Each run ingests the same folder into a fresh collection (``KB_HOME`` in a temporary folder) through
``Pipeline.ingest``: in-process (``ray_address`` unset), then on a local Ray (``ray_address=local``) with
``--actors`` embedder actors each. Reported: wall seconds, passages (chunks) embedded, passages per second;
the Ray runs include starting Ray and loading the models in every actor (a cluster that stays up pays that
once), so a second figure leaves out the time to the first written file.

The folder is made here: ``--files`` Markdown files of ``--paragraphs`` English and Chinese paragraphs each
(about 2 passages a file at the default 256 tokens), or ``--folder`` a real one.

Example (docs/benchmarks.md)::

    .venv/bin/python benchmarks/bench_ray_ingest.py --files 300 --actors 1 2 --json ray-ingest.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.pipeline import Pipeline  # noqa: E402
from app.settings import load_settings  # noqa: E402

PARAGRAPHS = [
    "The cistern at site {n} holds {v} litres; its pump was serviced in week {w}, and the filter is type F{n}.",
    "Maintenance crews inspect the valves every {w} days and record the pressure in bar before and after.",
    "第{n}号站点的水箱容量为{v}升，水泵在第{w}周检修过，过滤器型号为F{n}。",
    "Operators must log each inspection in the shared register and report leaks above {v} millilitres a day.",
]


def make_folder(folder: Path, files: int, paragraphs: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        body = "\n\n".join(PARAGRAPHS[(n + p) % len(PARAGRAPHS)].format(n=n, v=n * 7 + p, w=(n + p) % 52)
                           for p in range(paragraphs))
        (folder / f"site-{n:04d}.md").write_text(f"# Site {n}\n\n{body}\n", encoding="utf-8")


def run(folder: Path, home: Path, ray_address: str | None, actors: int | None, store: str) -> dict:
    settings = load_settings(home=home, ray_address=ray_address, ray_embedders=actors, store=store)
    pipeline = Pipeline.from_settings(settings)
    first_written: list[float] = []
    started = time.perf_counter()
    report = pipeline.ingest(folder, progress=False, on_progress=lambda p: first_written.append(time.perf_counter())
                             if p.files_done == 1 and not first_written else None)
    seconds = time.perf_counter() - started
    steady = seconds - (first_written[0] - started) if first_written else seconds
    return {
        "mode": "in-process" if ray_address is None else f"ray, {actors} embedder actor(s)",
        "store": store, "files": len(report.added), "passages": report.chunks_embedded, "seconds": round(seconds, 1),
        "passages_per_s": round(report.chunks_embedded / seconds, 2),
        "passages_per_s_after_first_file": round(max(report.chunks_embedded - 2, 1) / steady, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--paragraphs", type=int, default=12)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--store", choices=("local", "milvus"), default="local")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kb-ray-bench-"))
    try:
        folder = args.folder or work / "docs"
        if args.folder is None:
            make_folder(folder, args.files, args.paragraphs)
        results = [] if args.skip_in_process else [run(folder, work / "home-plain", None, None, args.store)]
        results += [run(folder, work / f"home-ray-{n}", "local", n, args.store) for n in args.actors]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    output = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU", "runs": results}
    print(json.dumps(output, indent=2))
    if args.json:
        args.json.write_text(json.dumps(output, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
