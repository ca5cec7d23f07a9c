"""Scoring answers to the labelled document question sets of ``benchmarks/data/``, by kind of question.

The kinds, and what "right" means for each (an answer *states* a form when it contains it, commas,
spaces and "$" aside, a number not as part of a longer one):

- single facts (``single_figure``, ``latest``, ``single_fact``, ``table_cell``, ``year_named``): the
  answer states one accepted form of a gold item; for ``year_named`` also whether it states a trap (the
  value another year's page gives);
- several figures (``across_periods``, ``across_companies``, ``across_versions``, ``within_filing``, and
  the analysts' ``compare``, ``relate``, ``changed``, ``explain``): every gold item stated, and the share;
- lists across documents (``which_documents``, ``per_document_fact``, ``count_documents``): complete when
  every gold document is named by one of its accepted forms (and, for ``per_document_fact``, its value is
  stated too); also whether the answer is made of citation markers only;
- unanswerable questions (``answerable`` false, e.g. ``near_miss``): refused when the pipeline answered
  "not in the documents" itself.

A false refusal is an answerable question answered "not in the documents".

Deliberately not here: running the questions (``benchmarks/doc_questions.py``).
"""

from __future__ import annotations

import re
import statistics

SINGLE = {"single_figure", "latest", "single_fact", "table_cell", "year_named"}
MULTI = {"across_periods", "across_companies", "across_versions", "within_filing",
         "compare", "relate", "changed", "explain"}
LISTS = {"which_documents", "per_document_fact", "count_documents"}
_MARKER = re.compile(r"[\[【]\s*\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\s*[\]】]")


