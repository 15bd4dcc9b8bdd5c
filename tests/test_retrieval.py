import pytest

from rag.errors import RagError
from rag.index import VectorIndex, version_dir
from rag.lexical import tokenize
from rag.pipeline import build_index
from rag.retrieval import Retriever, rrf


@pytest.fixture
def index(settings, embedder) -> VectorIndex:
    build_index(settings=settings, embedder=embedder)
    return VectorIndex.load(settings.index_dir, expected_model=embedder.model_id)


def test_japanese_tokens_are_content_words_not_one_blob() -> None:
    tokens = tokenize("ロシア軍がクルスク州で奪還を目指している")
    assert {"ロシア", "クルスク", "奪還", "目指す"} <= set(tokens)
    assert "が" not in tokens and "で" not in tokens


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_every_mode_finds_the_passage_with_the_fare(index, embedder, mode) -> None:
    hits = Retriever(index, embedder, mode=mode).retrieve("新線の運賃は片道いくらですか", k=3)
    assert hits and "1200円" in hits[0].chunk.text
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_lexical_search_with_only_unknown_words_finds_nothing(index, embedder) -> None:
    assert Retriever(index, embedder, mode="lexical").retrieve("量子コンピュータ", k=3) == []


def test_bm25_index_is_saved_with_the_vectors(index, settings) -> None:
    assert (version_dir(settings.index_dir) / "bm25").is_dir()
    assert index.lexical.search("ハヤブサ", 2)


def test_rrf_rewards_agreement() -> None:
    fused = rrf([[1, 2, 3], [3, 1, 4]])
    assert [i for i, _ in fused][:2] == [1, 3]
    assert {i for i, _ in fused} == {1, 2, 3, 4}


def test_unknown_mode_is_rejected(index, embedder) -> None:
    with pytest.raises(RagError, match="retrieval mode"):
        Retriever(index, embedder, mode="magic")


def test_a_passage_cut_mid_sentence_is_finished_from_the_next_one(tmp_path, embedder) -> None:
    from rag.chunking import chunk_documents
    from rag.index import build_from_documents
    from rag.types import Document, Hit

    long_sentence = "▽東部ルハンシク州では、九十九パーセント以上の地域がロシアの支配下にあり、住民の避難が続いていると伝えられている。"
    body = "ロシア軍は要衝の町スジャの奪還を目指している。" + long_sentence + "住民の避難が続いている。" * 6
    doc = Document(doc_id="a", source="a.txt", title="クルスク", text=body)
    chunks = chunk_documents([doc], chunk_size=40, chunk_overlap=10)
    cut = next(c for c in chunks if not c.text.endswith("。"))
    index = build_from_documents([doc], tmp_path / "index", embedder=embedder, chunk_size=40, chunk_overlap=10)
    retriever = Retriever(index, embedder)

    [done] = retriever.complete_sentences([Hit(chunk=cut, score=1.0)])
    assert done.chunk.text.startswith(cut.text) and done.chunk.text.endswith("。")
    assert done.chunk.text in body  # finished with the article's own words, nothing else
    whole = next(c for c in chunks if c.text.endswith("。"))
    assert retriever.complete_sentences([Hit(chunk=whole, score=1.0)])[0].chunk.text == whole.text


def test_bm25_search_ranks_as_bm25s_does() -> None:

    from rag.lexical import BM25Index

    texts = [
        f"{city}で{event}が開かれ、{n}人が訪れた。{city}の{topic}も話題になった。"
        for n, (city, event, topic) in enumerate(
            (c, e, t)
            for c in ("札幌", "京都", "福岡", "仙台")
            for e in ("雪まつり", "花火大会", "音楽祭")
            for t in ("観光", "交通", "天気")
        )
    ]
    index = BM25Index.build(texts)
    reference = index._model
    for query in ("札幌の雪まつり", "京都 花火大会 交通", "仙台の天気と観光", "福岡", "量子"):
        ours = index.search(query, 5)
        tokens = [t for t in tokenize(query) if t in reference.vocab_dict]
        if not tokens:
            assert ours == []
            continue
        ids, scores = reference.retrieve([tokens], k=len(texts), show_progress=False)
        expected = {int(i): float(s) for i, s in zip(ids[0], scores[0]) if s > 0}
        assert len(ours) == min(5, len(expected))
        assert [s for _, s in ours] == sorted((s for _, s in ours), reverse=True)
        best = sorted(expected.values(), reverse=True)[: len(ours)]
        assert [s for _, s in ours] == pytest.approx(best, rel=1e-5)
        assert all(expected[i] == pytest.approx(s, rel=1e-5) for i, s in ours)
