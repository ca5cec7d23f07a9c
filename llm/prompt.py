"""Build the grounded prompt: numbered sources [1]..[n] that fit the context window.

Worked example (two hits, plenty of room)::

    system: You answer questions using only the numbered sources ...
    user:   Sources:
            [1] guide.pdf, page 2
            Run `make run` to install and start the app.

            [2] guide_zh.md › 安装
            运行 make run 即可安装并启动。

            Question: How do I start the app?

Sources are added best first while they fit: the budget is the model's context
window minus room for the answer and the fixed instructions, counted with the
model's own tokenizer (a character estimate is off by 2-3x between Chinese and
English). A source that only partly fits is cut at a sentence or word boundary
when at least ``min_partial_tokens`` remain, otherwise dropped.

Tables reach the model linearised (``linearise_tables``): each value next to its
column heading, since the small model misreads wide Markdown tables.

Each source's header names its document (``Chunk.header``: title, organisation,
period), so the model can tell Apple's Q2 figure from Apple's Q3 one.

Passage trimming (``source_tokens``): prompt processing dominates the time to
first token on a CPU, so every source after the first ``whole_sources`` is cut
down to its sentences that share the most keywords with the question (stemmed
English, jieba Chinese: ``text.keywords``), kept in their original order
with "…" where sentences were left out, within ``source_tokens`` tokens. A source
with no keyword in common keeps its opening sentences. The best-ranked sources
stay whole: they hold the answer most often and their context helps the model.
The model, the citation check and the UI all see the same excerpt.

Conversation history: the last ``history_turns`` exchanges go in as earlier
user/assistant messages (questions and answers only, not their sources), so
the model can resolve "its" in a follow-up; they are dropped oldest first when
they would take room the sources need.

Prompt caching: the system prompt is identical for every question and comes
first, so llama.cpp keeps its evaluated prefix between questions
(llama-cpp-python reuses the longest common token prefix of consecutive
prompts); nothing question-specific may go into it.

Deliberately not here: choosing which hits deserve to be sources (the
pipeline decides; this module only fits them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from text.periods import spell_months
from text.table_format import TABLE_ROW, TABLE_RULE
from llm.generator import ChatMessage
from core.types import Hit, Question, Source, Turn
from text.keywords import content_keywords, text_language

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources the user gives you.\n"
    "Rules:\n"
    "- Use only facts stated in the sources. Do not use outside knowledge.\n"
    "- After each sentence, cite the sources that support it with their numbers in square brackets, "
    "like [1] or [2][3].\n"
    "- If the sources do not contain the answer, say that the documents do not contain it.\n"
    "- Answer in the language of the question: a Chinese question gets a Chinese answer "
    "(如果问题是中文，请用中文回答).\n"
    "- Be concise."
)


# The closing instruction is in the question's language: small models follow an
# instruction in the language they are about to write much more reliably.
CLOSING = {
    # "in English" is spelled out: with a Chinese source ranked first the model otherwise answers in Chinese.
    "en": "Question: {question}\nAnswer in English from the sources above, and cite them like [1]:",
    "zh": "问题：{question}\n请只根据上面的资料用中文回答，并在每句话后用 [1] 这样的编号注明来源：",
}
# A question across periods is asked of one document at a time (``llm.per_document``): given all of them at
# once, the 1.5B model sums them up as "X has increased over time [1][2][3]" without a single figure.
FOCUS = {
    "en": "Question: {question}\nThe source is from {document}. Do not compare periods and do not calculate a change: "
          "answer in one English sentence with the figure the source gives for {document} itself, cited like [1]:",
    "zh": "问题：{question}\n资料来自{document}。不要比较不同时期，也不要计算变化：用一句中文写出资料中{document}本身的数字，"
          "并用 [1] 注明来源：",
}




# A question asking which documents say something (``retrieval.scope.Scope.lists``) is asked of one document at a
# time too; the line must say what this document states, or that it does not, so the list keeps only those that do.
LIST_FOCUS = {
    "en": "Question: {question}\nThe source is from {document}. Answer for this document alone, in one English "
          "sentence that says what the source states about it, cited like [1]. If the source does not say, write: "
          "Not stated.",
    "zh": "问题：{question}\n资料来自{document}。只就这份资料回答：用一句中文写出资料中与问题有关的内容，并用 [1] 注明来源。"
          "如果资料没有提到，就写：没有提到。",
}


# A quarter is "three months" in statement headings; the question's word must meet the heading's.
_SYNONYMS = {"quarter": "three month", "quarterly": "three month", "季度": "三个月", "year-to-date": "", "ytd": "",
             "half": "six month", "上半年": "六个月"}


def _synonym_terms(text: str) -> set[str]:
    """The keywords of what a period word of ``text`` is called in statement headings ("quarter" -> three, month)."""
    lowered = text.lower()
    return set(content_keywords(" ".join(same for word, same in _SYNONYMS.items() if word in lowered)))


@lru_cache(maxsize=4096)  # a table's headings come back for every row and every question
def _column_terms(text: str) -> frozenset[str]:
    # Headings abbreviate months ("Three Months Ended Apr 1, 2023") where questions and document periods spell
    # them out ("quarter ended April 1, 2023"): without that the year-earlier column ties with the asked one.
    return frozenset(content_keywords(spell_months(text))) | _synonym_terms(text)


def _asked_terms(question: Question | None, focus: str) -> set[str]:
    """What a column heading should share with: the question's keywords, the focused document's, period synonyms."""
    if question is None:
        return set()
    terms = set(question.content_keywords) | _synonym_terms(question.text)
    spelled = spell_months(question.text)
    if spelled != question.text:  # "Sep 30, 2023" asked: its keywords as the headings' would be
        terms |= set(content_keywords(spelled))
    return terms | (_column_terms(focus) if focus else set())


def _columns_asked(headings: list[str], asked: set[str], hint: set[str] = frozenset()) -> set[int]:
    """The columns whose headings share most with the question's terms, when some share more than others;
    among those, the ones sharing most with ``hint`` (the named document's own period), likewise."""
    chosen = set(range(1, len(headings)))
    for terms in (asked, hint):
        if not terms or len(chosen) < 2:
            continue
        overlap = {k: len(terms & _column_terms(headings[k])) for k in chosen}
        best = max(overlap.values())
        if any(value < best for value in overlap.values()):
            chosen = {k for k, value in overlap.items() if value == best}
    return chosen


def linearise_tables(text: str, question: Question | None = None, focus: str = "", period: str = "") -> str:
    """Markdown table rows as "label — heading: value; heading: value" lines, for the model's eyes only.

    The 1.5B model copies a figure from the wrong column of a wide Markdown table (the six-month total
    for the quarter), even with each value next to its heading. So when the question's words (a quarter
    is "three months") match some column headings better than the others, only those columns are shown;
    a question that names no period keeps them all. ``focus``: the document the answer is about
    (``llm.per_document``), whose period words count as the question's. ``period``: the period of the one
    document the question named ("quarter ended September 30, 2023" for "Intel's latest quarter"); among
    the columns the question's words choose, it keeps those it names (not last year's three months).
    Example, for any question::

        | | Three Months Ended April 1, 2023 | Six Months Ended April 1, 2023 |
        | --- | --- | --- |
        | Total net sales | 94,836 | 211,990 |
        -> Total net sales — Three Months Ended April 1, 2023: 94,836; Six Months Ended April 1, 2023: 211,990
    """
    lines = text.split("\n")
    out: list[str] = []
    headings: list[str] | None = None
    shown: set[int] = set()  # the heading row's columns the question asks for, chosen once per table
    asked = _asked_terms(question, focus)
    hint = _column_terms(period) if period else set()
    for index, line in enumerate(lines):
        match = TABLE_ROW.match(line.strip())
        if not match:
            headings = None if line.strip() and line.strip() != "…" else headings
            out.append(line)
            continue
        cells = [cell.strip() for cell in match.group(1).split("|")]
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if TABLE_RULE.match(following):
            headings = cells  # the heading row: it names the columns of the rows below
            shown = _columns_asked(headings, asked, hint)
            continue
        if TABLE_RULE.match(line.strip()):
            continue
        if headings is None or len(cells) < 2:
            out.append(line)
            continue
        values = [f"{headings[k] if k < len(headings) and headings[k] else f'column {k}'}: {value}"
                  for k, value in enumerate(cells[1:], start=1) if value and (k in shown or k >= len(headings))]
        out.append(f"{cells[0]} — " + "; ".join(values) if values else cells[0])
    return "\n".join(out)


def question_language(text: str) -> str:
    """'zh' when the question is mostly Chinese characters, else 'en'."""
    return text_language(text)


@dataclass(frozen=True)
class Prompt:
    messages: tuple[ChatMessage, ...]
    sources: tuple[Source, ...]
    prompt_tokens: int  # estimate of the whole prompt in model tokens


_SENTENCE_END = re.compile(r"(?<=[。！？；\n])|(?<=[.!?;])\s")
_WORD_END = re.compile(r"\s|(?<=[\u3400-\u9fff])")


def _units(text: str) -> set[int]:
    """Where ``excerpt`` may cut ``text``: sentence ends in prose, line ends around table lines.

    A table line is one unit: cut at its "; " ("(In Millions, Except Per Share Amounts; Unaudited) |
    Three Months Ended …") a heading row loses its "|" start and no longer reads as the table's heading.
    """
    table_spans = [(m.start(), m.end()) for m in re.finditer(r"^[ \t]*\|.*$", text, re.MULTILINE)]
    cuts = {m.start() for m in _SENTENCE_END.finditer(text) if 0 < m.start() < len(text)}
    cuts = {cut for cut in cuts if not any(start < cut < end for start, end in table_spans)}
    for start, end in table_spans:
        cuts.update(point for point in (start, end) if 0 < point < len(text))
    return cuts


class PromptBuilder:
    """Fits hits into the context window as numbered sources."""

    def __init__(
        self,
        count_tokens: Callable[[str], int],
        context_window: int,
        answer_tokens: int,
        min_partial_tokens: int = 64,
        template_overhead_tokens: int = 32,  # chat-template markers around each message
        source_tokens: int | None = None,  # trim sources after the first ``whole_sources`` to this; None = whole
        whole_sources: int = 1,
    ) -> None:
        self._count = count_tokens
        self._context_window = context_window
        self._answer_tokens = answer_tokens
        self._min_partial = min_partial_tokens
        self._overhead = template_overhead_tokens
        self._source_tokens = source_tokens
        self._whole_sources = whole_sources

    def build(
        self, question: Question, hits: Sequence[Hit], history: Sequence[Turn] = (), history_turns: int = 2,
        *, focus: str | None = None, period: str = "", listing: bool = False,
    ) -> Prompt:
        """``focus``: the document the answer must be about alone (one prompt per document, ``llm.per_document``);
        ``listing``: that document is one of several a list question asks about (say what it states, or "not stated").
        ``period``: the period of the one document the question names, which picks its tables' columns
        (``linearise_tables``)."""
        language = question.language
        closing = ((LIST_FOCUS if listing else FOCUS)[language].format(question=question.text, document=focus) if focus
                   else CLOSING[language].format(question=question.text))
        question_part = f"\n{closing}"
        fixed = self._count(SYSTEM_PROMPT) + self._count("Sources:\n" + question_part) + 2 * self._overhead
        earlier: list[ChatMessage] = []
        history_budget = (self._context_window - self._answer_tokens - fixed) // 4  # sources keep most of the room
        for turn in reversed(list(history)[-history_turns:] if history_turns > 0 else []):
            pair = [ChatMessage("user", turn.question.strip()), ChatMessage("assistant", turn.answer.strip())]
            cost = sum(self._count(m.content) + self._overhead for m in pair)
            if cost > history_budget:
                break
            earlier = pair + earlier
            history_budget -= cost
            fixed += cost
        budget = self._context_window - self._answer_tokens - fixed
        if budget <= 0:
            raise ValueError(
                f"context window {self._context_window} leaves no room for sources after "
                f"{self._answer_tokens} answer tokens and the instructions; raise the context window"
            )
        sources: list[Source] = []
        blocks: list[str] = []
        used = 0
        question_terms = set(question.content_keywords)
        for hit in hits:
            number = len(sources) + 1
            header = f"[{number}] {hit.chunk.location}" + (f" ({hit.chunk.header})" if hit.chunk.header else "") + "\n"
            text = hit.chunk.text
            if self._source_tokens and number > self._whole_sources:
                text = self.excerpt(text, question_terms, self._source_tokens)
            text = linearise_tables(text, question, focus or "", period)
            block_cost = self._count(header + text + "\n\n")
            if used + block_cost > budget:
                room = budget - used - self._count(header) - 2
                if room < self._min_partial:
                    break
                text = self._shorten(text, room)
                if not text:
                    break
                block_cost = self._count(header + text + "\n\n")
            sources.append(Source(number=number, hit=hit, text=text))
            blocks.append(header + text)
            used += block_cost
        user = "Sources:\n" + "\n\n".join(blocks) + "\n" + question_part
        messages = (ChatMessage("system", SYSTEM_PROMPT), *earlier, ChatMessage("user", user))
        return Prompt(messages=messages, sources=tuple(sources), prompt_tokens=fixed + used)

    def excerpt(self, text: str, question_terms: set[str], max_tokens: int) -> str:
        """The sentences of ``text`` sharing most keywords with the question, within ``max_tokens``.

        Example: for "What colour are bananas?" (terms ``{"colour", "banana"}``) and a 10-token budget,
        "Apples are red. Pears grow on trees. Bananas are yellow." becomes "… Bananas are yellow."
        """
        if self._count(text) <= max_tokens:
            return text
        cuts = sorted({0, *_units(text), len(text)})
        sentences = [(start, end) for start, end in zip(cuts, cuts[1:]) if text[start:end].strip()]
        overlap = [len(question_terms.intersection(content_keywords(text[a:b]))) for a, b in sentences]
        if not any(overlap):
            return self._shorten(text, max_tokens)
        chosen: list[int] = []
        forced: set[int] = set()
        used = 0
        # A table's heading row (the line above its "| --- |" line) stays with any row chosen from it:
        # a figure without its column heading is the wrong-column mistake waiting to happen.
        for index, (start, end) in enumerate(sentences):
            if TABLE_RULE.match(text[start:end].strip()) and index > 0:
                for kept in (index - 1, index):
                    chosen.append(kept)
                    forced.add(kept)
                    used += self._count(text[slice(*sentences[kept])].strip()) + 1
                    overlap[kept] = 0
        for index in sorted(range(len(sentences)), key=lambda i: (-overlap[i], i)):  # most shared keywords first
            if not overlap[index]:
                break
            cost = self._count(text[slice(*sentences[index])].strip()) + 1  # + the joining space or "…"
            if used + cost <= max_tokens:
                chosen.append(index)
                used += cost
        if set(chosen) <= forced:  # a heading row alone answers nothing
            chosen = []
        if not chosen:  # even the best sentence is longer than the budget: cut it
            best = sentences[max(range(len(sentences)), key=lambda i: (overlap[i], -i))]
            return self._shorten(text[slice(*best)].strip(), max_tokens)
        pieces, previous = [], -1
        for index in sorted(chosen):
            if index != previous + 1:
                pieces.append("…")
            pieces.append(text[slice(*sentences[index])].strip())
            previous = index
        if previous != len(sentences) - 1:
            pieces.append("…")
        # Table lines stay on lines of their own, so the table still reads as one.
        joined = pieces[0]
        for before, piece in zip(pieces, pieces[1:]):
            joined += ("\n" if before.startswith("|") or piece.startswith("|") else " ") + piece
        return joined

    def _shorten(self, text: str, max_tokens: int) -> str:
        """Longest prefix within ``max_tokens`` ending at a sentence end, or else at a word end.

        A word cut is used only when whole sentences would fill less than half the room.
        """
        by_sentence = self._longest_prefix(text, max_tokens, _SENTENCE_END)
        if self._count(by_sentence) >= max_tokens // 2:
            return by_sentence
        return self._longest_prefix(text, max_tokens, _WORD_END)

    def _longest_prefix(self, text: str, max_tokens: int, cut_points: re.Pattern[str]) -> str:
        cuts = [m.start() for m in cut_points.finditer(text) if m.start() > 0]
        low, high, best = 0, len(cuts) - 1, ""
        while low <= high:  # binary search over cut points: token counts grow with the prefix
            middle = (low + high) // 2
            candidate = text[: cuts[middle]].rstrip()
            if self._count(candidate) <= max_tokens:
                best, low = candidate, middle + 1
            else:
                high = middle - 1
        return best
