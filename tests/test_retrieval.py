import pytest

from rag.errors import RagError
from rag.ingest import build_index
from rag.lexical import tokenize
from rag.retrieval import Retriever, rrf
from rag.vector_index import VectorIndex
from rag.versions import version_dir


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
    from rag.build import build_from_documents
    from rag.chunking import chunk_documents
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


def _ranked_as_bm25s(index, query: str, k: int) -> list[tuple[int, float]]:
    """What bm25s itself returns for the query, as (row, score) with a positive score."""
    reference = index._model
    tokens = [t for t in tokenize(query) if t in reference.vocab_dict]
    if not tokens:
        return []
    ids, scores = reference.retrieve([tokens], k=int(reference.scores["num_docs"]), show_progress=False)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if s > 0][:k]


def test_bm25_search_ranks_as_bm25s_does() -> None:
    from rag.lexical import BM25Index

    cities = ("札幌", "京都", "福岡", "仙台", "金沢", "那覇")
    events = ("雪まつり", "花火大会", "音楽祭", "マラソン", "将棋大会")
    # Every passage has the common words (市, 開く, 人, 訪れる); names and numbers are rare.
    texts = [
        f"{cities[i % 6]}市で{events[i % 5]}が開かれ、{i * 37 % 1000}人が訪れた。"
        + (f"会場は第{i}号館で、主催は{cities[(i // 6) % 6]}新聞社。" if i % 3 else "天気は晴れだった。")
        # 30 passages with オーロラ, 50 with both 流星群 and 皆既日食: for the query of all three, those 50 win.
        + ("オーロラが見えた。" if i % 20 == 0 else "")
        + ("流星群と皆既日食も話題に。" if i % 12 == 1 else "")
        for i in range(600)
    ]
    index = BM25Index.build(texts)
    queries = (
        "札幌の雪まつり", "第123号館で開かれた将棋大会に訪れた人", "那覇新聞社が主催した", "市で開かれた",
        "仙台の天気", "福岡", "量子", "金沢市のマラソンに370人", "京都 京都 花火大会",
        "オーロラと流星群と皆既日食",
    )
    for query in queries:
        for k in (1, 5, 30):
            ours, expected = index.search(query, k), _ranked_as_bm25s(index, query, 10_000)
            assert len(ours) == min(k, len(expected)), query
            assert [s for _, s in ours] == sorted((s for _, s in ours), reverse=True)
            assert [s for _, s in ours] == pytest.approx([s for _, s in expected[:k]], rel=1e-5), query
            by_row = dict(expected)
            assert all(by_row[i] == pytest.approx(s, rel=1e-5) for i, s in ours), query
