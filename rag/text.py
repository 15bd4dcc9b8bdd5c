"""Japanese text helpers shared by the modules: sentence splitting and character bigrams."""

from __future__ import annotations

import re
from functools import lru_cache

# Full-width enders only: an ASCII "!" or "?" ends headlines and teasers ("…盛況!"), rarely prose.
SENTENCE_ENDS = "。．！？"
# Closing brackets after an ender belong to the sentence: 「…と話した。」 is one sentence.
_CLOSERS = "」』）)】]>＞\"'”’"
_SENTENCE = re.compile(rf"[^{SENTENCE_ENDS}\n]+(?:[{SENTENCE_ENDS}]+[{re.escape(_CLOSERS)}]*)?")
_HAS_END = re.compile(f"[{SENTENCE_ENDS}]")
_CLOSERS_AND_SPACE = _CLOSERS + " \t\r\n"
_WHITESPACE = re.compile(r"\s+")
# An English sentence: a word, then "." (after closers) at the end of the line.
_ENGLISH_END = re.compile(r"[A-Za-z]{2,}[.]$")


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, each with its ender and closing brackets; lines never join."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


@lru_cache(maxsize=65536)  # the cleaning step asks about the same line several times
def ends_sentence(line: str) -> bool:
    """Whether a line ends as prose does (。！？ or an English "word."), not as a headline or a menu item."""
    t = line.rstrip(_CLOSERS_AND_SPACE)
    if not t:
        return False
    last = t[-1]
    return last in SENTENCE_ENDS or (last == "." and _ENGLISH_END.search(t) is not None)


def has_sentence(line: str) -> bool:
    """Whether a line holds prose: it ends as a sentence or has a sentence end inside (「…を挙げる。詳細は…を参照」)."""
    return _HAS_END.search(line) is not None or ends_sentence(line)


def char_bigrams(text: str) -> set[str]:
    """The set of two-character substrings of text with whitespace removed (Japanese has no word breaks)."""
    t = _WHITESPACE.sub("", text)
    return {t[i : i + 2] for i in range(len(t) - 1)}
