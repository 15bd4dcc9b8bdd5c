"""Query -> ranked Hits. No model loading here: the embedder and index are injected."""

from __future__ import annotations

import dataclasses
import itertools
import re

from rag.embedding import Embedder
from rag.errors import RagError
from rag.types import Hit
from rag.vector_index import VectorIndex

MODES = ("hybrid", "dense", "lexical")
RRF_K = 60  # the usual reciprocal-rank-fusion constant: ranks matter, raw scores of the two never mix
CANDIDATES = 30  # how deep each retriever's list goes into the fusion
# A passage cut mid-sentence gets the rest of that sentence from the next passage, up to this many
# characters: 「▽東部ルハンシク州では、99%以上」 read alone made the 1.5B model answer
# 「ルハンシク州」 for a question about a town in クルスク州.
MAX_COMPLETION = 160
_SENTENCE_END = re.compile(r"[。！？!?」』）)]\s*$")
_FIRST_END = re.compile(r"[。！？!?]|\n")
_CONTINUES = re.compile(r"[のをにがはへ、，]")


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

    def complete_sentences(self, hits: list[Hit]) -> list[Hit]:
        """The same hits, each passage that ends mid-sentence finished from the next passage of its article."""
        if getattr(self, "_next_of_index", None) is not self.index:
            chunks = self.index.chunks
            self._next = {
                a.chunk_id: b for a, b in itertools.pairwise(chunks) if a.doc_id == b.doc_id and b.position == a.position + 1
            }
            self._next_of_index = self.index
        out = []
        for hit in hits:
            text = hit.chunk.text
            following = self._next.get(hit.chunk.chunk_id)
            if following is not None and not _SENTENCE_END.search(text):
                rest = _continuation(text, following.text)
                end = _FIRST_END.search(rest)
                if end is not None and end.end() <= MAX_COMPLETION:
                    rest = rest[: end.end()].rstrip("\n")
                    hit = Hit(chunk=dataclasses.replace(hit.chunk, text=text + rest), score=hit.score)
            out.append(hit)
        return out

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


def _continuation(text: str, following: str) -> str:
    """What `following` adds after `text`: the passages overlap, so skip the part they share.

    Saved pages break lines mid-sentence (「99%以上」, blank line, 「の地域を掌握した」): a line that
    starts with a particle or a comma cannot start a sentence, and a text that ends with a comma
    was cut by the splitter, so what follows continues the sentence.
    """
    rest = "\n" + following  # no overlap: whatever comes next starts a new line
    for size in range(min(len(text), len(following)), 0, -1):
        if following.startswith(text[-size:]):
            rest = following[size:]
            break
    stripped = rest.lstrip()
    return stripped if _CONTINUES.match(stripped) or text.endswith(("、", "，")) else rest
