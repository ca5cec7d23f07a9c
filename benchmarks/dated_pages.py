"""Turn DomainRAG's passages into the web pages they were cut from: a dated Chinese collection.

DomainRAG (``../shared/data/qa/domainrag``) holds passages of a university's admissions
site (news, admission notices, Q&A pages of several years), each with its page's title,
address and publication date, word-segmented with spaces. Questions that name a year
("2019年……优秀率") need the pages as a user would have saved them: one file per page,
its title, its date, its text. This script writes them:

    .venv/bin/python benchmarks/dated_pages.py ../shared/data/qa/domainrag /tmp/dated-pages

One HTML file per page (the page's id as its name, so that the name carries no year): ``<title>``,
an ``<h1>``, a "发布时间：YYYY-MM-DD" line as such sites print it, then the page's passages in
order, overlapping passages merged, the segmentation spaces between Chinese characters removed.

Deliberately not here: questions (``benchmarks/data/dated_pages_zh_questions.jsonl``), and any
knowledge of how the product reads dates.
"""

from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

_CJK = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]"
_SEGMENTATION_SPACE = re.compile(rf"(?<={_CJK}) +|(?: +)(?={_CJK})")
MIN_OVERLAP = 20


def unsegment(text: str) -> str:
    """DomainRAG's word segmentation undone: no space next to a Chinese character, lines trimmed."""
    return "\n".join(_SEGMENTATION_SPACE.sub("", line).strip() for line in text.split("\n"))


def merge(parts: list[str]) -> list[str]:
    """Passages of one page, in order, with those contained in another dropped and overlapping ones joined."""
    kept: list[str] = []
    for part in parts:
        if any(part in other for other in kept):
            continue
        kept = [other for other in kept if other not in part]
        for i, other in enumerate(kept):
            overlap = next((n for n in range(min(len(other), len(part)), MIN_OVERLAP - 1, -1)
                            if other.endswith(part[:n])), 0)
            if overlap:
                kept[i] = other + part[overlap:]
                break
            overlap = next((n for n in range(min(len(other), len(part)), MIN_OVERLAP - 1, -1)
                            if part.endswith(other[:n])), 0)
            if overlap:
                kept[i] = part + other[overlap:]
                break
        else:
            kept.append(part)
    return kept


def pages(domainrag: Path) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for name in ("basic_qa.jsonl", "basic_qa_retrieved_bm25.jsonl"):
        for line in (domainrag / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for passage in [*row["positive_reference"], *row.get("retrieved_psgs", [])]:
                page = found.setdefault(str(passage["id"]), {"title": passage["title"], "date": passage.get("date"),
                                                        "url": passage["url"], "parts": {}})
                page["date"] = page["date"] or passage.get("date")
                text = unsegment(passage["contents"])
                order = passage.get("psg_id")
                page["parts"].setdefault(text, order)
    return found


def write(page_id: str, page: dict, out: Path) -> None:
    ordered = sorted(page["parts"], key=lambda text: (page["parts"][text] is None, page["parts"][text] or 0))
    body = "\n".join(f"<p>{html.escape(paragraph)}</p>" for part in merge(ordered)
                     for paragraph in part.split("\n") if paragraph.strip())
    title = html.escape(unsegment(page["title"]))
    dated = f"<p>发布时间：{page['date']}</p>\n" if page["date"] else ""  # two passages come without a date
    out.joinpath(f"page-{page_id}.html").write_text(
        f"<!DOCTYPE html>\n<html lang=\"zh\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
        f"<body>\n<h1>{title}</h1>\n{dated}{body}\n</body></html>\n",
        encoding="utf-8",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("domainrag", type=Path, help="../shared/data/qa/domainrag")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    found = pages(args.domainrag)
    for page_id, page in sorted(found.items()):
        write(page_id, page, args.out)
    years = sorted({page["date"][:4] for page in found.values() if page["date"]})
    print(f"{len(found)} pages, {years[0]}-{years[-1]}, written to {args.out}")


if __name__ == "__main__":
    main()