def normalise(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    return re.sub(r"[\s$＄]+", "", text)


def states(answer: str, form: str) -> bool:
    """Does the answer state ``form`` (commas, spaces and $ aside; a number not as part of a longer one)?"""
    target, text = normalise(form), normalise(answer)
    if not target:
        return False
    pattern = re.escape(target)
    if target[0].isdigit():
        pattern = r"(?<![\d.])" + pattern
    if target[-1].isdigit():
        pattern += r"(?![\d]|\.\d)"
    return re.search(pattern, text) is not None


def item_stated(answer: str, item: dict) -> bool:
    return any(states(answer, form) for form in [item.get("value", ""), *item.get("accept", [])])


def document_named(answer: str, item: dict, with_value: bool) -> bool:
    named = any(states(answer, form) for form in item.get("accept", []))
    if not with_value or "value_accept" not in item and "value" not in item:
        return named
    return named and any(states(answer, form) for form in [item.get("value", ""), *item.get("value_accept", [])])


def markers_only(answer: str) -> bool:
    """An answer whose text, markers and punctuation aside, says almost nothing ("[1], [2] and [3].")."""
    words = re.findall(r"\w+", _MARKER.sub(" ", answer))
    return len(words) <= 3 and bool(_MARKER.search(answer))


def score(question: dict, result: dict) -> dict:
    gold = question.get("gold", [])
    files = [source["source"] for source in result.get("sources", [])]
    scored: dict = {"id": question["id"], "kind": question["kind"], "answerable": question["answerable"],
                    "collection": question.get("collection")}
    if not question["answerable"]:
        scored["refused"] = bool(result.get("abstained"))
        return scored
    gold_files = list(dict.fromkeys(item["file"] for item in gold))
    if gold_files:
        scored["right_document"] = any(f in files for f in gold_files)
        scored["document_share"] = sum(f in files for f in gold_files) / len(gold_files)
    if "passages" in result and question["kind"] in SINGLE:
        shown = "\n".join(result["passages"])
        scored["figure_in_passages"] = any(item_stated(shown, item) for item in gold)
    if "answer" not in result:
        return scored
    answer = result["answer"]
    scored["false_refusal"] = bool(result.get("abstained"))
    kind = question["kind"]
    draft = result.get("draft")
    if draft and kind not in LISTS:
        # The model's text before any check: a refusal of a right draft is a false refusal proper; a refusal of
        # a wrong one stopped a wrong answer (the checks are judged by both).
        scored["draft_right"] = (any(item_stated(draft, item) for item in gold) if kind in SINGLE
                                 else bool(gold) and all(item_stated(draft, item) for item in gold))
    if kind in SINGLE:
        # several gold items of a single-fact question are alternative places of the same fact
        scored["figure_right"] = any(item_stated(answer, item) for item in gold)
        if question.get("traps"):
            scored["trap_stated"] = any(states(answer, trap["value"]) for trap in question["traps"])
    elif kind in LISTS:
        named = [document_named(answer, item, kind == "per_document_fact") for item in gold]
        scored["items_share"] = sum(named) / len(named)
        scored["all_items"] = all(named)
        scored["markers_only"] = markers_only(answer)
    else:
        stated = [item_stated(answer, item) for item in gold]
        scored["items_share"] = sum(stated) / len(stated)
        scored["all_items"] = all(stated)
    return scored


def right(scored: dict) -> bool | None:
    """The one yes/no a question is judged by: its figure, all its items, or its refusal."""
    for key in ("figure_right", "all_items", "refused"):
        if key in scored:
            return scored[key]
    return None


def summarise(scored: list[dict], results: list[dict]) -> dict:
    answerable = [s for s in scored if s["answerable"]]
    summary: dict = {"questions": len(scored)}
    with_documents = [s for s in answerable if "right_document" in s]
    if with_documents:
        summary["right_document"] = share([s["right_document"] for s in with_documents])
    if any("figure_in_passages" in s for s in scored):
        summary["single_figure_in_passages"] = share([s["figure_in_passages"] for s in scored if "figure_in_passages" in s])
    if any("false_refusal" in s or "refused" in s for s in scored):
        summary.update({
            "single_figure_accuracy": share([s["figure_right"] for s in scored if "figure_right" in s]),
            "traps_stated": share([s["trap_stated"] for s in scored if "trap_stated" in s]),
            "multi_all_items": share([s["all_items"] for s in scored if "all_items" in s and s["kind"] in MULTI]),
            "multi_items_share": mean([s["items_share"] for s in scored if "items_share" in s and s["kind"] in MULTI]),
            "lists_complete": share([s["all_items"] for s in scored if "all_items" in s and s["kind"] in LISTS]),
            "lists_items_share": mean([s["items_share"] for s in scored if "items_share" in s and s["kind"] in LISTS]),
            "lists_markers_only": share([s["markers_only"] for s in scored if "markers_only" in s]),
            "false_refusals": share([s["false_refusal"] for s in answerable if "false_refusal" in s]),
            "drafts_right": share([s["draft_right"] for s in answerable if "draft_right" in s]),
            "right_drafts_refused": share([s["false_refusal"] for s in answerable if s.get("draft_right")]),
            "wrong_drafts_shown": share([not s["false_refusal"] for s in answerable
                                         if "draft_right" in s and not s["draft_right"]]),
            "unanswerable_refused": share([s["refused"] for s in scored if not s["answerable"]]),
            "first_token_s_median": median([r["first_token_ms"] / 1e3 for r in results if "first_token_ms" in r]),
            "total_s_median": median([r["total_ms"] / 1e3 for r in results if "total_ms" in r]),
        })
        by_kind: dict[str, list[dict]] = {}
        for s in scored:
            by_kind.setdefault(s["kind"], []).append(s)
        summary["by_kind"] = {kind: {"n": len(items), "right": share([right(s) for s in items])}
                              for kind, items in sorted(by_kind.items())}
    return {key: value for key, value in summary.items() if value not in ("-", None)}


def share(values: list) -> str:
    if not values:
        return "-"
    hits = sum(bool(v) for v in values)
    return f"{hits}/{len(values)} ({hits / len(values):.0%})"


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None
