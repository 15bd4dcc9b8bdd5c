"""The light embedding runtime: e5 on ONNX Runtime agrees with sentence-transformers and keeps torch off the query path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import IndexMismatchError, RagError
from rag.factories import embed_runtime
from tests.conftest import DATA, KURSK_Q, REPO, run_env

E5 = REPO / "models" / "multilingual-e5-small"


def _record(folder: Path, *, int8: bool) -> None:
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "export.json").write_text(json.dumps({"int8": int8}), encoding="utf-8")
    (folder / "onnx" / "model.onnx").write_bytes(b"onnx")
    if int8:
        (folder / "onnx" / "model_int8.onnx").write_bytes(b"onnx")


def test_the_runtime_is_onnx_fp32_where_an_export_exists_and_int8_only_when_asked(tmp_path: Path) -> None:
    settings = Settings()
    assert embed_runtime(settings, tmp_path) == ("torch", False)  # a folder the user brought, not exported
    _record(tmp_path / "int8", int8=True)
    assert embed_runtime(settings, tmp_path / "int8") == ("onnx", False)  # the default: fp32 ONNX
    assert embed_runtime(settings.with_overrides(embed_int8=True), tmp_path / "int8") == ("onnx", True)
    _record(tmp_path / "fp32", int8=False)
    assert embed_runtime(settings.with_overrides(embed_int8=True), tmp_path / "fp32") == ("onnx", False)
    assert embed_runtime(settings.with_overrides(embed_runtime="torch"), tmp_path / "int8") == ("torch", False)
    with pytest.raises(RagError, match="RAG_EMBED_RUNTIME"):
        embed_runtime(settings.with_overrides(embed_runtime="tensorflow"), tmp_path / "int8")


def _corpus_sentences() -> list[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((DATA / "corpus").glob("*.txt")))
    return [s for s in (t.strip() for t in text.replace("。", "。\n").splitlines()) if len(s) > 8][:40]


@pytest.mark.integration
def test_onnx_vectors_agree_with_sentence_transformers() -> None:
    from rag.embedding import OnnxEmbedder, SentenceTransformerEmbedder
    from rag.onnx_export import model_file, read_record

    record = read_record(E5)
    assert record is not None, "run `rag models` first: it exports the ONNX file"
    torch = SentenceTransformerEmbedder(E5)
    fp32 = OnnxEmbedder(E5, model_file(E5, int8=False))
    texts = _corpus_sentences()
    assert len(texts) >= 20
    for a, b in [(fp32.embed_passages(texts), torch.embed_passages(texts)), (fp32.embed_queries(texts), torch.embed_queries(texts))]:
        assert np.sum(a * b, axis=1).min() >= 0.9999  # the same vectors: indexes are shared with torch
    assert fp32.model_id == torch.model_id and fp32.dimension == torch.dimension == 384
    if not record["int8"]:
        return
    int8 = OnnxEmbedder(E5, model_file(E5, int8=True), int8=True)
    pairs = [(int8.embed_passages(texts), torch.embed_passages(texts)), (int8.embed_queries(texts), torch.embed_queries(texts))]
    for a, b in pairs:
        cosine = np.sum(a * b, axis=1)
        # int8 weights move a vector by ~0.006 on average; short lines (a headline, a fare) up to ~0.013.
        assert cosine.mean() >= 0.99 and cosine.min() >= 0.98, (cosine.mean(), cosine.min())
        # The passage each text is closest to is the same with both runtimes.
        assert (np.argmax(a @ b.T, axis=1) == np.arange(len(texts))).all()
    assert int8.model_id == torch.model_id + "+int8"


@pytest.mark.integration
def test_a_passage_gets_the_same_fp32_vector_in_any_batch() -> None:
    """`rag add` embeds a few passages, a whole build many at a time: the index must not depend on which."""
    from rag.embedding import ONNX_BATCH, OnnxEmbedder
    from rag.onnx_export import model_file

    texts = _corpus_sentences()[:24]
    alone = OnnxEmbedder(E5, model_file(E5, int8=False), batch_size=1).embed_passages(texts)  # one text per run
    for batch_size in (ONNX_BATCH, 3, len(texts)):
        batched = OnnxEmbedder(E5, model_file(E5, int8=False), batch_size=batch_size).embed_passages(texts)
        assert np.abs(batched - alone).max() < 1e-5, batch_size


@pytest.mark.integration
def test_asking_loads_neither_torch_nor_transformers(real_index: Settings, tmp_path: Path) -> None:
    from rag.ingest import build_index

    settings = real_index.with_overrides(index_dir=tmp_path / "index", embed_runtime="onnx")
    build_index(settings=settings)
    code = (
        "import sys\n"
        "from rag.factories import load_embedder\n"
        "from rag.config import Settings\n"
        "from rag.retrieval import Retriever\n"
        "from rag.vector_index import VectorIndex\n"
        f"s = Settings(index_dir={str(settings.index_dir)!r}, embed_runtime='onnx')\n"
        "e = load_embedder(s)\n"
        "r = Retriever(VectorIndex.load(s.index_dir, expected_model=e.model_id), e)\n"
        f"hits = r.retrieve({KURSK_Q!r}, k=4)\n"
        "print(type(e).__name__, hits[0].chunk.source)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'tokenizers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env(), cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    kind, loaded = out.stdout.strip().splitlines()
    assert kind.startswith("OnnxEmbedder") and loaded == "[]"


@pytest.mark.integration
def test_an_index_is_shared_by_torch_and_onnx_fp32_and_refused_by_int8(real_index: Settings, tmp_path: Path) -> None:
    from rag.factories import load_embedder, load_pipeline
    from rag.ingest import build_index

    torch_settings = real_index.with_overrides(index_dir=tmp_path / "index", embed_runtime="torch", seeds_dir=DATA / "corpus")
    build_index(settings=torch_settings)
    onnx = load_embedder(torch_settings.with_overrides(embed_runtime="onnx"))
    pipe = load_pipeline(settings=torch_settings.with_overrides(embed_runtime="onnx"), embedder=onnx, generator=object())
    assert pipe.retrieve(KURSK_Q)  # the same vectors: no rebuild when switching between torch and fp32 ONNX
    int8 = load_embedder(torch_settings.with_overrides(embed_runtime="onnx", embed_int8=True))
    if not int8.model_id.endswith("+int8"):
        pytest.skip("the export kept no int8 file")
    with pytest.raises(IndexMismatchError, match="rag build"):
        load_pipeline(settings=torch_settings.with_overrides(embed_runtime="onnx"), embedder=int8, generator=object())
