"""Is a PDF page's text layer usable text? The failures seen on real files, and how to tell them.

- **Doubled** ("fake bold"): the page draws every character, word or line twice
  with a small offset, and pypdf extracts both: "本本科科", "本科 本科", or the
  whole page twice (or more). A title drawn as one string several times back to
  back extracts as a line that is one unit repeated: "某某公司某某公司某某公司".
  ``undouble`` keeps one of each.
- **Garbled** (mojibake): the font has no usable map from glyphs to Unicode, so the
  extracted "text" is whatever code points the glyph ids happen to be:
  - Latin-1 symbols ("¸Ã¶¨Ê±¼ä");
  - letters of unrelated scripts mixed together (Oriya, Gujarati, Cyrillic and
    control characters in one word: "ଓઅБ\\x03ଡગ"). Real text writes a word in
    one script, so a letter alone in its script between letters of other
    scripts is a stray; Latin and Greek, which every script's text borrows
    ("β-catenin", "使用Python开发"), are not counted, and Chinese, Japanese and
    Korean count as one script (kana, Han and Hangul mix inside their words);
  - private-use, control or unassigned code points ("\\ue01a\\ue02b\\ue00f"),
    garbled however short the page.
  Nothing can repair it from the text; the page must be read again (pdfium,
  which maps more fonts, or OCR of the page image).

Worked examples (the floor of ``MIN_CHARACTERS`` aside, a page is judged as a whole)::

    diagnose("本本科科录录取取分分数数线线理理工工类类")   -> "doubled";  undouble(...) -> "本科录取分数线理工类"
    diagnose("本科 本科 录取 录取 分数 分数 最高 最高 最低 最低")
                                              -> "doubled";  undouble(...) -> "本科 录取 分数 最高 最低"
    diagnose("某某公司某某公司某某公司某某公司")      -> "doubled";  undouble(...) -> "某某公司"
    diagnose("Ë¸Ã¶¨Ê±¼ä ÄÚ²¿ ¸Ã¶¨Ê±¼ä ÄÚ²¿")      -> "garbled"
    diagnose("ଓઅБ\\x03ଡગД ॳଘЖ\\x07ઘ ଓઅБଡ ગДॳଘ")     -> "garbled"  (scripts mixed)
    diagnose("\\ue01a\\ue02b\\ue00f")                -> "garbled"  (private use, however short)
    diagnose("Net sales increased 5%. Costs fell.") -> "ok"
    diagnose("β-catenin 使用Python开发 東京でiPhoneを買った ha ha ----- 1111") -> "ok"

Deliberately not here: re-reading the page (``ingest.loaders`` tries pdfium,
then OCR), language detection, spelling-level quality; a garbled text layer
whose code points all fall in one script, or in Latin and Greek (it reads as
that script's text); a page of lone letters of many scripts (an alphabet
chart reads as garbled); identical consecutive lines (table columns repeat
their labels so).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

MIN_CHARACTERS = 20  # too little text to judge: taken as it is (junk and repeated lines aside)
DOUBLED_SHARE = 0.8  # of character pairs, or of words, that repeat their neighbour
GARBLED_SHARE = 0.3  # of non-space characters that no real text is made of
JUNK_SHARE = 0.5  # of non-space characters private-use, control or unassigned: past it, not text at any length
STRAY_SHARE = 0.05  # of letters alone in their script: 0 on every real page checked, about 0.08 and up on garbled ones
MIN_STRAY_LETTERS = 3  # one odd letter is a quotation ("Б型细胞"); three on a page are a pattern
REPEAT_UNIT_WEIGHT = 4  # letters in a repeated line's unit (a CJK character, a word, weighs 2): "hahaha" is no repeat
PAIR_UNIT_WEIGHT = 8  # two copies need a long unit: "HelloHello", "研究研究" (Chinese ABAB reduplication) are real
_SUSPECT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xbf\u0080-\u009f\ue000-\uf8ff\ufffd]|[\xc0-\xff](?=[\x80-\xff])")
_WORDS = re.compile(r"\S+")

_JUNK = "junk"  # a code point no text is made of: private use, control, unassigned, surrogate
_SHARED = "shared"  # Latin and Greek letters: every script's text borrows them (names, units, "β-catenin")
_CJK = "cjk"  # Han, kana, Hangul and Bopomofo: one script here, Japanese and Korean mix them inside words
_SCRIPT_OF_NAME = {"LATIN": _SHARED, "GREEK": _SHARED} | dict.fromkeys(
    ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO", "IDEOGRAPHIC", "VERTICAL", "KANGXI"), _CJK)
# Letters any script's text holds whose name does not start with a script: combining accents, modifier
# letters, super- and subscripts ("ⁿ"), and the letterlike and mathematical symbols ("ℓ", "ℝ", "𝑥", "µ").
_NEUTRAL_NAMES = frozenset({"COMBINING", "MODIFIER", "SUPERSCRIPT", "SUBSCRIPT"})
_NEUTRAL_BLOCKS = ((0x00AA, 0x00BA), (0x2100, 0x214F), (0x1D400, 0x1D7FF))
_NAME_PREFIXES = frozenset({"FULLWIDTH", "HALFWIDTH"})  # "FULLWIDTH LATIN CAPITAL LETTER A" is Latin


@lru_cache(maxsize=65536)
def _script(character: str) -> str | None:
    """The script a character's letter belongs to (its Unicode name's first word), junk, or None (no letter)."""
    category = unicodedata.category(character)
    if category in ("Co", "Cn", "Cs") or (category == "Cc" and not character.isspace()):
        return _JUNK
    if category[0] not in "LM" or any(low <= ord(character) <= high for low, high in _NEUTRAL_BLOCKS):
        return None
    words = [word for word in re.split(r"[ -]", unicodedata.name(character, "")) if word not in _NAME_PREFIXES]
    if not words or words[0] in _NEUTRAL_NAMES:
        return None
    return _SCRIPT_OF_NAME.get(words[0], words[0])


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _mostly_junk(compact: str) -> bool:
    return bool(compact) and sum(_script(character) == _JUNK for character in compact) > JUNK_SHARE * len(compact)


def _mixed_scripts(text: str) -> bool:
    """Do many letters stand alone in their script, between letters of other scripts (see module doc)?

    Spaces, Latin, Greek and junk are stepped over: garbage one character a line mixes as much as
    garbage inside a word, and "北京 Moscow Москва", "\\uf0b7项目" (a bullet) mix nothing.
    """
    scripts = [script for script in map(_script, text) if script not in (None, _JUNK)]
    own = [script for script in scripts if script != _SHARED]
    stray = sum(
        (index == 0 or own[index - 1] != script) and (index + 1 == len(own) or own[index + 1] != script)
        for index, script in enumerate(own)
    )
    return stray >= MIN_STRAY_LETTERS and stray >= STRAY_SHARE * len(scripts)


# Only pairs that start with a letter are judged: dot leaders (". . . ."), rules ("-----") and rows of
# figures ("0 0 0 0") repeat their neighbour in real text, and a table of contents is not fake bold; nor
# is a run of one letter ("xxxxxxxxxxxx", a redaction).
def _doubled_characters(text: str) -> bool:
    compact = _compact(text)
    pairs = [(compact[i], compact[i + 1]) for i in range(0, len(compact) - 1, 2) if compact[i].isalpha()]
    if len(pairs) < MIN_CHARACTERS // 2 or len(set(pairs)) < 3:
        return False
    return sum(first == second for first, second in pairs) >= DOUBLED_SHARE * len(pairs)


def _every_other(text: str) -> str:
    """One of each pair of non-space characters; a run of spaces becomes its first space."""
    kept: list[str] = []
    count = 0
    for character in text:
        if character.isspace():
            if kept and not kept[-1].isspace():
                kept.append(character)
            continue
        if count % 2 == 0:
            kept.append(character)
        count += 1
    return "".join(kept)


def _doubled_words(text: str) -> bool:
    words = _WORDS.findall(text)
    pairs = [(words[i], words[i + 1]) for i in range(0, len(words) - 1, 2) if any(map(str.isalpha, words[i]))]
    if len(pairs) < 3:
        return False
    return sum(first == second for first, second in pairs) >= DOUBLED_SHARE * len(pairs)


def _page_copies(text: str) -> int:
    """How many times the page's lines are the same list of lines over again (1: not repeated)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(_compact(text)) < MIN_CHARACTERS:
        return 1
    for size in range(1, len(lines) // 2 + 1):
        if len(lines) % size == 0 and lines == lines[:size] * (len(lines) // size):
            return len(lines) // size
    return 1


def _repeat_unit(line: str) -> str | None:
    """The unit a line is made of when it is that unit k >= 2 times back to back ("某某公司" x 4), else None.

    Only units with letters that start like a word count ("-----", "......", "1111" are rules and
    figures; "/Bullet/Bullet" is glyph names pypdf writes for symbols), and only copies without spaces
    between them: a table's heading row repeats its column groups so ("Amount % Amount %").
    """
    line = line.strip()
    period = (line + line).find(line, 1)  # the smallest period; len(line) when the line is no repetition
    if not line or period >= len(line):
        return None
    unit, copies = line[:period], len(line) // period
    if not unit[0].isalnum() or unit != unit.strip():
        return None
    weight = sum(2 if _script(character) == _CJK else 1 for character in unit if character.isalpha())
    return unit if weight >= (PAIR_UNIT_WEIGHT if copies == 2 else REPEAT_UNIT_WEIGHT) else None


def _one_copy(line: str) -> str | None:
    """The line once, when it is drawn over itself on a page that otherwise is not: a unit repeated
    back to back, or every character twice ("MMuunniicciippaalliittéé", pdfium's take on the same); else None."""
    if unit := _repeat_unit(line):
        return line.replace(line.strip(), unit)
    return _every_other(line) if _doubled_characters(line) else None


def _doubled_lines(text: str) -> bool:
    return any(_one_copy(line) is not None for line in text.splitlines())


def diagnose(text: str) -> str:
    """"ok", "doubled" or "garbled" (see module doc)."""
    compact = _compact(text)
    if _mostly_junk(compact):
        return "garbled"
    if len(compact) < MIN_CHARACTERS:
        return "doubled" if _doubled_lines(text) else "ok"
    if len(_SUSPECT.findall(compact)) >= GARBLED_SHARE * len(compact) or _mixed_scripts(text):
        return "garbled"
    if _doubled_characters(text) or _doubled_words(text) or _page_copies(text) > 1 or _doubled_lines(text):
        return "doubled"
    return "ok"


def undouble(text: str) -> str:
    """One of each doubled character, word, page copy or repeated line (whichever doubling the text shows)."""
    copies = _page_copies(text)
    if copies > 1:
        lines = [line for line in text.splitlines() if line.strip()]
        text = "\n".join(lines[: len(lines) // copies]) + "\n"
    elif _doubled_characters(text):
        text = _every_other(text)
    elif _doubled_words(text):
        words = _WORDS.findall(text)
        single = [words[i] for i in range(0, len(words) - 1, 2)] + (words[-1:] if len(words) % 2 else [])
        text = " ".join(single)
    # A title drawn several times over, on a page that is otherwise fine (or was just repaired).
    return "\n".join(_one_copy(line) or line for line in text.split("\n"))
