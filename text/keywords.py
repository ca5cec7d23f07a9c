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

``specific_items`` picks the words of a question that name one thing
(numbers, identifiers, names, titles): abstention asks that the passages hold
them even when the rest of the question is worded differently from the text.

Deliberately not here: traditional-Chinese conversion, stemming of languages
other than English, synonyms, a named-entity model (Chinese names come from
jieba's part-of-speech dictionary, which misses new names and tags some
ordinary words as names).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import lru_cache

from text.periods import VERSION_RANGE

TOKENIZER_VERSION = "kw-3"  # bump when keyword_tokens changes its output
_LATIN_WORD = re.compile(r"[a-z0-9\u00df-\u024f\u03b1-\u03c9]+(?:[.'][a-z0-9\u00df-\u024f\u03b1-\u03c9]+)*")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_IDENTIFIER = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\b")  # snake_case / SCREAMING_CASE names
_BACKTICKED = re.compile(r"`([^`]+)`")
_WORD = re.compile(r"[A-Za-z0-9_][\w.\-]*")
_WORD_AND_YEAR = re.compile(r"[a-z]+-((?:19|20)\d\d)")
_TITLE = re.compile(r"《([^《》]{1,40})》")
# jieba's tags for names of people (nr, nrfg, nrt), places (ns), organisations (nt) and other proper nouns (nz).
_CHINESE_NAME_TAGS = frozenset({"nr", "nrfg", "nrt", "ns", "nt", "nz"})
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
def _jieba_tagger():
    _jieba()  # sets the log level before posseg loads the dictionary
    import jieba.posseg

    return jieba.posseg


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


def chinese_words(text: str) -> list[str]:
    """jieba's words (search mode: long words and the words inside them) of the Chinese runs of ``text``."""
    return [word for run in _CJK_RUN.findall(text) for word in _jieba().lcut_for_search(run) if word.strip()]


def content_keywords(text: str) -> list[str]:
    """``keyword_tokens`` without lone Chinese characters (的, 是, 在 ...: mostly particles, they match anything).

    For judging whether two texts say the same thing (citation checks, passage trimming); BM25 keeps them,
    where idf already weighs them down.
    """
    return [token for token in keyword_tokens(text) if not (len(token) == 1 and _CJK_RUN.fullmatch(token))]


def numbers_and_identifiers(text: str) -> set[str]:
    """Numbers written in digits, and identifiers such as ``KB_UI_PORT`` (lower-cased): both must occur exactly.

    "8,501" and "8501" are one number; "3.11" keeps its point.
    """
    numbers = {re.sub(r",(?=\d{3}\b)", "", n) for n in NUMBER.findall(text)}
    # The keyword tokenizer splits KB_PORT into "kb" + "port", which a passage about KB_CHUNK_TOKENS and
    # the port holds: an invented setting name would pass on words alone.
    return numbers | {identifier.lower() for identifier in _IDENTIFIER.findall(text)}


def name_like_words(sentence: str) -> list[str]:
    """Words of an English sentence that would be written the same way in a Chinese text.

    A capital after the first word or inside the word, a digit, ``_``, or backticks:
    "How do I run `kb ingest` on Linux?" -> ["kb ingest", "Linux"].
    """
    words = list(_BACKTICKED.findall(sentence))
    text = _BACKTICKED.sub(" ", sentence)
    for match in _WORD.finditer(text):
        word = match.group(0).strip(".-")
        # "... each quarter? Give the figures": a capital that opens any sentence is no name.
        opens_sentence = not text[:match.start()].strip() or text[:match.start()].rstrip()[-1] in ".?!:;"
        capital_inside = any(ch.isupper() for ch in word[1:])
        capital_later = not opens_sentence and word[:1].isupper()
        if _WORD_AND_YEAR.fullmatch(word):  # "mid-2023", "pre-2020": the year is the item, not the wording
            words.append(_WORD_AND_YEAR.fullmatch(word).group(1))
        elif capital_inside or capital_later or any(ch.isdigit() or ch == "_" for ch in word):
            words.append(word)
    return words


def language_neutral_terms(text: str) -> list[str]:
    """Keywords that read the same in Chinese and English text, numbers aside.

    The Latin keywords of a Chinese text (names, commands) and the keywords of an English one's
    ``name_like_words``: "How do I get GPU acceleration on Linux?" -> ["gpu", "linux"].
    """
    if text_language(text) == "zh":
        terms = [t for t in content_keywords(text) if not _CJK_RUN.search(t)]
    else:
        terms = content_keywords(" ".join(name_like_words(text)))
    # "8.x" is a range of versions (``retrieval.scope`` reads it), not a name a passage must hold.
    return [t for t in terms if not NUMBER.fullmatch(t) and not VERSION_RANGE.fullmatch(t)]


def language_neutral_items(text: str) -> set[str]:
    """``language_neutral_terms`` and ``numbers_and_identifiers``: "GPU on Linux 6?" -> {"gpu", "linux", "6"}."""
    return set(language_neutral_terms(text)) | numbers_and_identifiers(text)


