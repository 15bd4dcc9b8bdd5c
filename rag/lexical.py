"""Lexical retrieval for Japanese: MeCab (fugashi + unidic-lite) tokens scored with BM25 (bm25s).

Whitespace tokenization turns a Japanese sentence into one token, so BM25 on it finds nothing;
morphological tokens (lemmas of content words) make exact names and numbers findable.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

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
        self._vocab = set(model.vocab_dict)

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

    @property
    def n_docs(self) -> int:
        """How many texts are indexed (loading checks it against the chunk store)."""
        return int(self._model.scores["num_docs"])

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Up to k (row, BM25 score) with a positive score, best first."""
        tokens = [t for t in tokenize(query) if t in self._vocab]
        n_docs = self.n_docs
        if not tokens or n_docs == 0:
            return []
        ids, scores = self._model.retrieve([tokens], k=min(k, n_docs), show_progress=False)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if s > 0]
