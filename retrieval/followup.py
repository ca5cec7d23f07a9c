"""Follow-up questions: retrieve as if the question had been asked in full.

In a conversation, "and its weight?" means "what is the weight of <the thing
we were talking about>?". Retrieval only sees the words it is given, so a
follow-up is searched together with the previous question: the previous
question supplies the subject, the follow-up the new aspect.

A question counts as a follow-up when it refers back (English pronouns and
openers such as "it", "its", "they", "and", "what about", "that" used as a
pronoun; Chinese 它, 其, 这, 那, 该, 他, 她, 还有…, not inside words such as
应该 or 其他) or is too short to stand alone (at most one English
keyword or five Chinese characters, e.g. "price?", "价格呢？"). A question that stands on its own is
searched as it is, so a change of subject is not polluted by the last one.

Worked example::

    Turn("How heavy is the Model X battery?", "It weighs 540 kg [1].")
    retrieval_query("and its warranty?", [that turn])
    -> "How heavy is the Model X battery? and its warranty?"

Measured on CMRC2018 follow-ups made by replacing a question's subject with
它 (docs/benchmarks.md, ``benchmarks/followup_retrieval.py``).

Deliberately not here: rewriting the question with the language model (it
costs a generation, seconds on a CPU, before retrieval can start), following
references further back than the previous question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.types import Turn
from text.keywords import keyword_tokens, text_language

_ENGLISH_REFERENCE = re.compile(
    r"^\s*(and|also|what about|how about|but|so)\b|\b(it|its|it's|they|them|their|theirs|this|these|those|"
    r"he|him|his|she|her|hers|same|former|latter)\b"
    # "that" points back only as a pronoun ("what does that mean?", "is that free?"); after a noun it
    # starts a clause ("a gene that is regulated") and in "there is" nothing points anywhere.
    r"|(^|\b(is|are|was|were|does|do|did|about|of|for|with|like|to|on|in|at|from|than|and|or|how|what|why)\s+)"
    r"that\b|\bthat\s*[?.!]?\s*$",
    re.IGNORECASE,
)
_CHINESE_REFERENCE = re.compile(r"^\s*(那|还有|另外|以及|而且|并且|那么)|它|其|该|这个|那个|这些|那些|这种|那种|他|她|此|上述|前者|后者")
# Words that hold a reference character without referring back: 应该 "should", 其实 "actually",
# and transliterated names (土耳其 Turkey, 马其顿 Macedonia, 吉他 guitar). Words that do point back
# stay out of this list (其他 "the other ...", 此外 "besides that", 因此 "so"): a follow-up searched
# alone loses its subject, which costs far more than a standalone question searched with the last one.
_CHINESE_NOT_REFERENCE = re.compile(r"应该|其实|尤其|极其|彼此|土耳其|马其顿|吉他|结他")
_CJK = re.compile(r"[\u3400-\u9fff]")


def is_follow_up(question: str) -> bool:
    if text_language(question) == "zh":
        return bool(_CHINESE_REFERENCE.search(_CHINESE_NOT_REFERENCE.sub("", question))) or len(_CJK.findall(question)) <= 5
    return bool(_ENGLISH_REFERENCE.search(question)) or len(keyword_tokens(question)) <= 1


def retrieval_query(question: str, history: Sequence[Turn], depth: int = 3) -> str:
    """What to search for: the question, preceded by the previous question when it is a follow-up.

    The previous question is itself resolved first (a follow-up of a follow-up
    keeps the original subject), at most ``depth`` turns back.
    """
    if not history or depth <= 0 or not is_follow_up(question):
        return question.strip()
    previous = retrieval_query(history[-1].question, history[:-1], depth - 1)
    return f"{previous} {question.strip()}"
