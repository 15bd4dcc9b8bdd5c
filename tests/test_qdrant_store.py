"""`--store qdrant`: vectors in a real Qdrant (qdrant-client's local mode), same answers as FAISS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag import versions as versions_mod
from rag.config import Settings
from rag.errors import IndexCorruptError, IndexMismatchError, RagError, VectorStoreError
from rag.factories import load_pipeline, load_store
from rag.ingest import build_index
from rag.retrieval import Retriever
from rag.stores.faiss_store import FaissStore
from rag.stores.qdrant_store import QdrantStore, close_local_clients
from rag.vector_index import VectorIndex
from rag.versions import read_manifest, version_dir
from tests.conftest import REPO, HashingEmbedder, RecordingGenerator, free_port

NEW_ARTICLE = (
    "さっぽろ雪まつりが開幕、大通会場に雪像150基\n\n2026年2月4日(水)10時00分\n\n"
    "第77回さっぽろ雪まつりが4日開幕し、大通会場には雪像約150基が並んだ。\n\n"
    "期間中は約200万人の来場を見込む。札幌市観光協会は公共交通機関の利用を呼びかけている。\n"
)
# qdrant-client checks the server's version in the background and warns, after the test that
# pointed it at a port where nothing listens has ended.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")

QUESTIONS = [
    "新千歳空港を結ぶ新線の運賃はいくら?",
    "嵐山を訪れた観光客は何人?",
    "雪まつりの雪像は何基?",
    "京都の紅葉の見ごろはいつ?",
    "記事の日付は?",
]


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    close_local_clients()  # local mode locks its folder: each test starts with none open


@pytest.fixture
def qdrant(settings: Settings) -> Settings:
    """The tiny corpus's settings with the vectors in Qdrant local mode (index/qdrant/)."""
    return settings.with_overrides(store="qdrant")


def _search_all(index: VectorIndex, embedder: HashingEmbedder) -> list[list[tuple[int, float]]]:
    return index.search(embedder.embed_queries(QUESTIONS), len(index))


