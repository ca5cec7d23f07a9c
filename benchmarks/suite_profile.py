"""Where the test suite's time and memory go: a pytest plugin recording each test's cost.

For every test (setup, call and teardown together) it writes one JSON line: wall seconds, CPU seconds
of the pytest process (all its threads), CPU seconds of the child processes reaped meanwhile (``kb``
commands, servers stopped by a fixture's teardown), the pytest process's resident memory after the
test and its peak so far. At the end it prints the files that took longest and the tests at which the
peak memory rose.

    .venv/bin/python -m pytest -p benchmarks.suite_profile                 # writes suite-profile.jsonl
    SUITE_PROFILE_OUT=/tmp/run.jsonl .venv/bin/python -m pytest -p benchmarks.suite_profile

Left out on purpose: the memory of child processes (a ``kb serve`` lives across many tests; sample the
process tree for that, or read ``/usr/bin/time -v make test``, whose maximum is the largest process's),
and the CPU of processes not yet reaped when a test ends (a module's server counts at its teardown).
Not a timed test: nothing here fails a run.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections import defaultdict
from pathlib import Path

import pytest

_records: list[dict] = []


def _resident_mb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def _cpu_seconds() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started, (own_before, children_before) = time.monotonic(), _cpu_seconds()
    yield
    own_after, children_after = _cpu_seconds()
    _records.append({
        "id": item.nodeid, "wall": round(time.monotonic() - started, 2),
        "self_cpu": round(own_after - own_before, 2), "child_cpu": round(children_after - children_before, 2),
        "rss_mb": _resident_mb(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    })


def pytest_sessionfinish(session, exitstatus):
    if not _records:
        return
    Path(os.environ.get("SUITE_PROFILE_OUT", "suite-profile.jsonl")).write_text(
        "".join(json.dumps(record) + "\n" for record in _records), encoding="utf-8")


def pytest_terminal_summary(terminalreporter):
    if not _records:
        return
    by_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for record in _records:
        totals = by_file[record["id"].split("::")[0]]
        totals[0] += record["wall"]
        totals[1] += record["self_cpu"]
        totals[2] += record["child_cpu"]
    write = terminalreporter.write_line
    write(f"suite profile: {len(_records)} tests, {sum(r['wall'] for r in _records):,.0f} s in tests; "
          "by file (wall / pytest CPU / children's CPU, seconds):")
    for name, (wall, own, children) in sorted(by_file.items(), key=lambda item: -item[1][0])[:15]:
        write(f"  {wall:7.1f} {own:7.1f} {children:7.1f}  {name}")
    write("peak memory of the pytest process rose at:")
    peak = 0
    for record in _records:
        if record["peak_rss_mb"] > peak + 100:
            write(f"  {record['peak_rss_mb']:,} MB  {record['id']}")
        peak = max(peak, record["peak_rss_mb"])
