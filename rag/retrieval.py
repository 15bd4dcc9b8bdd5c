"""Query -> ranked Hits. No model loading here: the embedder and index are injected."""

from __future__ import annotations

from rag.embedding import Embedder
from rag.index import VectorIndex
from rag.types import Hit


class Retriever:
    """Dense retrieval: e5 query vector against the FAISS index of passage vectors."""

    def __init__(self, index: VectorIndex, embedder: Embedder) -> None:
        self.index = index
        self.embedder = embedder

    def retrieve(self, query: str, *, k: int) -> list[Hit]:
        """The k chunks most similar to the query, best first."""
        return self.retrieve_many([query], k=k)[0]

    def retrieve_many(self, queries: list[str], *, k: int) -> list[list[Hit]]:
        """retrieve() for several queries with one embedding call."""
        if not queries:
            return []
        vectors = self.embedder.embed_queries(queries)
        return [[Hit(chunk=self.index.chunks[i], score=s) for i, s in row] for row in self.index.search(vectors, k)]

    def retrieve_in_conversation(self, question: str, previous_questions: list[str], *, k: int) -> list[Hit]:
        """Retrieve for a follow-up: the question alone and joined to the previous question, best of both.

        「その司令部はどこに?」 alone has no topic; with the previous question it has. Keeping the
        question-alone hits too means a change of topic is not drowned by the old one.
        """
        if not previous_questions:
            return self.retrieve(question, k=k)
        combined = f"{previous_questions[-1]}\n{question}"
        best: dict[str, Hit] = {}
        for hits in self.retrieve_many([combined, question], k=k):
            for hit in hits:
                kept = best.get(hit.chunk.chunk_id)
                if kept is None or hit.score > kept.score:
                    best[hit.chunk.chunk_id] = hit
        return sorted(best.values(), key=lambda h: h.score, reverse=True)[:k]
