"""Constrained decoding (rag/spans.py): every reply it lets through is a span of a passage, and every span can be written."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rag.spans import SpanConstraint, TokenTable

# Japanese news text, half-width and full-width signs, Latin, emoji: characters of 1-4 UTF-8 bytes.
_CHARS = st.sampled_from(list("スジャ奪還要衝の町はロシア軍が2026年4月1日に円ドル%％（）「」、。 abcXYZ😀é"))
_TEXTS = st.lists(st.text(_CHARS, min_size=1, max_size=40), min_size=1, max_size=4)


def _vocabulary(texts: list[str], rng: random.Random) -> TokenTable:
    """Every single byte (as byte-level BPE has) and random multi-byte pieces of the texts, some splitting a character."""
    pieces = {bytes([b]) for b in range(256)}
    for text in texts:
        data = text.encode("utf-8")
        for _ in range(10):
            start = rng.randrange(len(data))
            pieces.add(data[start : start + rng.randint(2, 9)])
    return TokenTable(enumerate(sorted(pieces)))


def _walk(constraint: SpanConstraint, table: TokenTable, rng: random.Random) -> bytes:
    by_id = {t: piece for piece, ids in table.ids.items() for t in ids}
    said = b""
    for _ in range(60):
        allowed, may_end = constraint.allowed(said)
        if may_end and (not allowed or rng.random() < 0.3):
            return said
        assert allowed, "a reply that cannot end must be able to go on"
        said += by_id[rng.choice(allowed)]
    return said


@settings(max_examples=200, deadline=None)
@given(texts=_TEXTS, seed=st.integers(0, 10_000))
def test_a_constrained_reply_is_a_whole_span_of_a_passage(texts: list[str], seed: int) -> None:
    rng = random.Random(seed)
    table = _vocabulary(texts, rng)
    constraint = SpanConstraint(texts, table)
    said = _walk(constraint, table, rng)
    _, may_end = constraint.allowed(said)
    if may_end:  # where the model may stop, the reply is text a passage holds, whole characters
        phrase = said.decode("utf-8")
        assert phrase and any(phrase in text for text in texts)


@settings(max_examples=200, deadline=None)
@given(texts=_TEXTS, data=st.data())
def test_every_span_of_a_passage_can_be_written(texts: list[str], data: st.DataObject) -> None:
    table = _vocabulary(texts, random.Random(0))
    constraint = SpanConstraint(texts, table)
    text = data.draw(st.sampled_from(texts))
    start = data.draw(st.integers(0, len(text) - 1))
    span = text[start : data.draw(st.integers(start + 1, len(text)))].encode("utf-8")
    said = b""
    while said != span:  # written in longest vocabulary pieces, as a tokenizer would
        rest = span[len(said) :]
        piece = next(rest[:n] for n in range(table.longest, 0, -1) if rest[:n] in table.ids)
        allowed, _ = constraint.allowed(said)
        assert set(table.ids[piece]) <= set(allowed)
        said += piece
    assert constraint.allowed(said)[1]


def test_a_reply_never_ends_empty_nor_inside_a_character() -> None:
    table = TokenTable(enumerate([b"\xe3", b"\x82", b"\xb9", "ス".encode(), "スジャ".encode()]))
    constraint = SpanConstraint(["スジャ"], table)
    assert constraint.allowed(b"")[1] is False
    assert constraint.allowed(b"\xe3\x82")[1] is False  # half of 「ス」
    assert constraint.allowed("ス".encode())[1] is True
    assert constraint.allowed("ジ".encode()) == ([0], True)  # 「ャ」 goes on with its first byte
    assert constraint.allowed("ドル".encode()) == ([], False)  # not in the passage: nothing continues it
