"""Deterministic fakes and a tiny Japanese corpus shared by the tests."""

from __future__ import annotations

import itertools
import re
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.generation import Message

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


class HashingEmbedder:
    """Character-bigram hashing embedder: Japanese-friendly, deterministic (crc32, not salted hash())."""

    model_id = "fake-bigram-512"
    dimension = 512

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            text = re.sub(r"\s+", "", text)
            for a, b in itertools.pairwise(text):
                out[row, zlib.crc32((a + b).encode("utf-8")) % self.dimension] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts)

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self._embed(texts)


class RecordingGenerator:
    """Answers with the first sentence of passage [1] and cites it; records every prompt it gets."""

    def __init__(self, reply: str | None = None) -> None:
        self.reply = reply
        self.calls: list[list[Message]] = []

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        return sum(len(m["content"]) for m in messages)

    def stream_chat(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        self.calls.append(messages)
        text = self.reply
        if text is None:
            sentence = re.search(r"\[1\] (?:（[^）]*）)?([^。\n]*。)", messages[-1]["content"])
            text = f"{sentence.group(1)}[1]" if sentence else "資料には記載がありません。"
        # Stream in small pieces, as a real model does.
        for i in range(0, len(text), 3):
            yield text[i : i + 3]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the tiny corpus under tmp_path (tests may add broken files to it)."""
    dest = tmp_path / "seeds"
    shutil.copytree(DATA / "corpus", dest)
    return dest


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def settings(tmp_path: Path, corpus: Path) -> Settings:
    return Settings(
        index_dir=tmp_path / "index", seeds_dir=corpus, models_dir=tmp_path / "models", chunk_size=120, chunk_overlap=20
    )
