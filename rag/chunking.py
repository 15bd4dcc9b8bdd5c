"""Documents -> Chunks with Japanese-aware separators. Pure functions."""

from __future__ import annotations

import bisect
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
        texts = [t for t in splitter.split_text(doc.text) if t.strip()]
        pages = _pages(doc, texts) if doc.pages else [None] * len(texts)
        for position, (text, page) in enumerate(zip(texts, pages)):
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
                    page=page,
                )
            )
    return chunks


def _pages(doc: Document, texts: list[str]) -> list[int | None]:
    """The page where each passage of a paged document starts (passages come in order, so search forward)."""
    starts = [offset for offset, _ in doc.pages]
    out: list[int | None] = []
    at = 0
    for text in texts:
        found = doc.text.find(text, at)
        if found < 0:  # cannot happen for the splitter's own pieces; keep the previous position
            found = at
        out.append(doc.pages[max(bisect.bisect_right(starts, found) - 1, 0)][1])
        at = found + 1  # the next passage may overlap this one, but starts after its start
    return out


def passage_text(chunk: Chunk) -> str:
    """The text embedded for a chunk: its article title gives a passage its topic."""
    return f"{chunk.title}\n{chunk.text}"
