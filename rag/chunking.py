"""Documents -> Chunks with Japanese-aware separators. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable

from rag.types import Chunk, Document

# Japanese has no spaces between words, so the splitter's default separators
# ("\n\n", "\n", " ", "") would cut mid-sentence. Paragraph, line, sentence enders,
# then the comma, then single characters as a last resort.
JAPANESE_SEPARATORS = ["\n\n", "\n", "。", "！", "？", "!", "?", "、", ""]


def chunk_documents(docs: Iterable[Document], *, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Split each document into passages of at most chunk_size characters."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    # keep_separator="end": "。" stays with the sentence it ends instead of starting the next chunk.
    splitter = RecursiveCharacterTextSplitter(
        separators=JAPANESE_SEPARATORS,
        keep_separator="end",
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        strip_whitespace=True,
    )
    chunks: list[Chunk] = []
    for doc in docs:
        for position, text in enumerate(t for t in splitter.split_text(doc.text) if t.strip()):
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}/{position}",
                    doc_id=doc.doc_id,
                    source=doc.source,
                    title=doc.title,
                    text=text,
                    position=position,
                    date=doc.date,
                    url=doc.url,
                )
            )
    return chunks


def passage_text(chunk: Chunk) -> str:
    """The text embedded for a chunk: its article title gives a passage its topic."""
    return f"{chunk.title}\n{chunk.text}"