def _same_ranking(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> None:
    """The same rows in the same order with the same scores; rows of (nearly) equal score may swap."""
    assert len(a) == len(b)
    for (ra, sa), (rb, sb) in zip(a, b, strict=True):
        assert sa == pytest.approx(sb, abs=1e-5)
        if ra != rb:  # only a tie may be ordered differently
            assert dict(b)[ra] == pytest.approx(sa, abs=1e-5) and dict(a)[rb] == pytest.approx(sb, abs=1e-5)


def test_qdrant_finds_the_same_passages_with_the_same_scores_as_faiss_exact(qdrant: Settings, tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    build_index(settings=qdrant, embedder=embedder)
    faiss_settings = qdrant.with_overrides(store="faiss", index_dir=tmp_path / "faiss-index")
    build_index(settings=faiss_settings, embedder=embedder)

    manifest = read_manifest(qdrant.index_dir)
    assert (manifest.store, manifest.vector_index) == ("qdrant", "exact")
    assert manifest.collection.startswith("kijiqa-v-")
    assert not (version_dir(qdrant.index_dir) / "vectors.faiss").exists()  # the vectors are in Qdrant only
    store = load_store(qdrant)
    assert manifest.collection in store.collections()

    in_qdrant = VectorIndex.load(qdrant.index_dir, expected_model=embedder.model_id, store=store)
    in_faiss = VectorIndex.load(faiss_settings.index_dir, expected_model=embedder.model_id)
    assert in_qdrant.chunks == in_faiss.chunks
    assert np.array_equal(in_qdrant.vectors(), in_faiss.vectors())  # stored exactly (DOT, no re-normalizing)
    for a, b in zip(_search_all(in_qdrant, embedder), _search_all(in_faiss, embedder), strict=True):
        _same_ranking(a, b)
    for mode in ("dense", "hybrid", "lexical"):
        for q in QUESTIONS:
            hits_q = Retriever(in_qdrant, embedder, mode=mode).retrieve(q, k=3)
            hits_f = Retriever(in_faiss, embedder, mode=mode).retrieve(q, k=3)
            assert [h.chunk.chunk_id for h in hits_q] == [h.chunk.chunk_id for h in hits_f]


def test_the_payload_holds_each_passages_metadata(qdrant: Settings) -> None:
    build_index(settings=qdrant, embedder=HashingEmbedder())
    store = load_store(qdrant)
    index = VectorIndex.load(qdrant.index_dir, store=store)
    collection = read_manifest(qdrant.index_dir).collection
    points = store.call(lambda c: c.retrieve(collection, ids=[0, len(index) - 1], with_payload=True))
    by_id = {p.id: p.payload for p in points}
    for row in (0, len(index) - 1):
        chunk = index.chunks[row]
        assert by_id[row]["chunk_id"] == chunk.chunk_id and by_id[row]["source"] == chunk.source
        assert "text" not in by_id[row]  # the text is kept once, in chunks.jsonl


def test_a_pipeline_on_qdrant_answers_with_a_citation(qdrant: Settings) -> None:
    build_index(settings=qdrant, embedder=HashingEmbedder())
    pipe = load_pipeline(settings=qdrant, embedder=HashingEmbedder(), generator=RecordingGenerator())
    answer = pipe.ask("嵐山には1日あたり何人の観光客が訪れた?")
    [c] = answer.citations
    assert (c.n, c.source) == (1, "kyoto.txt")
    assert "約5万人" in answer.text and "約5万人" in c.text


def _sources(index: VectorIndex, embedder: HashingEmbedder, question: str) -> tuple[set[str], set[str]]:
    """Sources of every passage the dense side ranks, and of every passage BM25 scores, for the question."""
    dense = {index.chunks[i].source for i, _ in index.search(embedder.embed_queries([question]), len(index))[0]}
    lexical = {index.chunks[i].source for i, _ in index.lexical.search(question, len(index))}
    return dense, lexical


def test_incremental_add_and_remove_keep_qdrant_and_bm25_on_the_same_passages(
    qdrant: Settings, corpus: Path, tmp_path: Path
) -> None:
    embedder = HashingEmbedder()
    first = build_index(settings=qdrant, embedder=embedder)
    store = load_store(qdrant)

    (corpus / "sapporo.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    added = build_index(settings=qdrant, embedder=embedder)
    assert added.count("added") == 1 and added.count("unchanged") == 2
    index = VectorIndex.load(qdrant.index_dir, store=store)
    new_rows = [c for c in index.chunks if c.source == "sapporo.txt"]
    assert added.embedded == len(new_rows) and added.chunks == first.chunks + len(new_rows)  # only the new file
    dense, lexical = _sources(index, embedder, "さっぽろ雪まつり 雪像")
    assert "sapporo.txt" in dense and "sapporo.txt" in lexical
    hits = Retriever(index, embedder).retrieve("雪まつりの雪像は何基?", k=1)
    assert "150基" in hits[0].chunk.text

    (corpus / "kyoto.txt").unlink()
    removed = build_index(settings=qdrant, embedder=embedder)
    assert removed.count("removed") == 1 and removed.embedded == 0
    index = VectorIndex.load(qdrant.index_dir, store=store)
    assert len(index) == store.call(lambda c: c.count(index.manifest.collection, exact=True).count)
    for question in ("嵐山を訪れた観光客は何人?", "京都 紅葉 観光客"):
        dense, lexical = _sources(index, embedder, question)
        assert "kyoto.txt" not in dense | lexical
        assert dense <= {"blog.txt", "sapporo.txt"}
    # The reused vectors are the ones a fresh build gives, in the same rows.
    full = qdrant.with_overrides(index_dir=tmp_path / "full", qdrant_path=tmp_path / "full-qdrant")
    build_index(settings=full, embedder=embedder, full=True)
    fresh = VectorIndex.load(full.index_dir, store=load_store(full))
    assert index.chunks == fresh.chunks
    assert np.array_equal(index.vectors(), fresh.vectors())
    # Collections of removed versions are dropped with their folders: the current and the previous stay.
    kept = {read_manifest(qdrant.index_dir).collection}
    versions = sorted(p.name for p in qdrant.index_dir.iterdir() if p.name.startswith("v-"))
    assert len(versions) == 2
    assert store.collections() == sorted(store.collection_name(v) for v in versions)
    assert kept < set(store.collections())


def test_a_crash_before_publishing_leaves_the_previous_version_answerable(
    qdrant: Settings, corpus: Path, monkeypatch
) -> None:
    embedder = HashingEmbedder()
    build_index(settings=qdrant, embedder=embedder)
    before = read_manifest(qdrant.index_dir).collection
    (corpus / "sapporo.txt").write_text(NEW_ARTICLE, encoding="utf-8")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the new collection and folder were written, before CURRENT moved

    with monkeypatch.context() as patch:
        patch.setattr(versions_mod, "atomic_write_text", crash)
        with pytest.raises(KeyboardInterrupt):
            build_index(settings=qdrant, embedder=embedder)
    store = load_store(qdrant)
    assert len(store.collections()) == 2  # the unpublished version's collection is complete but unnamed
    pipe = load_pipeline(settings=qdrant, embedder=embedder, generator=RecordingGenerator())
    assert read_manifest(qdrant.index_dir).collection == before
    assert "sapporo.txt" not in {c.source for c in pipe.retriever.index.chunks}
    assert "約5万人" in pipe.ask("嵐山には1日あたり何人の観光客が訪れた?").text

    # The next build drops the leftover version and its collection, then publishes its own.
    report = build_index(settings=qdrant, embedder=embedder)
    assert report.count("added") == 1
    hits = pipe.retrieve("雪まつりの雪像は何基?", k=1)  # reloaded at the next question
    assert "150基" in hits[0].chunk.text
    versions = sorted(p.name for p in qdrant.index_dir.iterdir() if p.name.startswith("v-"))
    assert store.collections() == sorted(store.collection_name(v) for v in versions)


def test_a_build_killed_while_uploading_leaves_no_collection_behind(qdrant: Settings, corpus: Path) -> None:
    embedder = HashingEmbedder()
    build_index(settings=qdrant, embedder=embedder)
    store = load_store(qdrant)
    # What a build killed half-way leaves: its .tmp- folder and a collection named after it.
    name = versions_mod._new_version_name()
    (qdrant.index_dir / f".tmp-{name}").mkdir()
    store.prepare(np.eye(3, 512, dtype=np.float32), 512).write(qdrant.index_dir / f".tmp-{name}", name)
    assert store.collection_name(name) in store.collections()
    (corpus / "sapporo.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    build_index(settings=qdrant, embedder=embedder)
    assert store.collection_name(name) not in store.collections()
    assert not (qdrant.index_dir / f".tmp-{name}").exists()


def test_an_index_kept_in_another_store_is_refused_with_what_to_run(settings: Settings, qdrant: Settings) -> None:
    embedder = HashingEmbedder()
    build_index(settings=settings, embedder=embedder)  # FAISS
    with pytest.raises(IndexMismatchError, match=r"--store faiss.*rag build --store qdrant"):
        load_pipeline(settings=qdrant, embedder=embedder, generator=RecordingGenerator())
    # `rag build --store qdrant` over it rebuilds everything into Qdrant; then FAISS is the stranger.
    report = build_index(settings=qdrant, embedder=embedder, if_stale=True)
    assert report.rebuilt and report.embedded == report.chunks
    assert read_manifest(settings.index_dir).store == "qdrant"
    with pytest.raises(IndexMismatchError, match=r"--store qdrant.*rag build --store faiss"):
        VectorIndex.load(settings.index_dir, store=FaissStore())


def test_a_missing_collection_is_damage_with_the_command_to_run(qdrant: Settings) -> None:
    build_index(settings=qdrant, embedder=HashingEmbedder())
    store = load_store(qdrant)
    collection = read_manifest(qdrant.index_dir).collection
    store.call(lambda c: c.delete_collection(collection))
    with pytest.raises(IndexCorruptError, match=rf"{collection}.*is missing.*rag build --full"):
        VectorIndex.load(qdrant.index_dir, store=store)
    build_index(settings=qdrant, embedder=HashingEmbedder())  # a plain build repairs it
    VectorIndex.load(qdrant.index_dir, store=store)


def test_a_collection_with_missing_points_is_damage(qdrant: Settings) -> None:
    from qdrant_client import models

    build_index(settings=qdrant, embedder=HashingEmbedder())
    store = load_store(qdrant)
    collection = read_manifest(qdrant.index_dir).collection
    store.call(lambda c: c.delete(collection, points_selector=models.PointIdsList(points=[0]), wait=True))
    with pytest.raises(IndexCorruptError, match=r"vectors for .* passages.*rag build --full"):
        VectorIndex.load(qdrant.index_dir, store=store)


def test_store_settings_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"RAG_STORE": "qdrant", "RAG_INDEX_DIR": str(tmp_path / "idx")})
    store = load_store(settings)
    assert isinstance(store, QdrantStore) and store.path == tmp_path / "idx" / "qdrant"
    settings = Settings.from_env({"RAG_STORE": "qdrant", "RAG_QDRANT_URL": "http://localhost:6333"})
    assert load_store(settings).url == "http://localhost:6333"
    assert isinstance(load_store(Settings()), FaissStore)
    with pytest.raises(RagError, match="faiss, qdrant"):
        load_store(Settings(store="milvus"))
    with pytest.raises(VectorStoreError, match="http"):
        load_store(Settings(store="qdrant", qdrant_url="localhost:6333"))


def test_an_unreachable_server_says_how_to_start_one(settings: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    build = settings.with_overrides(store="qdrant", qdrant_url=url)
    with pytest.raises(VectorStoreError, match=r"docker run -p 6333:6333 qdrant/qdrant"):
        build_index(settings=build, embedder=HashingEmbedder())
    assert not any(p.name.startswith(("v-", ".tmp-")) for p in settings.index_dir.iterdir())


def test_the_cli_option_chooses_the_store() -> None:
    from rag.cli import _settings, build_parser

    for command in (["build"], ["add", "a.txt"], ["ask", "質問"], ["serve"], ["eval", "qa.jsonl"]):
        assert _settings(build_parser().parse_args([*command, "--store", "qdrant"])).store == "qdrant"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["build", "--store", "milvus"])


@pytest.mark.integration
def test_seed_recall_at_5_is_the_same_with_qdrant_and_faiss(real_settings: Settings, real_embedder, tmp_path: Path) -> None:
    from rag import evaluation as ev

    items = ev.load_jsonl(REPO / "eval" / "seed_qa.jsonl")
    scores = {}
    for store in ("faiss", "qdrant"):
        s = real_settings.with_overrides(index_dir=tmp_path / store, store=store)
        build_index(settings=s, embedder=real_embedder)
        index = VectorIndex.load(s.index_dir, expected_model=real_embedder.model_id, store=load_store(s))
        assert index.manifest.store == store
        for mode in ("dense", "hybrid"):
            retriever = Retriever(index, real_embedder, mode=mode)
            ranked = [retriever.retrieve(item.question, k=10) for item in items]
            scores[store, mode] = ev.retrieval_scores(ranked, items)
    for mode in ("dense", "hybrid"):
        assert scores["qdrant", mode]["recall@5"] == pytest.approx(scores["faiss", mode]["recall@5"], abs=0.005)
        assert scores["qdrant", mode]["mrr"] == pytest.approx(scores["faiss", mode]["mrr"], abs=0.005)
