"""Export a sentence-transformers BERT folder to ONNX once, when the models are prepared (`rag models`).

The query path then runs the encoder with ONNX Runtime and tokenizes with sentencepiece (the
tokenizer converted, rag/pieces.py; `tokenizers` where no copy was written), so asking a question
never imports torch or transformers (seconds of start-up and about a GB of
memory). Written into `<folder>/onnx/`:

    word_embeddings.npy  the word-embedding table (250k x 384 fp32, 384 MB of the model's 470):
                      looked up with numpy from the mapped file, so only the rows of the tokens
                      embedded are read and the ONNX files hold the rest of the encoder (86 MB);
    model.onnx        the encoder in fp32 from the word embeddings on (vectors equal to
                      sentence-transformers' to ~1e-6): the default runtime, readable with an
                      index built by torch and vice versa;
    model_int8.onnx   the encoder with its MatMul weights quantized to int8 (dynamic, per channel),
                      kept when its vectors keep cosine >= MIN_COSINE to the fp32 ones (opt-in,
                      RAG_EMBED_INT8=1: faster builds, an index of its own);
    export.json       what was exported from which weights, and the cosine the check measured
    tokenizer.spm     the tokenizer as a sentencepiece model (rag.pieces): the same ids as
                      `tokenizers`, loaded in ~0.3 s and ~20 MB instead of ~1.6 s and ~0.3 GB

int8 is not the default although it meets the check and keeps recall@5 on held-out JSQuAD within
0.0011 of fp32: among near-tied passages it reorders some, and on the chat page's first example
that took the passage holding the answer out of the 4 the model reads (bench/README.md).

The word-embedding table stays fp32: quantizing its Gather (onnxruntime's default op set) gave
cosine 0.976 on JSQuAD passages, below MIN_COSINE (bench/README.md). Kept inside the ONNX file
(exporter version 2) it was in memory twice while the session loaded and once after, 0.83 GB for
a process that embeds one question.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from rag.embedding import WORD_EMBEDDINGS, word_embeddings_file
from rag.errors import ModelError

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
RECORD = "export.json"
EXPORTER_VERSION = 3  # 2: the fp32 file is always kept; 3: the word embeddings in their own file
OPSET = 17
MIN_COSINE = 0.99  # int8 vectors below this cosine to fp32 ones are not used (issue: light start)
# A fixed check set in the shape of what is embedded (news sentences, a question), not tuning data.
CHECK_TEXTS = [
    "passage: 市の新庁舎は2025年4月に完成し、総工費は約120億円だった。",
    "passage: 祭りには3日間で約8万人が訪れ、実行委員長は「天候に恵まれた」と話した。",
    "passage: 運転手の不足が続いているため、会社は4月から路線バスを2割減らす。",
    "passage: The central bank kept its policy rate unchanged at 0.5 percent on Thursday.",
    "passage: 気象庁によると、台風10号は25日夜に九州南部に上陸する見込みで、記録的な大雨となるおそれがある。"
    "交通機関の計画運休も発表された。",
    "query: 新庁舎の総工費はいくらですか?",
    "query: 台風はいつ上陸する見込みですか?",
    "query: 路線バスが減便される理由は?",
]


def onnx_dir(folder: Path) -> Path:
    """Where the ONNX files of a model folder are."""
    return Path(folder) / ONNX_DIR


def model_file(folder: Path, *, int8: bool) -> Path:
    """The ONNX file of a model folder's export."""
    return onnx_dir(folder) / (INT8_FILE if int8 else FP32_FILE)


def read_record(folder: Path) -> dict[str, object] | None:
    """The export record of a model folder, or None when it was not exported (or the export is incomplete)."""
    path = onnx_dir(folder) / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not model_file(folder, int8=False).is_file():
        return None
    if record.get("int8") and not model_file(folder, int8=True).is_file():
        record["int8"] = False
    return record


