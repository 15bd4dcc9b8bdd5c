"""Query -> ranked Hits. No model loading here: the embedder and index are injected."""

from __future__ import annotations

from rag.embedding import Embedder
from rag.errors import RagError
from rag.index import VectorIndex
from rag.types import Hit

MODES = ("hybrid", "dense", "lexical")
RRF_K = 60  # the usual reciprocal-rank-fusion constant: ranks matter, raw scores of the two never mix
CANDIDATES = 30  # how deep each retriever's list goes into the fusion


def rrf(rankings: list[list[int]], *, k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of several ranked id lists, best first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda x: -x[1])


class Retriever:
    """Dense (e5 + FAISS), lexical (MeCab + BM25) or both fused by reciprocal rank."""

    def __init__(self, index: VectorIndex, embedder: Embedder, *, mode: str = "hybrid") -> None:
        if mode not in MODES:
            raise RagError(f"Unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}.")
        self.index = index
        self.embedder = embedder
        self.mode = mode

    def retrieve(self, query: str, *, k: int) -> list[Hit]:
        """The k chunks most similar to the query, best first."""
        return self.retrieve_many([query], k=k)[0]

    def retrieve_many(self, queries: list[str], *, k: int) -> list[list[Hit]]:
        """retrieve() for several queries with one embedding call."""
        if not queries:
            return []
        chunks = self.index.chunks
        if self.mode == "lexical":
            return [[Hit(chunk=chunks[i], score=s) for i, s in self.index.lexical.search(q, k)] for q in queries]
        dense = self.index.search(self.embedder.embed_queries(queries), max(k, CANDIDATES))
        if self.mode == "dense":
            return [[Hit(chunk=chunks[i], score=s) for i, s in row[:k]] for row in dense]
        results = []
        for query, dense_row in zip(queries, dense, strict=True):
            lexical_row = self.index.lexical.search(query, CANDIDATES)
            fused = rrf([[i for i, _ in dense_row], [i for i, _ in lexical_row]])
            results.append([Hit(chunk=chunks[i], score=s) for i, s in fused[:k]])
        return results

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
