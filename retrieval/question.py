"""A question analysed once: the ``Question`` every later stage reads instead of tokenising the text again.

``analyse_question`` runs each analysis exactly once per question:

- the standalone form (``retrieval.followup``): a follow-up ("and its warranty?")
  is searched together with the question it follows;
- the language of the question as asked (the answer's and the refusal's language)
  and of the standalone form (which fusion weights apply);
- the keyword tokens of the standalone form (``text.keywords``: stemmed
  English, jieba Chinese), which BM25, keyword coverage, the second stage and the
  answer-support check read;
- the content keywords of the question as asked (lone Chinese characters left
  out), which passage trimming, table-column choice and the figure-row check read;
- the specific items of the standalone form (numbers, identifiers, names,
  titles), which abstention requires the passages to hold;
- the numbers and identifiers the question states, which the citation check
  does not require of a passage when the answer repeats them;
- its acronyms ("EPS", "R&D"), which abstention accepts spelled out.

Worked example::

    analyse_question("它全长多少？", [Turn("京沪高铁是哪一年通车的？", "2011年。")])
    -> text "它全长多少？", search_text "京沪高铁是哪一年通车的？ 它全长多少？", language "zh",
       keywords ("京沪", "高铁", "是", "一年", "哪一年", "通车", "的", "它", "全长", "多少")

Deliberately not here: what the question names among the collection's documents
(``retrieval.scope``: that needs the collection), embedding it (the embedders),
rewriting it with the language model.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.types import Question, Turn
from retrieval.followup import retrieval_query
from text.keywords import (
    acronyms,
    content_keywords,
    keyword_tokens,
    numbers_and_identifiers,
    specific_items,
    text_language,
)


def analyse_question(text: str, history: Sequence[Turn] = ()) -> Question:
    """The question and what every stage needs to know of it; ``history``: the conversation's earlier turns."""
    asked = text.strip()
    search_text = retrieval_query(asked, history)
    return Question(
        text=asked,
        search_text=search_text,
        language=text_language(asked),
        search_language=text_language(search_text),
        keywords=tuple(keyword_tokens(search_text)),
        content_keywords=frozenset(content_keywords(asked)),
        specific_items=frozenset(specific_items(search_text)),
        stated_numbers=frozenset(numbers_and_identifiers(asked)),
        acronyms=frozenset(acronyms(search_text)),
    )
