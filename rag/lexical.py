"""Lexical retrieval for Japanese: MeCab (fugashi + unidic-lite) tokens scored with BM25 (bm25s).

Whitespace tokenization turns a Japanese sentence into one token, so BM25 on it finds nothing;
morphological tokens (lemmas of content words) make exact names and numbers findable.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

# Grammar, not content: particles, auxiliaries, symbols and blanks are left out of the index.
_SKIP_POS = {"助詞", "助動詞", "補助記号", "記号", "空白"}
_LEMMA = 7  # index of the lemma in a unidic feature row


@lru_cache(maxsize=1)
def _tagger() -> Any:
    import fugashi

    return fugashi.Tagger()


def tokenize(text: str) -> list[str]:
    """Content-word lemmas (surface form when there is no lemma), NFKC and lower-cased."""
    tokens = []
    for word in _tagger()(unicodedata.normalize("NFKC", text)):
        # The raw CSV, not word.feature: building that named tuple for every word took 60% of the
        # time of a large build's BM25 step. Fields: pos1 first, lemma eighth (unidic).
        raw = word.feature_raw
        fields = next(csv.reader([raw])) if '"' in raw else raw.split(",")
        if fields[0] in _SKIP_POS:
            continue
        lemma = fields[_LEMMA] if len(fields) > _LEMMA else None
        # unidic lemmas of katakana loanwords carry the English origin ("ロシア-Russia"): keep the reading.
        token = word.surface if not lemma or "-" in lemma else lemma
        tokens.append(token.lower())
    return tokens


def words(text: str) -> list[tuple[str, str, str, str]]:
    """Every word of text as (surface, part of speech and its next levels: 名詞, 固有名詞, 人名), NFKC."""
    out = []
    for word in _tagger()(unicodedata.normalize("NFKC", text)):
        raw = word.feature_raw
        fields = next(csv.reader([raw])) if '"' in raw else raw.split(",")
        levels = [*fields[:3], "", ""][:3]
        out.append((word.surface, *levels))
    return out


class BM25Index:
    """A bm25s index over chunk texts, saved beside the FAISS vectors."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._vocab: dict[str, int] = model.vocab_dict

    @classmethod
    def build(cls, texts: Iterable[str]) -> BM25Index:
        """Tokenize and index the texts (row i of the index is the i-th text); texts may be a generator."""
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

    @property
    def n_docs(self) -> int:
        """How many texts are indexed (loading checks it against the chunk store)."""
        return int(self._model.scores["num_docs"])

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Up to k (row, BM25 score) with a positive score, best first (ties: lower row first)."""
        return self.search_tokens(tokenize(query), k)

    def search_tokens(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        """search() for a query already tokenized with tokenize()."""
        import numpy as np

        ids = [self._vocab[t] for t in tokens if t in self._vocab]
        scores = self._model.scores
        n_docs = self.n_docs
        if not ids or n_docs == 0 or k <= 0:
            return []
        # bm25s stores each token's precomputed per-document scores as a CSC column; a document's
        # score is the sum of its postings over the query tokens, added here as bm25s does (np.add.at
        # into float32). bm25s.retrieve then goes through a thread pool and a progress bar per query
        # and breaks ties at the cut arbitrarily; this ranks ties by row, the same every time.
        indptr, indices, data = scores["indptr"], scores["indices"], scores["data"]
        totals = np.zeros(n_docs, dtype=np.float32)
        for t in ids:
            a, b = int(indptr[t]), int(indptr[t + 1])
            np.add.at(totals, indices[a:b], data[a:b])
        # With many passages most of them hold some query token: cut at the k-th score over the
        # whole array first (one partition), then gather only the few rows above it.
        floor = np.partition(totals, n_docs - k)[n_docs - k] if n_docs > k else 0.0
        rows = np.flatnonzero(totals >= max(floor, np.float32(1e-30)))
        return _best(rows, totals[rows], k)


def _best(rows: Any, totals: Any, k: int) -> list[tuple[int, float]]:
    """The k highest (row, score), best first; among equal scores the lower row first, also at the cut."""
    import numpy as np

    if len(rows) > k:
        kth = np.partition(totals, len(totals) - k)[len(totals) - k]
        keep = totals >= kth  # every tie of the k-th score, so the cut does not depend on partition order
        rows, totals = rows[keep], totals[keep]
    order = np.lexsort((rows, -totals))[:k]
    return [(int(rows[i]), float(totals[i])) for i in order]
