"""Embedder protocol and the sentence-transformers implementation (multilingual e5)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors; queries and passages are embedded differently."""

    model_id: str
    dimension: int

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Vectors for questions, shape (len(texts), dimension)."""
        ...

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """Vectors for passages, shape (len(texts), dimension)."""
        ...


class LazyEmbedder:
    """An Embedder that loads the real one on first use: a build with nothing to embed never loads torch."""

    def __init__(self, model_id: str, load: Callable[[], Embedder]) -> None:
        self.model_id = model_id  # known without the weights (model_id_of), enough to compare with an index
        self._load = load
        self._real: Embedder | None = None

    @property
    def real(self) -> Embedder:
        """The loaded embedder (loaded now if it was not yet)."""
        if self._real is None:
            self._real = self._load()
        return self._real

    @property
    def dimension(self) -> int:  # type: ignore[override]
        return self.real.dimension

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Vectors for questions."""
        return self.real.embed_queries(texts)

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """Vectors for passages."""
        return self.real.embed_passages(texts, show_progress=show_progress)


def model_id_of(folder: Path) -> str:
    """The id an index records for the model in `folder`, read without loading the model."""
    # The id goes into the index manifest: two different weights must never share one.
    marker = folder / "conversion.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        source = str(info.get("source_sha256", ""))[:12]
        return f"{info.get('model_id', folder.name)}@{source}-c{info.get('converter_version', 0)}"
    return folder.resolve().name


class SentenceTransformerEmbedder:
    """A local sentence-transformers folder with "query: " / "passage: " prompts (e5 style)."""

    def __init__(self, folder: Path, *, n_threads: int | None = None, batch_size: int = 32) -> None:
        # Offline by design: never ask a model hub, even for metadata.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter `rag ask`

        if n_threads:
            torch.set_num_threads(n_threads)
        self.folder = Path(folder)
        self.model = SentenceTransformer(str(self.folder), device="cpu", local_files_only=True)
        self.model_id = model_id_of(self.folder)
        self.dimension = int(self.model.get_embedding_dimension())
        self.batch_size = batch_size
        prompts = getattr(self.model, "prompts", {}) or {}
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = "passage" if "passage" in prompts else None

    def _encode(self, texts: list[str], prompt_name: str | None, show_progress: bool) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            prompt_name=prompt_name,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Vectors for questions."""
        return self._encode(texts, self._query_prompt, False)

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """Vectors for passages."""
        return self._encode(texts, self._passage_prompt, show_progress)
