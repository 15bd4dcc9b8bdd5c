"""e5's tokenizer run by sentencepiece (rag/pieces.py) gives the ids `tokenizers` gives, so the vectors are the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.pieces import PieceTokenizer, convert
from tests.conftest import DATA, REPO

E5 = REPO / "models" / "multilingual-e5-small"
SPM = E5 / "onnx" / "tokenizer.spm"

# Characters of the kinds news pages hold, and some they rarely do (marks, format characters, emoji).
ALPHABET = (
    "あいうえおかがきくけこさしすせそたちっつてとなにのはばぱまみむめもやゆよらりるれろわをん"
    "アイウエオカガキクケコサシスセソタチッツテトナニハバパマミムメモヤユヨラリルレロワヲンーヴ"
    "日本語政府円相場東京大阪市町村長年月日時分億万千百十一二三四五"
    "ｱｲｳｶﾞﾟｰ｡｢｣､･ＡＢＣ０１２３abcxyzXYZ0123456789"
    "、。・「」『』（）()[]【】!?！？%％…―—-–_.,:;/\\'\"~〜～＝=+＋@＃#&＆*※→①②③ⅠⅡ㈱㍻℃"
    " \t\n\r\u3000\u00a0\u200b\ufeff\u0301\u3099é🙂👍🏽▁"
)


def _tokenizers(max_tokens: int = 512):
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(E5 / "tokenizer.json"))
    reference.enable_truncation(max_tokens)
    return reference


@pytest.fixture(scope="module")
def both() -> tuple[PieceTokenizer, object]:
    assert SPM.is_file(), "run `rag models` first: it writes the sentencepiece copy of e5's tokenizer"
    return PieceTokenizer(SPM, E5 / "tokenizer.json", max_tokens=512), _tokenizers()


def _corpus_lines() -> list[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((DATA / "corpus").glob("*.txt")))
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.integration
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(alphabet=ALPHABET, max_size=60),
        st.text(alphabet=ALPHABET, min_size=300, max_size=1500),  # past 512 tokens: truncation
        st.builds(
            lambda line, cut, insert: line[:cut] + insert + line[cut:],
            st.sampled_from(_corpus_lines()),
            st.integers(0, 200),
            st.text(alphabet=ALPHABET, max_size=8),
        ),
        st.text(max_size=40).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
    )
)
def test_sentencepiece_gives_the_ids_tokenizers_gives(both: tuple[PieceTokenizer, object], text: str) -> None:
    pieces, reference = both
    assert pieces.ids(text) == reference.encode(text).ids


@pytest.mark.integration
def test_ordinary_news_text_is_tokenized_by_sentencepiece_alone(both: tuple[PieceTokenizer, object]) -> None:
    pieces, reference = both
    pieces.fallbacks = 0
    lines = _corpus_lines()
    ids, mask = pieces.encode_batch(lines)
    assert pieces.fallbacks == 0  # the fast path, not tokenizers under another name
    expected = [reference.encode(line).ids for line in lines]
    for row, m, want in zip(ids, mask, expected, strict=True):
        assert row[: m.sum()].tolist() == want and (row[m.sum() :] == 1).all()  # padded with <pad>


@pytest.mark.integration
def test_saved_pages_get_the_same_ids_whole_and_in_passages(both: tuple[PieceTokenizer, object]) -> None:
    pieces, reference = both
    for page in sorted((REPO / "seeds").glob("*.txt")):
        text = page.read_text(encoding="utf-8")  # menus, links, emoji; whole pages are cut at 512 tokens
        for part in [text, *(text[i : i + 200] for i in range(0, len(text), 200))]:
            assert pieces.ids(part) == reference.encode(part).ids


@pytest.mark.integration
def test_the_embedder_gives_the_same_vectors_with_either_tokenizer() -> None:
    from rag.embedding import OnnxEmbedder
    from rag.onnx_export import model_file

    lines = [*_corpus_lines()[:24], "", "…….", "ﾊﾞｽ停 ＡＢＣ\u3000１２３"]
    fast = OnnxEmbedder(E5, model_file(E5, int8=False), pieces=True)
    slow = OnnxEmbedder(E5, model_file(E5, int8=False), pieces=False)
    assert type(fast.tokenizer).__name__ == "PieceTokenizer"
    assert np.array_equal(fast.embed_passages(lines), slow.embed_passages(lines))
    assert np.array_equal(fast.embed_queries(lines), slow.embed_queries(lines))


def test_a_tokenizer_of_another_shape_is_not_converted(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "市": 1, "長": 2}, unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.Whitespace()
    wordpiece.save(str(tmp_path / "tokenizer.json"))
    assert not convert(tmp_path / "tokenizer.json", tmp_path / "tokenizer.spm")
    assert not (tmp_path / "tokenizer.spm").exists()
    spec = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"] = {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["市", -1.0]]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    assert not convert(tmp_path / "tokenizer.json", tmp_path / "tokenizer.spm")  # Unigram, but not XLM-R's spaces
