"""Lexical retrieval for Japanese: MeCab (fugashi + unidic-lite) tokens scored with BM25 (bm25s).

Whitespace tokenization turns a Japanese sentence into one token, so BM25 on it finds nothing;
morphological tokens (lemmas of content words) make exact names and numbers findable.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

# A query token with postings in more than this share of the documents is "common": it only adds
# to the scores of documents found through the other tokens, when that provably changes no result.
COMMON_SHARE = 1 / 16

# Grammar, not content: particles, auxiliaries, symbols and blanks are left out of the index.
_SKIP_POS = {"助詞", "助動詞", "補助記号", "記号", "空白"}


@lru_cache(maxsize=1)
def _tagger() -> Any:
    import fugashi

    return fugashi.Tagger()


def tokenize(text: str) -> list[str]:
    """Content-word lemmas (surface form when there is no lemma), NFKC and lower-cased."""
    tokens = []
    for word in _tagger()(unicodedata.normalize("NFKC", text)):
        feature = word.feature
        if getattr(feature, "pos1", None) in _SKIP_POS:
            continue
        lemma = getattr(feature, "lemma", None)
        # unidic lemmas of katakana loanwords carry the English origin ("ロシア-Russia"): keep the reading.
        token = word.surface if not lemma or "-" in lemma else lemma
        tokens.append(token.lower())
    return tokens


class BM25Index:
    """A bm25s index over chunk texts, saved beside the FAISS vectors."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._vocab: dict[str, int] = model.vocab_dict
        self._sorted: bool | None = None  # see _prunable()
        self._max: Any = None  # see _term_max()

    @classmethod
    def build(cls, texts: list[str]) -> BM25Index:
        """Tokenize and index the texts (row i of the index is texts[i])."""
        import bm25s

        model = bm25s.BM25()
        model.index([tokenize(t) or ["\u3000"] for t in texts], show_progress=False)
        return cls(model)

    def save(self, folder: Path) -> None:
        """Write the index files into folder."""
        self._model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        """Read an index written by save()."""
        import bm25s

        return cls(bm25s.BM25.load(str(folder), show_progress=False, verbosity=0))

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Up to k (row, BM25 score) with a positive score, best first (ties: lower row first)."""
        return self.search_tokens(tokenize(query), k)

    def search_tokens(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        """search() for a query already tokenized with tokenize()."""
        ids = [self._vocab[t] for t in tokens if t in self._vocab]
        scores = self._model.scores
        n_docs = int(scores["num_docs"])
        if not ids or n_docs == 0 or k <= 0:
            return []
        # bm25s stores each token's precomputed per-document scores as a CSC column (a posting list
        # sorted by row); a document's score is the sum over the query tokens. bm25s.retrieve adds
        # every posting into a dense array with np.add.at and selects over all documents; with a
        # million passages a common word ("する", "年") has a posting in most of them and that is
        # most of the query time. Here the rare tokens' postings give the candidates, the common
        # tokens only add their scores to those candidates, and the result is taken from the
        # candidates when no other document could reach the k-th score even with the highest
        # score of every common token (MaxScore); otherwise all postings are summed.
        indptr = scores["indptr"]
        spans = [(t, int(indptr[t]), int(indptr[t + 1])) for t in ids]
        limit = max(k, int(n_docs * COMMON_SHARE))
        rare = [span for span in spans if span[2] - span[1] <= limit]
        common = [span for span in spans if span[2] - span[1] > limit]
        if rare and common and self._prunable():
            found = self._search_pruned(rare, common, k)
            if found is not None:
                return found
        return self._search_all(spans, k, n_docs)

    def _search_all(self, spans: list[tuple[int, int, int]], k: int, n_docs: int) -> list[tuple[int, float]]:
        import numpy as np

        indices, data = self._model.scores["indices"], self._model.scores["data"]
        docs = np.concatenate([indices[a:b] for _, a, b in spans])
        if not len(docs):
            return []
        weights = np.concatenate([data[a:b] for _, a, b in spans])
        totals = np.bincount(docs, weights=weights, minlength=n_docs).astype(np.float32)
        rows = np.flatnonzero(totals > 0)
        return _best(rows, totals[rows], k)

    def _search_pruned(
        self, rare: list[tuple[int, int, int]], common: list[tuple[int, int, int]], k: int
    ) -> list[tuple[int, float]] | None:
        """The top k from the documents holding a rare token, or None when that cannot be proven exact."""
        import numpy as np

        indices, data = self._model.scores["indices"], self._model.scores["data"]
        docs = np.concatenate([indices[a:b] for _, a, b in rare])
        rows, inverse = np.unique(docs, return_inverse=True)
        if len(rows) < k:
            return None
        totals = np.bincount(inverse, weights=np.concatenate([data[a:b] for _, a, b in rare]))
        bound = 0.0  # the most any document without a rare token can score
        for t, a, b in common:
            column = indices[a:b]
            at = np.minimum(np.searchsorted(column, rows), len(column) - 1)
            hit = column[at] == rows
            totals[hit] += data[a:b][at[hit]]
            bound += float(self._term_max()[t])
        totals = totals.astype(np.float32)
        kth = np.partition(totals, len(totals) - k)[len(totals) - k]
        if not bound * (1 + 1e-5) < kth:
            return None
        return _best(rows, totals, k)

    def _prunable(self) -> bool:
        """Whether every posting list is sorted by row (bm25s builds them so; checked once)."""
        if self._sorted is None:
            import numpy as np

            indices, indptr = self._model.scores["indices"], self._model.scores["indptr"]
            drops = np.flatnonzero(np.diff(indices) < 0) + 1  # where a row number goes down
            self._sorted = bool(np.isin(drops, indptr).all())
        return self._sorted

    def _term_max(self) -> Any:
        """The highest score of each token over all documents (computed once)."""
        if self._max is None:
            import numpy as np

            indptr, data = self._model.scores["indptr"], self._model.scores["data"]
            self._max = np.zeros(len(indptr) - 1, dtype=np.float64)
            nonempty = np.flatnonzero(np.diff(indptr) > 0)
            if len(nonempty):
                self._max[nonempty] = np.maximum.reduceat(data, indptr[nonempty])
        return self._max


def _best(rows: Any, totals: Any, k: int) -> list[tuple[int, float]]:
    """The k highest (row, score), best first; among equal scores the lower row first, also at the cut."""
    import numpy as np

    if len(rows) > k:
        kth = np.partition(totals, len(totals) - k)[len(totals) - k]
        keep = totals >= kth  # every tie of the k-th score, so the cut does not depend on partition order
        rows, totals = rows[keep], totals[keep]
    order = np.lexsort((rows, -totals))[:k]
    return [(int(rows[i]), float(totals[i])) for i in order]
