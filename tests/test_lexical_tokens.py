"""The fast tokenizer reads MeCab's raw feature rows; it must give exactly the tokens the named features give."""

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from rag.lexical import _SKIP_POS, _tagger, tokenize


def reference_tokens(text: str) -> list[str]:
    """The tokens as first written, through fugashi's named UnidicFeatures."""
    tokens = []
    for word in _tagger()(unicodedata.normalize("NFKC", text)):
        feature = word.feature
        if getattr(feature, "pos1", None) in _SKIP_POS:
            continue
        lemma = getattr(feature, "lemma", None)
        token = word.surface if not lemma or "-" in lemma else lemma
        tokens.append(token.lower())
    return tokens


JAPANESE = st.text(
    alphabet=st.sampled_from(
        list("東京都の知事は会見で、円相場が急落したと述べた。ロシア軍クルスク州スジャ奪還ゼレンスキー氏")
        + list("1,000円「」（）\"'!?！？ーABCabc　\n-・…%％")
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(JAPANESE)
def test_tokens_are_those_of_the_named_features(text: str) -> None:
    assert tokenize(text) == reference_tokens(text)


def test_names_numbers_and_loanwords() -> None:
    tokens = tokenize("ロシア軍はクルスク州のスジャを奪還した。1,000人が避難。")
    assert "ロシア" in tokens and "スジャ" in tokens and "奪還" in tokens
    assert "は" not in tokens and "。" not in tokens
