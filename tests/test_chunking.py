from rag.chunking import chunk_documents
from rag.types import Document

TEXT = (
    "ロシア軍はここ数日、西部クルスク州で攻勢を強めた。要衝スジャ奪還に向けて制圧地域を広げてきた。"
    "ウクライナ軍は昨年8月に越境攻撃を開始した。国境沿いの一帯を占領した。\n\n"
    "その後ロシア軍は北朝鮮が派遣した兵士を投入した。スジャの奪還では苦戦を強いられてきた。"
)


def _doc(text: str = TEXT) -> Document:
    return Document(
        doc_id="a#0", source="a.txt", title="クルスク情勢", text=text, date="2025-03-13", url="https://example.jp/a"
    )


def test_chunks_end_at_sentence_boundaries_and_respect_size() -> None:
    chunks = chunk_documents([_doc()], chunk_size=60, chunk_overlap=0)
    assert len(chunks) >= 3
    for c in chunks:
        assert len(c.text) <= 60
        assert c.text.endswith("。"), c.text  # keep_separator="end": no sentence cut or glued to the next chunk
        assert not c.text.startswith("。")


def test_every_chunk_carries_document_metadata_and_a_stable_id() -> None:
    first = chunk_documents([_doc()], chunk_size=60, chunk_overlap=10)
    again = chunk_documents([_doc()], chunk_size=60, chunk_overlap=10)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    assert len({c.chunk_id for c in first}) == len(first)
    for i, c in enumerate(first):
        assert (c.source, c.title, c.date, c.url, c.doc_id, c.position) == (
            "a.txt",
            "クルスク情勢",
            "2025-03-13",
            "https://example.jp/a",
            "a#0",
            i,
        )


def test_text_without_punctuation_is_still_split() -> None:
    chunks = chunk_documents([_doc("あ" * 250)], chunk_size=100, chunk_overlap=0)
    assert [len(c.text) for c in chunks] == [100, 100, 50]
