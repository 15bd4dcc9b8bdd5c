"""Constrained decoding: a reply that can only be a span of the passages, word for word.

Asked for the answer phrase alone (rag.generation.PHRASE_FOLLOW_UP), a 1.5B model sometimes
writes a phrase no passage holds (「暦」 trimmed from 「天体暦」, a name in other characters). With a
SpanConstraint every token it may choose continues a run of bytes that some passage holds, so the
reply is always a span the reader can find in a source. Pure logic over bytes: the tokens of a
byte-level BPE vocabulary (Qwen's) may split a character, so spans are matched as UTF-8 bytes and
the reply may only end where a character ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MAX_TOKEN_BYTES = 48  # longer vocabulary entries are never needed to copy a span (Qwen's CJK pieces are ≤ 12)


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


class TokenTable:
    """The vocabulary as bytes -> token ids, built once per model (ids with the same bytes kept in order)."""

    def __init__(self, pieces: Iterable[tuple[int, bytes]]) -> None:
        self.ids: dict[bytes, list[int]] = {}
        for token, piece in pieces:
            if piece and len(piece) <= MAX_TOKEN_BYTES:
                self.ids.setdefault(piece, []).append(token)
        self.longest = max((len(p) for p in self.ids), default=0)


class SpanConstraint:
    """Which tokens may come next so that the reply stays a span of one of `texts`."""

    def __init__(self, texts: Sequence[str], table: TokenTable) -> None:
        self.texts = [t.encode("utf-8") for t in texts if t]
        self.table = table

    def _starts(self, said: bytes) -> list[tuple[bytes, int]]:
        """(text, position right after `said`) for every place a text holds `said`; any character start if empty."""
        found = []
        for text in self.texts:
            if not said:
                found += [(text, i) for i in range(len(text)) if not _is_continuation(text[i])]
                continue
            at = text.find(said)
            while at >= 0:
                found.append((text, at + len(said)))
                at = text.find(said, at + 1)
        return found

    def allowed(self, said: bytes) -> tuple[list[int], bool]:
        """The token ids that keep `said` + token a span, sorted, and whether the reply may end here.

        The reply may end after a whole character, never on nothing: an empty phrase says nothing.
        """
        tokens: set[int] = set()
        may_end = False
        for text, end in self._starts(said):
            if said and (end == len(text) or not _is_continuation(text[end])):
                may_end = True
            for size in range(1, min(self.table.longest, len(text) - end) + 1):
                tokens.update(self.table.ids.get(text[end : end + size], ()))
        return sorted(tokens), may_end
