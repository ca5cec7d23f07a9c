"""What the pipeline says when it does not answer from the documents, in the question's language.

- ``NOTHING_FOUND``: retrieval found no passage at all;
- ``EMPTY_COLLECTION``: there is nothing to search yet;
- ``not_in_documents``: the passages do not cover the question (abstention), naming the
  question's names and numbers no passage holds, so the user learns what to rephrase or add;
- ``draft_withdrawn``: added when a check after generation withdrew a streamed draft, naming the
  facts no passage holds.

Deliberately not here: deciding to refuse (``retrieval.evidence.AbstentionPolicy`` and
``Pipeline.would_abstain``), messages of errors (they travel as ``core.errors.KbError``).
"""

from __future__ import annotations

from core.types import Evidence, Question
from text.keywords import as_written

NOTHING_FOUND = {
    "en": "I could not find anything about this in the documents.",
    "zh": "在文档中没有找到与这个问题相关的内容。",
}
NOT_IN_DOCUMENTS = {
    "en": "The documents do not seem to contain the answer to this question. The closest passages found are listed below.",
    "zh": "文档中似乎没有这个问题的答案。下面列出了找到的最接近的段落。",
}
NOT_MENTIONED = {
    "en": "No passage found mentions: {items}.",
    "zh": "找到的段落都没有提到：{items}。",
}
DRAFT_WITHDRAWN = {
    "en": "(The model's draft answer was withdrawn: no passage states it in answer to this question.)",
    "zh": "（模型起草的答案已撤回：没有段落针对这个问题给出该答案。）",
}
DRAFT_FACTS_WITHDRAWN = {
    "en": "(The model's draft answer was withdrawn: no passage states {items}.)",
    "zh": "（模型起草的答案已撤回：没有段落提到{items}。）",
}
EMPTY_COLLECTION = {
    "en": "The knowledge base is empty. Add documents first: `kb ingest <folder>` or the Documents panel.",
    "zh": "知识库是空的。请先添加文档：运行 `kb ingest <文件夹>` 或使用“文档”面板上传。",
}


def draft_withdrawn(language: str, missing: tuple[str, ...] = ()) -> str:
    """The note after a refusal that withdrew a generated draft, naming the facts no passage holds."""
    if not missing:
        return DRAFT_WITHDRAWN[language]
    items = ("、" if language == "zh" else ", ").join(missing[:5])
    return DRAFT_FACTS_WITHDRAWN[language].format(items=items)


def not_in_documents(question: Question, evidence: Evidence | None) -> str:
    """The refusal, naming the question's names and numbers the passages lack: the user learns what to rephrase.

    "Who won the 2021 Super Bowl?" over passages about 2022 -> "... No passage found mentions: 2021."
    """
    language = question.language
    if evidence is None or not evidence.missing_specifics:
        return NOT_IN_DOCUMENTS[language]
    items = ("、" if language == "zh" else ", ").join(as_written(evidence.missing_specifics, question.text))
    return f"{NOT_IN_DOCUMENTS[language]} {NOT_MENTIONED[language].format(items=items)}"
