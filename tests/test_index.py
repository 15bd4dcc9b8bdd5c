import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from rag import build as build_mod
from rag import manifest as manifest_mod
from rag.build import build, stale_reason
from rag.embedding import LazyEmbedder
from rag.errors import IndexBusyError, IndexCorruptError, IndexMismatchError, IndexNotBuiltError, SeedsError
from rag.ingest import build_index
from rag.manifest import FORMAT_VERSION, MANIFEST
from rag.retrieval import Retriever
from rag.stores import faiss_store
from rag.types import Chunk
from rag.vector_index import VectorIndex
from rag.versions import CURRENT, read_manifest, version_dir
from tests.conftest import HashingEmbedder


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
    path = version_dir(settings.index_dir) / MANIFEST
    raw = json.loads(path.read_text())
    raw["format_version"] = 999
    path.write_text(json.dumps(raw))
    with pytest.raises(IndexMismatchError, match="format version"):
        VectorIndex.load(settings.index_dir)


def test_damaged_chunk_store_is_reported(settings, embedder) -> None:
    _build(settings, embedder)
    (version_dir(settings.index_dir) / "chunks.jsonl").write_text('{"broken": 1}\n')
    with pytest.raises(IndexCorruptError, match="rag build"):
        VectorIndex.load(settings.index_dir)


