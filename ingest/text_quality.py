"""Is a PDF page's text layer usable text? Two failures seen on real files, and how to tell them.

- **Doubled** ("fake bold"): the page draws every character, word or line twice
  with a small offset, and pypdf extracts both: "本本科科", "本科 本科", or the
  whole page twice. ``undouble`` keeps one of each.
- **Garbled** (mojibake): the font has no usable map from glyphs to Unicode, so the
  extracted "text" is Latin-1 symbols, private-use or control characters
  ("¸Ã¶¨Ê±¼ä"). Nothing can repair it from the text; the page must be read
  again (pdfium, which maps more fonts, or OCR of the page image).

Worked examples::

    diagnose("本本科科录录取取")                  -> "doubled";  undouble(...) -> "本科录取"
    diagnose("本科 本科 录取 录取 分数 分数")        -> "doubled";  undouble(...) -> "本科 录取 分数"
    diagnose("Ë\\x8f¸Ã¶¨Ê±¼ä ÄÚ²¿")             -> "garbled"
    diagnose("Net sales increased 5%.")       -> "ok"

Deliberately not here: re-reading the page (``ingest.loaders`` tries pdfium,
then OCR), language detection, spelling-level quality.
"""

from __future__ import annotations

import re

MIN_CHARACTERS = 20  # too little text to judge: taken as it is
DOUBLED_SHARE = 0.8  # of character pairs, or of words, that repeat their neighbour
GARBLED_SHARE = 0.3  # of non-space characters that no real text is made of
_SUSPECT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xbf\u0080-\u009f\ue000-\uf8ff\ufffd]|[\xc0-\xff](?=[\x80-\xff])")
_WORDS = re.compile(r"\S+")


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _doubled_characters(text: str) -> bool:
    compact = _compact(text)
    pairs = len(compact) // 2
    if pairs < MIN_CHARACTERS // 2:
        return False
    same = sum(compact[2 * i] == compact[2 * i + 1] for i in range(pairs))
    return same >= DOUBLED_SHARE * pairs


def _doubled_words(text: str) -> bool:
    words = _WORDS.findall(text)
    if len(words) < 6:
        return False
    pairs = len(words) // 2
    same = sum(words[2 * i] == words[2 * i + 1] for i in range(pairs))
    return same >= DOUBLED_SHARE * pairs


def _doubled_halves(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    half = len(lines) // 2
    return half >= 1 and len(lines) % 2 == 0 and lines[:half] == lines[half:] and len(_compact(text)) >= MIN_CHARACTERS


def diagnose(text: str) -> str:
    """"ok", "doubled" or "garbled" (see module doc)."""
    compact = _compact(text)
    if len(compact) < MIN_CHARACTERS:
        return "ok"
    if len(_SUSPECT.findall(compact)) >= GARBLED_SHARE * len(compact):
        return "garbled"
    if _doubled_characters(text) or _doubled_words(text) or _doubled_halves(text):
        return "doubled"
    return "ok"


def undouble(text: str) -> str:
    """One of each doubled character, word or page half (whichever doubling the text shows)."""
    if _doubled_halves(text):
        lines = [line for line in text.splitlines() if line.strip()]
        return "\n".join(lines[: len(lines) // 2]) + "\n"
    if _doubled_characters(text):
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
    if _doubled_words(text):
        words = _WORDS.findall(text)
        single = [words[i] for i in range(0, len(words) - 1, 2)] + (words[-1:] if len(words) % 2 else [])
        return " ".join(single)
    return text
