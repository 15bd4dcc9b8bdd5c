"""Embedder protocol and the sentence-transformers implementation (multilingual e5)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from rag.pieces import PieceTokenizer, ReferenceTokenizer


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


# The word-embedding table of an ONNX export that takes inputs_embeds (rag.onnx_export, version 3).
WORD_EMBEDDINGS = "word_embeddings.npy"
EMBED_BATCH = 128  # passages per embedding call in a build: the progress bar moves at this step


def word_embeddings_file(model: Path) -> Path:
    """The word-embedding table beside an ONNX file that takes inputs_embeds."""
    return Path(model).parent / WORD_EMBEDDINGS


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


def _prompts(folder: Path) -> dict[str, str]:
    """The "query: " / "passage: " prompts a sentence-transformers folder declares (none: {})."""
    try:
        config = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    prompts = config.get("prompts") or {}
    return {k: v for k, v in prompts.items() if isinstance(v, str)}


def max_tokens_of(folder: Path) -> int:
    """The most tokens the folder's model reads (special tokens included): its max_seq_length, else 512."""
    try:
        return int(json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return 512


def _tokenizer(folder: Path, export_dir: Path, *, pieces: bool) -> ReferenceTokenizer | PieceTokenizer:
    """The sentencepiece copy of folder's tokenizer written beside its export, else `tokenizers` on tokenizer.json."""
    from rag.pieces import SPM_FILE, PieceTokenizer, ReferenceTokenizer

    spm_file = export_dir / SPM_FILE
    if pieces and spm_file.is_file():
        try:
            return PieceTokenizer(spm_file, folder / "tokenizer.json", max_tokens=max_tokens_of(folder))
        except (ImportError, OSError, RuntimeError):  # sentencepiece missing or the file unreadable
            pass
    return ReferenceTokenizer(folder / "tokenizer.json", max_tokens=max_tokens_of(folder))


INT8_SUFFIX = "+int8"  # in the model id of an int8 runtime: its vectors differ from fp32 (cosine ~0.995)
# Passages per ONNX Runtime call. Smaller batches keep the activations in the CPU's caches: against 32,
# `rag build --full` of the seeds took 0.85x the time and 0.71x the peak memory on 2 cores, with the
# same fp32 vectors (bench/README.md).
ONNX_BATCH = 8


class OnnxEmbedder:
    """The same model run by ONNX Runtime, tokenized by `tokenizers`: no torch, no transformers.

    Mean pooling over the attention mask and L2 normalization, as the folder's sentence-transformers
    modules do (rag/onnx_export.py checks the vectors agree when it exports).
    """

    def __init__(
        self,
        folder: Path,
        model_file: Path,
        *,
        n_threads: int | None = None,
        batch_size: int = ONNX_BATCH,
        int8: bool = False,
        pieces: bool = True,
    ) -> None:
        """folder: the sentence-transformers folder (tokenizer, prompts); model_file: its ONNX export (int8: quantized).

        pieces: tokenize with the sentencepiece copy of the tokenizer that `rag models` wrote beside
        the export (rag.pieces: the same ids, a fraction of the time and memory to load), when there is one.
        """
        import onnxruntime as ort

        self.folder = Path(folder)
        options = ort.SessionOptions()
        if n_threads:
            options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers are not the user's business
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        # An export that takes inputs_embeds (rag.onnx_export, version 3) keeps the word-embedding
        # table beside it: mapped, so a question reads a few rows of it, not 384 MB.
        self._table = None
        if "inputs_embeds" in {i.name for i in self.session.get_inputs()}:
            self._table = np.load(word_embeddings_file(model_file), mmap_mode="r")
        self.tokenizer = _tokenizer(self.folder, Path(model_file).parent, pieces=pieces)
        self.model_id = model_id_of(self.folder) + (INT8_SUFFIX if int8 else "")
        self.batch_size = batch_size
        self._prompts = _prompts(self.folder)
        self.dimension = int(self.session.get_outputs()[0].shape[-1] or self.encode(["x"]).shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalized vectors of texts as given (prompts included), in order."""
        out = np.zeros((len(texts), 0), dtype=np.float32)
        # Similar lengths batched together: less padding to compute (sentence-transformers does the same).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts: dict[int, np.ndarray] = {}
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            ids, mask = self.tokenizer.encode_batch([texts[i] for i in rows])
            if self._table is None:
                feeds = {"input_ids": ids, "attention_mask": mask}
            else:
                feeds = {"inputs_embeds": np.asarray(self._table[ids], dtype=np.float32), "attention_mask": mask}
            hidden = self.session.run(None, feeds)[0]
            summed = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            vectors = summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)
            parts.update(zip(rows, vectors.astype(np.float32), strict=True))
        if parts:
            out = np.stack([parts[i] for i in range(len(texts))])
        return np.ascontiguousarray(out, dtype=np.float32)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Vectors for questions."""
        prompt = self._prompts.get("query", "")
        return self.encode([prompt + t for t in texts])

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """Vectors for passages."""
        prompt = self._prompts.get("passage", "")
        return self.encode([prompt + t for t in texts])
