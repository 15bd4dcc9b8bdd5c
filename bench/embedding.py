"""Benchmark (not a test): passage embedding throughput of `rag build`, the default path and faster ones.

    python bench/embedding.py [--passages 384] [--runs 3] [--threads 2]

Embeds the same JSQuAD paragraphs (title + text, as `rag build` embeds a passage) with each variant
and prints passages/s (median of --runs) and the cosine of each vector to the default path's
vector (min and mean; a variant must keep min >= 0.99 to be usable without rebuilding indexes):

  default         rag.build.embed_passages: slices of EMBED_BATCH, sentence-transformers batch 32, fp32
  sorted          the whole list sorted by length before slicing (less padding), order restored after
  batch 16 / 64   other sentence-transformers batch sizes
  int8 dynamic    torch dynamic int8 quantization of the Linear layers (no new dependency);
                  also of the feed-forward Linears only
  bf16            the model cast to bfloat16 (the CPU has AVX-512 BF16)
  onnx fp32       rag.embedding.OnnxEmbedder on the fp32 file `rag models` exported: the default
                  runtime (RAG_EMBED_RUNTIME=onnx)
  onnx int8       the int8 file (RAG_EMBED_INT8=1)
  onnx ... batch 32   the same with 32 passages per call (8, rag.embedding.ONNX_BATCH, since 2026-12-06)

sentence-transformers' own ONNX / OpenVINO backends need optimum, which pins transformers versions;
rag/onnx_export.py exports with torch.onnx instead (bench/README.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
JSQUAD = REPO.parent / "shared" / "jsquad" / "valid-v1.3.json"


def passages(n: int) -> list[str]:
    """n JSQuAD paragraphs spread over the set, as `title\\ntext`, cut to the default chunk size."""
    from rag.config import Settings

    size = Settings().chunk_size
    data = json.loads(JSQUAD.read_text(encoding="utf-8"))
    out = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            title, _, text = para["context"].partition(" [SEP] ")
            out.append(f"{title}\n{text[:size]}")
    step = max(1, len(out) // n)
    return out[::step][:n]


def timed(fn: Callable[[], np.ndarray], runs: int) -> tuple[float, np.ndarray]:
    """(median seconds, vectors of the last run)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        vectors = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=384)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args()

    import torch

    from rag.build import embed_passages
    from rag.embedding import SentenceTransformerEmbedder
    from rag.models import resolve_embed_path

    texts = passages(args.passages)
    folder = resolve_embed_path(models_dir=REPO / "models", embed_model_path=None)
    base = SentenceTransformerEmbedder(folder, n_threads=args.threads)
    base.embed_passages(["準備"])  # first call pays one-off costs

    def with_model(model: object, batch_size: int = 32) -> SentenceTransformerEmbedder:
        other = copy.copy(base)
        other.model, other.batch_size = model, batch_size
        return other

    def quantized() -> SentenceTransformerEmbedder:
        model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base.model), {torch.nn.Linear}, dtype=torch.qint8)
        return with_model(model)

    def quantized_ffn() -> SentenceTransformerEmbedder:
        # Only the feed-forward Linears (about two thirds of the encoder's multiply-adds); attention stays fp32.
        model = copy.deepcopy(base.model)
        names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".attention." not in n}
        return with_model(torch.ao.quantization.quantize_dynamic(model, names, dtype=torch.qint8))

    def onnx(int8: bool, batch_size: int | None = None) -> object:
        from rag.config import Settings
        from rag.factories import load_embedder

        settings = Settings(models_dir=REPO / "models", embed_runtime="onnx", embed_int8=int8, n_threads=args.threads)
        embedder = load_embedder(settings)
        if batch_size:
            embedder.batch_size = batch_size
        return embedder

    def run(embedder: SentenceTransformerEmbedder, by_length: bool) -> np.ndarray:
        if not by_length:
            return embed_passages(embedder, texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = embed_passages(embedder, [texts[i] for i in order])
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    # name -> (make the embedder, sort the whole list by length first)
    variants: dict[str, tuple[Callable[[], object], bool]] = {
        "default": (lambda: base, False),
        "sorted": (lambda: base, True),
        "batch 16": (lambda: with_model(base.model, 16), False),
        "batch 64": (lambda: with_model(base.model, 64), False),
        "int8 dynamic": (quantized, False),
        "int8 dynamic + sorted": (quantized, True),
        "int8 dynamic, feed-forward only": (quantized_ffn, False),
        "bf16": (lambda: with_model(copy.deepcopy(base.model).to(torch.bfloat16)), False),
        "onnx fp32": (lambda: onnx(False), False),
        "onnx int8": (lambda: onnx(True), False),
        "onnx fp32 batch 32": (lambda: onnx(False, 32), False),
        "onnx int8 batch 32": (lambda: onnx(True, 32), False),
    }
    print(f"{len(texts)} passages, {args.threads} threads, load average {os.getloadavg()[0]:.1f}", flush=True)
    reference = None
    print("| path | passages/s | cosine to default (min / mean) |")
    print("|---|---|---|")
    for name, (make, by_length) in variants.items():
        if args.only and name not in args.only and name != "default":
            continue
        embedder = make()
        seconds, vectors = timed(lambda e=embedder, s=by_length: run(e, s), args.runs)
        vectors = np.asarray(vectors, dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        if reference is None:
            reference = vectors
        cosine = np.sum(vectors * reference, axis=1)
        print(f"| {name} | {len(texts) / seconds:.1f} | {cosine.min():.4f} / {cosine.mean():.4f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