def chinese_names(text: str) -> set[str]:
    """《Titles》 and the words jieba tags as names of people, places, organisations or other proper nouns.

    "《红楼梦》的作者是谁？" -> {"红楼梦"}; "北京今天的天气怎么样？" -> {"北京"}. Single characters
    are left out (jieba tags some particles as names). Some ordinary words are tagged too
    ("加密" as a place): harmless when the passages hold them, a refusal when they do not.
    """
    names = set(_TITLE.findall(text))
    for run in _CJK_RUN.findall(text):
        names.update(word for word, tag in _jieba_tagger().lcut(run) if tag in _CHINESE_NAME_TAGS and len(word) > 1)
    return names


def specific_items(question: str) -> set[str]:
    """The question's words that name one thing: numbers, identifiers, Latin names, Chinese names.

    A question worded differently from the passages misses ordinary words ("启用", "send");
    one about something the passages do not hold misses one of these ("2021" over passages
    about 2022, a person the passages never name).
    """
    return language_neutral_items(question) | {name.lower() for name in chinese_names(question)}


def missing_items(items: set[str], text: str) -> tuple[str, ...]:
    """The items (``specific_items``) that ``text`` holds neither as a keyword nor as a substring, sorted.

    A Latin plural counts as its singular ("10-Qs", "GPUs" held by a text that says "10-Q", "GPU"):
    the stemmer leaves names alone, so "qs" would otherwise be missing from every filing.
    """
    present = set(keyword_tokens(text))
    lowered = text.lower()

    def held(item: str) -> bool:
        forms = [item, item[:-1]] if len(item) >= 2 and item.endswith("s") and item.isascii() else [item]
        return any(form in present or form in lowered for form in forms)

    return tuple(sorted(item for item in items if not held(item)))


_ACRONYM = re.compile(r"(?<![\w&])([A-Z](?:&?[A-Z]){1,5})s?(?![\w&])")
# Between the spelled-out words: little words, and a short aside ("Earnings (loss) per share" writes out "EPS").
_JOINER = r"[\s\-]+(?:\([^()]{1,20}\)[\s\-]+)?(?:(?:and|of|the|for|to|&)[\s\-]+)?"


def acronyms(text: str) -> set[str]:
    """All-capital words of 2-6 letters, lower-cased, plural "s" dropped: "Apple's EPS and R&D" -> {"eps", "r&d"}."""
    return {match.group(1).lower() for match in _ACRONYM.finditer(text)}


def spelled_out(acronym: str, text: str) -> bool:
    """Whether ``text`` writes ``acronym`` out in words: "eps" in "diluted earnings per share",
    "r&d" in "research and development" (little words between the initials allowed).

    Two letters need an "&" ("R&D"): a plain pair of initials ("AI") would match too many word pairs.
    """
    pattern = _spelling(acronym)
    return pattern is not None and pattern.search(text) is not None


@lru_cache(maxsize=256)
def _spelling(acronym: str) -> re.Pattern[str] | None:
    """The words that write ``acronym`` out, or None for one too short to tell (see ``spelled_out``)."""
    letters = [c for c in acronym if c.isalpha()]
    if len(letters) < 2 or (len(letters) == 2 and "&" not in acronym):
        return None
    return re.compile(r"\b" + _JOINER.join(f"{letter}[a-z]+" for letter in letters) + r"\b", re.IGNORECASE)


def spelled_out_terms(acronyms: frozenset[str] | set[str], text: str) -> set[str]:
    """The content keywords of the words in ``text`` that spell out one of ``acronyms`` (``spelled_out``).

    A question's "EPS" meets a row labelled "Diluted earnings per share" through these:
    spelled_out_terms({"eps"}, "Diluted earnings per share") -> {"earn", "share"} (stemmed).
    """
    terms: set[str] = set()
    for acronym in acronyms:
        pattern = _spelling(acronym)
        for match in pattern.finditer(text) if pattern else ():
            terms.update(content_keywords(re.sub(r"\([^()]*\)", " ", match.group(0))))  # not the aside's words
    return terms


def as_written(items: Sequence[str], text: str) -> list[str]:
    """Each item (a keyword token, e.g. stemmed "academi") as ``text`` writes it ("Academy"), in its order.

    For showing to users: as_written(["pi", "raspberri"], "GPU on a Raspberry Pi?") -> ["Raspberry", "Pi"].
    Items ``text`` does not hold come last, as they are.
    """
    words: dict[str, str] = {}
    for word in _WORD.findall(text):
        for token in keyword_tokens(word):
            words.setdefault(token, word.strip(".-"))
    lowered = text.lower()

    def position(word: str) -> int:
        found = lowered.find(word.lower())
        return found if found >= 0 else len(lowered)

    return sorted((words.get(item, item) for item in items), key=position)


def warm_up() -> None:
    """Load jieba's dictionary and part-of-speech tagger now (about a second) instead of on the first query."""
    _jieba().initialize()
    _jieba_tagger().lcut("北京")


def text_language(text: str) -> str:
    """'zh' when the text is mostly Chinese characters, else 'en'."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return "zh" if cjk and cjk * 2 >= latin / 3 else "en"
