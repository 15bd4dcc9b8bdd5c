import json
from pathlib import Path

import pytest

from rag.errors import IndexCorruptError, IndexMismatchError, IndexNotBuiltError, SeedsError
from rag.index import MANIFEST, VectorIndex, read_manifest, stale_reason
from rag.pipeline import build_index
from rag.retrieval import Retriever


def _build(settings, embedder, **kw):
    return build_index(settings=settings, embedder=embedder, **kw)


def test_build_report_and_manifest(settings, embedder) -> None:
    report = _build(settings, embedder)
    assert (report.docs, report.skipped, report.rebuilt) == (3, [], True)
    assert report.chunks >= 3
    manifest = read_manifest(settings.index_dir)
    assert manifest.embedding_model == "fake-bigram-512"
    assert manifest.dimension == 512
    assert (manifest.chunk_size, manifest.chunk_overlap) == (120, 20)
    assert set(manifest.sources) == {"kyoto.txt", "blog.txt"}
    assert all(len(h) == 64 for h in manifest.sources.values())


def test_saved_index_loads_and_retrieves_the_right_passage(settings, embedder) -> None:
    _build(settings, embedder)
    index = VectorIndex.load(settings.index_dir, expected_model=embedder.model_id)
    hits = Retriever(index, embedder).retrieve("新千歳空港を結ぶ新線の運賃はいくら?", k=2)
    assert "1200円" in hits[0].chunk.text
    assert hits[0].chunk.source == "blog.txt"
    assert hits[0].score >= hits[1].score


def test_loading_with_another_embedding_model_fails_loudly(settings, embedder) -> None:
    _build(settings, embedder)
    with pytest.raises(IndexMismatchError, match="rag build"):
        VectorIndex.load(settings.index_dir, expected_model="intfloat/multilingual-e5-small@123")


def test_missing_index_says_to_run_build(tmp_path: Path) -> None:
    with pytest.raises(IndexNotBuiltError, match="rag build"):
        VectorIndex.load(tmp_path / "nowhere")


def test_other_format_version_is_refused(settings, embedder) -> None:
    _build(settings, embedder)
    path = settings.index_dir / MANIFEST
    raw = json.loads(path.read_text())
    raw["format_version"] = 999
    path.write_text(json.dumps(raw))
    with pytest.raises(IndexMismatchError, match="format version"):
        VectorIndex.load(settings.index_dir)


def test_damaged_chunk_store_is_reported(settings, embedder) -> None:
    _build(settings, embedder)
    (settings.index_dir / "chunks.jsonl").write_text('{"broken": 1}\n')
    with pytest.raises(IndexCorruptError, match="rag build"):
        VectorIndex.load(settings.index_dir)


def test_failed_rebuild_leaves_previous_index_usable(settings, embedder, corpus: Path) -> None:
    _build(settings, embedder)
    before = (settings.index_dir / "chunks.jsonl").read_text()

    class Exploding:
        model_id, dimension = embedder.model_id, embedder.dimension

        def embed_passages(self, texts, *, show_progress=False):
            raise RuntimeError("out of memory while embedding")

    (corpus / "new.txt").write_text("新しい記事の本文です。" * 10, encoding="utf-8")
    with pytest.raises(RuntimeError):
        _build(settings, Exploding())
    assert (settings.index_dir / "chunks.jsonl").read_text() == before
    VectorIndex.load(settings.index_dir, expected_model=embedder.model_id)  # still loads
    assert not [p for p in settings.index_dir.parent.iterdir() if p.name.startswith(".index.")]


def test_seeds_without_any_article_keep_the_old_index(settings, embedder, corpus: Path) -> None:
    _build(settings, embedder)
    for p in corpus.iterdir():
        p.write_bytes(b"\x00garbage")
    with pytest.raises(SeedsError, match=r"kyoto\.txt"):
        _build(settings, embedder)
    assert read_manifest(settings.index_dir).docs == 3


def test_if_stale_skips_current_index_and_rebuilds_after_a_change(settings, embedder, corpus: Path) -> None:
    assert _build(settings, embedder, if_stale=True).rebuilt
    again = _build(settings, embedder, if_stale=True)
    assert not again.rebuilt and again.docs == 3
    (corpus / "kyoto.txt").write_text(
        (corpus / "kyoto.txt").read_text() + "\n追記の段落です。紅葉は12月上旬まで楽しめる見込みだ。\n"
    )
    reason = stale_reason(
        settings.index_dir, settings.seeds_dir, embedding_model=embedder.model_id, chunk_size=120, chunk_overlap=20
    )
    assert reason and "kyoto.txt" in reason
    assert _build(settings, embedder, if_stale=True).rebuilt


def test_broken_seed_is_skipped_and_listed(settings, embedder, corpus: Path) -> None:
    (corpus / "broken.txt").write_bytes(b"\x00\x00binary")
    report = _build(settings, embedder)
    assert [s.path for s in report.skipped] == ["broken.txt"]
    assert report.docs == 3
    assert read_manifest(settings.index_dir).skipped["broken.txt"]
