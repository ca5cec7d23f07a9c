"""The one-screen table of today's figures at the top of docs/benchmarks.md, made from docs/figures.json.

Each figure in ``docs/figures.json`` says what was measured, on which set, with which command, at which
commit, and with which values of the settings it depends on (``settings``: ``KB_*`` name -> value). The
table is rendered between the markers ``<!-- today:begin -->`` and ``<!-- today:end -->``; a figure
measured with a setting whose default has changed since is marked *stale* in the table, naming the
setting, so a default cannot change while the table goes on showing the old figure as today's.

    .venv/bin/python benchmarks/today_table.py          # write the table into docs/benchmarks.md
    .venv/bin/python benchmarks/today_table.py --check  # exit 1 when the file's table is not the rendering

``tests/test_architecture.py`` runs the check, so a figure added to figures.json without the table, or a
default changed without re-measuring, fails the suite until the table is rendered again (and says so).

Deliberately not here: measuring anything (the scripts named in each figure's command do).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIGURES = REPO / "docs" / "figures.json"
PAGE = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- today:begin -->", "<!-- today:end -->"


def current_defaults() -> dict[str, str]:
    """``KB_<NAME>`` -> today's default, as text."""
    sys.path.insert(0, str(REPO))
    from app.settings import Settings

    return {f"KB_{name.upper()}": str(field.default) for name, field in Settings.model_fields.items()
            if field.default is not None and not callable(field.default)}


def stale_settings(figure: dict, defaults: dict[str, str]) -> list[str]:
    """The settings this figure was measured with whose defaults are different today."""
    return [f"{name} was {value}, now {defaults[name]}" for name, value in figure.get("settings", {}).items()
            if name in defaults and str(value) != defaults[name]]


def render(figures: list[dict], defaults: dict[str, str]) -> str:
    rows = ["| area | measure | today | target | set | measured |", "|---|---|---|---|---|---|"]
    for figure in figures:
        stale = stale_settings(figure, defaults)
        when = f"{figure['date']} ({figure['commit']})"
        if stale:
            when += " — **stale**: " + "; ".join(stale)
        rows.append(f"| {figure['area']} | {figure['measure']} | **{figure['value']}** | {figure.get('target', '')} | "
                    f"{figure['set']} | {when} |")
    commands = sorted({figure["command"] for figure in figures})
    return "\n".join([BEGIN, "", *rows, "", "Commands (each section below has the full ones):", "",
                      *(f"- `{command}`" for command in commands), "", END])


def current_table() -> str:
    text = PAGE.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        raise SystemExit(f"{PAGE} has no {BEGIN} ... {END} block")
    return text[start:end + len(END)]


def check() -> list[str]:
    """Problems with the table in docs/benchmarks.md: empty when it is the rendering of figures.json."""
    figures = json.loads(FIGURES.read_text(encoding="utf-8"))
    expected = render(figures, current_defaults())
    return [] if current_table() == expected else [
        "docs/benchmarks.md's table of today's figures is not the rendering of docs/figures.json "
        "(or a default changed since a figure was measured): run benchmarks/today_table.py"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.check:
        problems = check()
        print("\n".join(problems) or "the table is today's")
        raise SystemExit(1 if problems else 0)
    figures = json.loads(FIGURES.read_text(encoding="utf-8"))
    text = PAGE.read_text(encoding="utf-8")
    table = render(figures, current_defaults())
    start, end = text.find(BEGIN), text.find(END)
    text = text[:start] + table + text[end + len(END):] if start >= 0 and end >= 0 else text
    PAGE.write_text(text, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
