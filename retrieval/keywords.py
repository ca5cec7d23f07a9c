"""Keyword tokens for lexical scoring, in Chinese and English; the only module that imports jieba.

Worked example::

    keyword_tokens("How is the GPU used? 使用显卡加速")
    -> ["gpu", "use", "使用", "显卡", "加速"]

English (and other Latin/Greek script): lower-cased words of letters and
digits (``3.11`` and ``don't`` stay whole, ``β-catenin`` gives ``β`` and
``catenin``), minus a short stopword list, then Snowball-stemmed (PyStemmer),
so "studies" matches "study". Chinese: jieba in search mode, which also emits
the shorter words inside long ones, so "向量索引" matches "索引".

``TOKENIZER_VERSION`` names this behaviour; a stored keyword index built with
another version is rebuilt from its chunks (see ``retrieval.keyword_index``).

Deliberately not here: traditional-Chinese conversion, stemming of languages
other than English, synonyms.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

TOKENIZER_VERSION = "kw-3"  # bump when keyword_tokens changes its output
_LATIN_WORD = re.compile(r"[a-z0-9\u00df-\u024f\u03b1-\u03c9]+(?:[.'][a-z0-9\u00df-\u024f\u03b1-\u03c9]+)*")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# Function words: they carry no topic, and a question's "my" or "should" that no passage happens
# to contain must not count as a missing keyword (``KeywordIndex.coverage``).
_ENGLISH_STOPWORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being below "
    "between both but by can could did do does doing down during each few for from further had has have "
    "having he her here hers herself him himself his how i if in into is it its itself just me more most "
    "my myself no nor not now of off on once only or other our ours ourselves out over own same she should "
    "so some such than that the their theirs them themselves then there these they this those through to "
    "too under until up very was we were what when where which while who whom why will with would you "
    "your yours yourself yourselves".split()
)


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it prints its dictionary loading to stderr otherwise
    return jieba


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def keyword_tokens(text: str) -> list[str]:
    """Stemmed lower-cased English words (minus stopwords) and jieba words for Chinese runs."""
    lowered = text.lower()
    words = [word for word in _LATIN_WORD.findall(lowered) if word not in _ENGLISH_STOPWORDS]
    tokens = _stemmer().stemWords(words) if words else []
    for run in _CJK_RUN.findall(lowered):
        tokens.extend(word for word in _jieba().lcut_for_search(run) if word.strip())
    return tokens


def content_keywords(text: str) -> list[str]:
    """``keyword_tokens`` without lone Chinese characters (的, 是, 在 ...: mostly particles, they match anything).

    For judging whether two texts say the same thing (citation checks, passage trimming); BM25 keeps them,
    where idf already weighs them down.
    """
    return [token for token in keyword_tokens(text) if not (len(token) == 1 and _CJK_RUN.fullmatch(token))]


def warm_up() -> None:
    """Load jieba's dictionary now (about a second) instead of on the first query."""
    _jieba().initialize()


def text_language(text: str) -> str:
    """'zh' when the text is mostly Chinese characters, else 'en'."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return "zh" if cjk and cjk * 2 >= latin / 3 else "en"