def export(folder: Path, *, n_threads: int | None = None) -> dict[str, object]:
    """Export the folder's encoder to ONNX (fp32, and int8 too if it agrees with fp32); return the record.

    Done once: a folder whose record matches its weights is left alone. Files appear only when
    complete (written in a temporary folder, then moved into place).
    """
    folder = Path(folder)
    source = _weights_id(folder)
    existing = read_record(folder)
    if existing and existing.get("source") == source and existing.get("exporter_version") == EXPORTER_VERSION:
        write_pieces(folder)  # an export of before the sentencepiece copy gets it now
        return existing
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=folder))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model folder is readable by everyone
    try:
        _export_fp32(folder, tmp / FP32_FILE)
        _quantize(tmp / FP32_FILE, tmp / INT8_FILE)
        fp32 = _embed_with(folder, tmp / FP32_FILE, n_threads)
        int8 = _embed_with(folder, tmp / INT8_FILE, n_threads)
        reference = _embed_with_torch(folder)
        cos_fp32 = float(np.min(np.sum(fp32 * reference, axis=1)))
        cos_int8 = float(np.min(np.sum(int8 * fp32, axis=1)))
        if cos_fp32 < 0.9999:
            raise ModelError(
                f"The ONNX export of {folder} does not reproduce its vectors (cosine {cos_fp32:.4f}). "
                "Set RAG_EMBED_RUNTIME=torch to embed with sentence-transformers instead."
            )
        if cos_int8 < MIN_COSINE:  # not kept: int8 vectors too far from fp32 ones
            (tmp / INT8_FILE).unlink()
        record = {
            "exporter_version": EXPORTER_VERSION,
            "source": source,
            "opset": OPSET,
            "int8": cos_int8 >= MIN_COSINE,
            "min_cosine_fp32_vs_torch": round(cos_fp32, 6),
            "min_cosine_int8_vs_fp32": round(cos_int8, 6),
            "quantization": "dynamic int8, MatMul weights per channel; word embeddings fp32",
            "word_embeddings": WORD_EMBEDDINGS,
        }
        (tmp / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
        target = onnx_dir(folder)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
        write_pieces(folder)
        return record
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_pieces(folder: Path) -> bool:
    """Write the folder's tokenizer as a sentencepiece model beside its export (rag.pieces); True if it is there.

    Kept only when it gives tokenizers' ids on the check texts; otherwise (or for a tokenizer of
    another shape) the embedder keeps using tokenizers.
    """
    from rag.embedding import max_tokens_of
    from rag.pieces import SPM_FILE, PieceTokenizer, ReferenceTokenizer, convert

    folder = Path(folder)
    target = onnx_dir(folder) / SPM_FILE
    if target.is_file():
        return True
    tokenizer_json = folder / "tokenizer.json"
    try:
        if not convert(tokenizer_json, target):
            return False
    except (ImportError, OSError):  # sentencepiece not installed, or a folder we may not write: tokenizers it is
        return False
    reference = ReferenceTokenizer(tokenizer_json, max_tokens=max_tokens_of(folder))
    pieces = PieceTokenizer(target, tokenizer_json, max_tokens=max_tokens_of(folder))
    texts = [*CHECK_TEXTS, *(t.split(": ", 1)[1] for t in CHECK_TEXTS)]
    if any(pieces.ids(t) != reference.ids(t) for t in texts):
        target.unlink()
        return False
    return True


def _weights_id(folder: Path) -> str:
    """What identifies the weights exported: the converter's record, else the weight file's size and mtime."""
    from rag.embedding import model_id_of

    weights = next((p for p in (folder / "model.safetensors", folder / "pytorch_model.bin") if p.is_file()), None)
    stamp = f"{weights.stat().st_size}-{weights.stat().st_mtime_ns}" if weights else ""
    return f"{model_id_of(folder)}#{stamp}"


def _export_fp32(folder: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    table = model.get_input_embeddings().weight.detach().numpy().astype(np.float32)
    np.save(word_embeddings_file(target), table)

    class Encoder(torch.nn.Module):
        """The encoder's last hidden state from the looked-up word embeddings; pooling is done in numpy."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    ids = torch.tensor([[0, 1000, 2000, 2], [0, 3000, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in the model code
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            Encoder(model),
            (model.get_input_embeddings()(ids), mask),
            str(target),
            input_names=["inputs_embeds", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"inputs_embeds": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" hints on the root logger
    quantize_dynamic(
        str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
    )


def _embed_with(folder: Path, model_file: Path, n_threads: int | None) -> np.ndarray:
    from rag.embedding import OnnxEmbedder

    embedder = OnnxEmbedder(folder, model_file, n_threads=n_threads)
    return embedder.encode(CHECK_TEXTS)


def _embed_with_torch(folder: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    return np.asarray(model.encode(CHECK_TEXTS, normalize_embeddings=True), dtype=np.float32)
