"""Keyword tokens for lexical scoring, in Chinese and English; the only module that imports jieba.

Worked example::

    keyword_tokens("How is the GPU used? 使用显卡加速")
    -> ["gpu", "used", "使用", "显卡", "加速"]

English: lower-cased words of letters and digits (``3.11`` and ``don't`` stay
whole), minus a short stopword list. Chinese: jieba in search mode, which also
emits the shorter words inside long ones, so "向量索引" matches "索引".

Deliberately not here: stemming (no stemmer ships with the required
libraries; a later keyword index can add one), traditional-Chinese conversion.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

_LATIN_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be by do does for from has have how i in is it its of on or that the this to "
    "was were what when where which who why will with you your".split()
)


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it prints its dictionary loading to stderr otherwise
    return jieba


def keyword_tokens(text: str) -> list[str]:
    """Lower-cased English words (minus stopwords) and jieba words for Chinese runs."""
    lowered = text.lower()
    tokens = [word for word in _LATIN_WORD.findall(lowered) if word not in _ENGLISH_STOPWORDS]
    for run in _CJK_RUN.findall(lowered):
        tokens.extend(word for word in _jieba().lcut_for_search(run) if word.strip())
    return tokens


def warm_up() -> None:
    """Load jieba's dictionary now (about a second) instead of on the first query."""
    _jieba().initialize()