def test_failed_rebuild_leaves_previous_index_usable(settings, embedder, corpus: Path) -> None:
    _build(settings, embedder)
    before = (version_dir(settings.index_dir) / "chunks.jsonl").read_text()

    class Exploding:
        model_id, dimension = embedder.model_id, embedder.dimension

        def embed_passages(self, texts, *, show_progress=False):
            raise RuntimeError("out of memory while embedding")

    (corpus / "new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    with pytest.raises(RuntimeError):
        _build(settings, Exploding())
    assert (version_dir(settings.index_dir) / "chunks.jsonl").read_text() == before
    VectorIndex.load(settings.index_dir, expected_model=embedder.model_id)  # still loads
    assert not [p for p in settings.index_dir.iterdir() if p.name.startswith(".tmp-")]


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


# ---- layout: versions, CURRENT, leftovers, the lock, the flat format of earlier versions ----


class CountingEmbedder(HashingEmbedder):
    """Records every passage it embeds."""

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed_passages(self, texts, *, show_progress=False):
        self.embedded += texts
        return super().embed_passages(texts)


class NoEmbedder:
    """Has the fake's id, fails if anything is embedded: proves a build reused everything."""

    model_id, dimension = HashingEmbedder.model_id, HashingEmbedder.dimension

    def embed_passages(self, texts, *, show_progress=False):
        raise AssertionError(f"embedded {len(texts)} passages")


NEW_ARTICLE = (
    "さっぽろ雪まつりが開幕、大通会場に雪像150基\n\n2026年2月4日(水)10時00分\n\n"
    "第77回さっぽろ雪まつりが4日開幕し、大通会場には雪像約150基が並んだ。\n\n"
    "期間中は約200万人の来場を見込む。札幌市観光協会は公共交通機関の利用を呼びかけている。\n"
)


def _versions(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir() if p.name.startswith("v-"))


def test_index_is_a_version_named_by_current(settings, embedder) -> None:
    _build(settings, embedder)
    name = (settings.index_dir / CURRENT).read_text().strip()
    assert _versions(settings.index_dir) == [name]
    assert version_dir(settings.index_dir) == settings.index_dir / name
    assert {p.name for p in (settings.index_dir / name).iterdir()} == {MANIFEST, "vectors.faiss", "chunks.jsonl", "bm25"}
    assert read_manifest(settings.index_dir).format_version == FORMAT_VERSION


def test_new_version_keeps_only_the_previous_one_and_removes_leftovers(settings, embedder, corpus: Path) -> None:
    _build(settings, embedder)
    first = _versions(settings.index_dir)
    (settings.index_dir / ".tmp-v-20000101T000000.000000Z-dead").mkdir()  # a killed build's folder
    (settings.index_dir / ".tmp-CURRENT-beef").write_text("v-x")
    orphan = settings.index_dir / "v-99991231T000000.000000Z-0bad"  # renamed, but CURRENT never pointed at it
    shutil.copytree(settings.index_dir / first[0], orphan)
    for i in range(3):
        (corpus / f"new{i}.txt").write_text(NEW_ARTICLE.replace("77", str(70 + i)), encoding="utf-8")
        _build(settings, embedder)
    names = sorted(p.name for p in settings.index_dir.iterdir() if p.name != ".lock")
    current = (settings.index_dir / CURRENT).read_text().strip()
    assert names == sorted([CURRENT, current, *[v for v in _versions(settings.index_dir) if v != current]])
    assert len(_versions(settings.index_dir)) == 2 and orphan.name not in names


def test_flat_index_of_earlier_versions_is_read_then_migrated(settings, embedder) -> None:
    _build(settings, embedder)
    folder = version_dir(settings.index_dir)
    for entry in folder.iterdir():
        shutil.move(str(entry), settings.index_dir / entry.name)
    raw = json.loads((settings.index_dir / MANIFEST).read_text())
    for key in ("reader", "files"):
        raw.pop(key)
    raw["format_version"] = 2
    (settings.index_dir / MANIFEST).write_text(json.dumps(raw))
    folder.rmdir()
    (settings.index_dir / CURRENT).unlink()

    old = VectorIndex.load(settings.index_dir, expected_model=embedder.model_id)
    assert old.manifest.format_version == 2 and len(old) > 0
    report = _build(settings, embedder)
    assert report.rebuilt and {f.status for f in report.files} == {"unchanged"}
    assert report.embedded == report.chunks  # passages of an older format are not trusted: all re-embedded
    assert (settings.index_dir / CURRENT).is_file()
    assert not any((settings.index_dir / n).exists() for n in (MANIFEST, "vectors.faiss", "chunks.jsonl", "bm25"))
    assert len(VectorIndex.load(settings.index_dir)) == len(old)


def test_current_naming_a_missing_version_says_to_rebuild(settings, embedder) -> None:
    _build(settings, embedder)
    shutil.rmtree(version_dir(settings.index_dir))
    with pytest.raises(IndexCorruptError, match="rag build --full"):
        VectorIndex.load(settings.index_dir)
    assert _build(settings, embedder).rebuilt  # and a build repairs it
    VectorIndex.load(settings.index_dir)


def test_a_second_build_waits_for_the_lock_then_gives_up_with_a_clear_message(settings, embedder) -> None:
    _build(settings, embedder)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
         "print('held', flush=True); time.sleep(60)", str(settings.index_dir / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (settings.seeds_dir / "new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
        started = time.monotonic()
        with pytest.raises(IndexBusyError, match=r"Another build .* try again"):
            build(settings.seeds_dir, settings.index_dir, embedder=embedder, chunk_size=120, chunk_overlap=20,
                  lock_timeout=0.5)
        assert time.monotonic() - started >= 0.5
        assert read_manifest(settings.index_dir).docs == 3  # nothing changed
    finally:
        holder.kill()
        holder.wait()
    assert _build(settings, embedder).count("added") == 1  # a dead holder's lock is free


def test_two_builds_at_once_run_one_after_the_other(settings, corpus: Path) -> None:
    spans: list[tuple[float, float]] = []

    class Slow(HashingEmbedder):
        def embed_passages(self, texts, *, show_progress=False):
            start = time.monotonic()
            time.sleep(0.3)
            spans.append((start, time.monotonic()))
            return super().embed_passages(texts)

    errors: list[BaseException] = []

    def run() -> None:
        try:
            _build(settings, Slow(), full=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    first, second = sorted(spans)
    assert first[1] <= second[0]  # never embedding at the same time: the second waited for the lock
    assert len(_versions(settings.index_dir)) == 2
    VectorIndex.load(settings.index_dir)


# ---- incremental builds ----


def test_adding_a_file_embeds_only_its_passages(settings, corpus: Path) -> None:
    first = _build(settings, CountingEmbedder())
    assert first.embedded == first.chunks and {f.status for f in first.files} == {"added"}
    (corpus / "sapporo.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    counting = CountingEmbedder()
    report = _build(settings, counting)
    assert {f.path: f.status for f in report.files} == {"blog.txt": "unchanged", "kyoto.txt": "unchanged", "sapporo.txt": "added"}
    assert report.embedded == len(counting.embedded) == report.chunks - first.chunks > 0
    assert all("雪まつり" in t for t in counting.embedded)
    assert report.docs == first.docs + 1
    added = next(f for f in report.files if f.path == "sapporo.txt")
    assert added.articles == 1 and added.kept_chars > 0
    pipe_hits = Retriever(VectorIndex.load(settings.index_dir), HashingEmbedder()).retrieve("雪まつりの雪像は何基?", k=1)
    assert "150基" in pipe_hits[0].chunk.text


def test_changed_and_removed_files(settings, embedder, corpus: Path) -> None:
    _build(settings, embedder)
    kyoto = corpus / "kyoto.txt"
    kyoto.write_text(kyoto.read_text().replace("約5万人", "約6万人"), encoding="utf-8")
    (corpus / "blog.txt").unlink()
    counting = CountingEmbedder()
    report = _build(settings, counting)
    assert {f.path: f.status for f in report.files} == {"kyoto.txt": "changed", "blog.txt": "removed"}
    assert counting.embedded and all("ハヤブサ" not in t for t in counting.embedded)
    index = VectorIndex.load(settings.index_dir)
    assert {c.source for c in index.chunks} == {"kyoto.txt"}
    text = "".join(c.text for c in index.chunks)
    assert "約6万人" in text and "約5万人" not in text
    assert not index.lexical.search("ハヤブサ", 3)  # BM25 was rebuilt from the same chunks as the vectors
    assert index.lexical.search("観光客", 3)


def test_removing_a_file_never_loads_the_embedder(settings, embedder, corpus: Path) -> None:
    _build(settings, embedder)
    (corpus / "blog.txt").unlink()

    def load():
        raise AssertionError("the embedding model was loaded")

    report = _build(settings, LazyEmbedder(embedder.model_id, load))
    assert report.embedded == 0 and report.count("removed") == 1 and report.docs == 1
    assert {c.source for c in VectorIndex.load(settings.index_dir).chunks} == {"kyoto.txt"}


def test_no_change_writes_nothing_and_never_loads_the_embedder(settings, embedder) -> None:
    _build(settings, embedder)
    before = _versions(settings.index_dir)

    def load():
        raise AssertionError("the embedding model was loaded")

    report = _build(settings, LazyEmbedder(embedder.model_id, load))
    assert not report.rebuilt and report.embedded == 0
    assert {f.status for f in report.files} == {"unchanged"} and report.docs == 3
    assert _versions(settings.index_dir) == before


def test_incremental_index_equals_a_full_build(settings, corpus: Path, tmp_path: Path) -> None:
    _build(settings, HashingEmbedder())
    (corpus / "sapporo.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    kyoto = corpus / "kyoto.txt"
    kyoto.write_text(kyoto.read_text() + "\n追記の段落です。紅葉は12月上旬まで楽しめる見込みだ。\n", encoding="utf-8")
    _build(settings, HashingEmbedder())
    full_dir = tmp_path / "full"
    _build(settings, HashingEmbedder(), index_dir=full_dir, full=True)
    a, b = VectorIndex.load(settings.index_dir), VectorIndex.load(full_dir)
    assert a.chunks == b.chunks
    assert np.array_equal(a.vectors(), b.vectors())


def test_full_and_a_changed_reader_re_embed_everything(settings, corpus: Path, monkeypatch) -> None:
    first = _build(settings, HashingEmbedder())
    again = _build(settings, CountingEmbedder(), full=True)
    assert again.rebuilt and again.embedded == first.chunks
    assert {f.status for f in again.files} == {"unchanged"}
    monkeypatch.setattr(manifest_mod, "reader_fingerprint", lambda: "reader-v2")
    reason = stale_reason(settings.index_dir, corpus, embedding_model=HashingEmbedder.model_id, chunk_size=120,
                          chunk_overlap=20)
    assert reason and "reads and chunks" in reason
    assert _build(settings, CountingEmbedder()).embedded == first.chunks


def test_an_unchanged_broken_file_stays_listed_as_skipped(settings, embedder, corpus: Path) -> None:
    (corpus / "broken.txt").write_bytes(b"\x00\x00binary")
    _build(settings, embedder)
    (corpus / "sapporo.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    report = _build(settings, embedder)
    broken = next(f for f in report.files if f.path == "broken.txt")
    assert broken.status == "skipped" and broken.reason
    assert [s.path for s in report.skipped] == ["broken.txt"]


def test_many_skipped_files_give_one_readable_line(settings, embedder, corpus: Path) -> None:
    for p in corpus.iterdir():
        p.unlink()
    for i in range(40):
        (corpus / f"bad{i:02d}.txt").write_bytes(b"\x00")
    with pytest.raises(SeedsError) as info:
        _build(settings, embedder)
    message = str(info.value)
    assert "40 ファイルをスキップ" in message and "bad00.txt" in message and "ほか 37 件" in message
    assert "bad39.txt" not in message and message.count("\n") == 0


def test_a_reader_failure_on_one_file_skips_that_file_only(settings, embedder, corpus: Path, monkeypatch) -> None:
    import rag.documents as documents_mod

    real = documents_mod.read_file

    def flaky(path, *, root=None):
        if path.name == "kyoto.txt":
            raise ValueError("unexpected markup")
        return real(path, root=root)

    monkeypatch.setattr(documents_mod, "read_file", flaky)
    report = _build(settings, embedder)
    kyoto = next(f for f in report.files if f.path == "kyoto.txt")
    assert kyoto.status == "skipped" and "unexpected markup" in kyoto.reason and "rag build" in kyoto.reason
    assert report.docs == 2


def test_progress_bars_count_files_and_passages(settings, embedder, capsys) -> None:
    report = _build(settings, embedder, show_progress=True)
    err = capsys.readouterr().err
    assert "files" in err and f"/{report.embedded}" in err and "passages" in err


# ---- exact below the size threshold, IVF above it ----


def _clustered(n: int, dim: int = 48, seed: int = 0) -> np.ndarray:
    """Normalized vectors around 40 centres: like embeddings, they cluster by topic."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _synthetic_index(n: int, *, approx_threshold: int) -> VectorIndex:
    vectors = _clustered(n)
    chunks = [Chunk(f"c{i}", f"d{i}", "s.txt", "題", f"本文{i}", 0) for i in range(n)]
    manifest = manifest_mod.Manifest(
        embedding_model="fake", dimension=vectors.shape[1], chunk_size=0, chunk_overlap=0,
        separators=[], sources={}, docs=n, chunks=n,
    )
    return VectorIndex.from_vectors(manifest, chunks, vectors, approx_threshold=approx_threshold)


def _exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[set[int]]:
    return [set(np.argsort(-row)[:k].tolist()) for row in queries @ vectors.T]


def test_small_corpora_stay_exact(tmp_path: Path) -> None:
    index = _synthetic_index(500, approx_threshold=1000)
    assert (index.manifest.vector_index, index.manifest.nprobe) == ("Flat", 0)
    queries = _clustered(20, seed=1)
    found = [{i for i, _ in row} for row in index.search(queries, 10)]
    assert found == _exact_top(index.vectors(), queries, 10)


def test_above_the_threshold_an_ivf_index_is_saved_loaded_and_finds_the_exact_neighbours(tmp_path: Path) -> None:
    index = _synthetic_index(4000, approx_threshold=1000)
    assert index.manifest.vector_index.startswith("IVF") and index.manifest.nprobe > 0
    vectors = _clustered(4000)
    assert np.array_equal(index.vectors(), vectors)  # kept exactly: the next incremental build re-adds them
    queries = _clustered(100, seed=1)
    before = index.search(queries, 10)
    index.save(tmp_path / "index")
    loaded = VectorIndex.load(tmp_path / "index")
    assert loaded.manifest == index.manifest
    assert loaded.search(queries, 10) == before
    exact = _exact_top(vectors, queries, 10)
    recall = np.mean([len({i for i, _ in row} & want) / 10 for row, want in zip(before, exact)])
    assert recall >= 0.95


def test_a_manifest_that_does_not_match_the_vectors_file_is_refused(tmp_path: Path) -> None:
    _synthetic_index(4000, approx_threshold=1000).save(tmp_path / "index")
    path = version_dir(tmp_path / "index") / MANIFEST
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "vector_index": "Flat", "nprobe": 0}))
    with pytest.raises(IndexCorruptError, match="rag build --full"):
        VectorIndex.load(tmp_path / "index")


def test_incremental_builds_of_an_approximate_index(settings, corpus: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(faiss_store, "APPROX_THRESHOLD", 0)
    _build(settings, HashingEmbedder())
    assert read_manifest(settings.index_dir).vector_index.startswith("IVF")
    (corpus / "sapporo.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    _build(settings, HashingEmbedder())
    full_dir = tmp_path / "full"
    _build(settings, HashingEmbedder(), index_dir=full_dir, full=True)
    a, b = VectorIndex.load(settings.index_dir), VectorIndex.load(full_dir)
    assert a.manifest.vector_index.startswith("IVF")
    assert a.chunks == b.chunks
    assert np.array_equal(a.vectors(), b.vectors())
    hits = Retriever(a, HashingEmbedder()).retrieve("雪まつりの雪像は何基?", k=1)
    assert "150基" in hits[0].chunk.text


# ---- large builds: vectors spooled to disk, embedded in full batches ----

@hyp_settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), max_size=6), dim=st.integers(1, 8), data=st.data())
def test_a_spool_gives_back_exactly_the_rows_appended(tmp_path_factory, sizes, dim, data) -> None:
    folder = tmp_path_factory.mktemp("spool")
    rng = np.random.default_rng(len(sizes))
    blocks = [rng.normal(size=(n, dim)).astype(np.float32) for n in sizes]
    whole = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
    with build_mod.VectorSpool(folder, dim) as spool:
        for block in blocks:
            spool.append(block)
        n = len(whole)
        assert len(spool) == n
        a = data.draw(st.integers(0, n))
        b = data.draw(st.integers(a, n))
        assert np.array_equal(spool[a:b], whole[a:b])
        rows = np.array(sorted(data.draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n))), dtype=np.int64)
        assert np.array_equal(spool[rows], whole[rows])
    assert list(folder.iterdir()) == []  # closing deletes the file


def test_an_index_built_from_a_spool_equals_one_built_in_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(faiss_store, "ADD_SLICE", 97)  # several slices, one of them partial
    monkeypatch.setattr(build_mod, "SPOOL_SLICE", 89)
    vectors = _clustered(3000)
    chunks = [Chunk(f"c{i}", f"d{i}", "s.txt", "題", f"本文{i}", 0) for i in range(len(vectors))]
    manifest = manifest_mod.Manifest(
        embedding_model="fake", dimension=vectors.shape[1], chunk_size=0, chunk_overlap=0,
        separators=[], sources={}, docs=len(vectors), chunks=len(vectors),
    )
    queries = _clustered(20, seed=7)
    for threshold in (10_000, 100):  # exact, then IVF (trained on a sample read from the spool)
        in_memory = VectorIndex.from_vectors(manifest, chunks, vectors, approx_threshold=threshold)
        with build_mod.VectorSpool(tmp_path, vectors.shape[1]) as spool:
            spool.append(vectors)
            spooled = VectorIndex.from_vectors(manifest, chunks, spool, approx_threshold=threshold)
        assert spooled.manifest.vector_index == in_memory.manifest.vector_index
        assert np.array_equal(spooled.vectors(), vectors)
        assert spooled.search(queries, 10) == in_memory.search(queries, 10)


def test_many_small_files_are_embedded_in_full_batches(settings, corpus: Path) -> None:
    for i in range(150):
        (corpus / f"short-{i:03}.txt").write_text(f"短信{i}\n\n第{i}回の会合は午後{i % 12}時に始まった。", encoding="utf-8")
    calls: list[int] = []

    class Counting(HashingEmbedder):
        def embed_passages(self, texts, *, show_progress=False):
            calls.append(len(texts))
            return super().embed_passages(texts)

    report = _build(settings, Counting(), full=True)
    assert sum(calls) == report.chunks == report.embedded
    assert all(n == build_mod.EMBED_BATCH for n in calls[:-1])  # not one small call per file
    index = VectorIndex.load(settings.index_dir)
    hits = Retriever(index, HashingEmbedder()).retrieve("第77回の会合は何時に始まった?", k=3)
    assert any("第77回" in h.chunk.text for h in hits)
