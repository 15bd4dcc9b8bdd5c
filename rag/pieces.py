"""e5's tokenizer run by sentencepiece: the token ids of `tokenizers`, loaded in ~0.3 s and ~20 MB.

multilingual-e5 ships its XLM-R tokenizer as a `tokenizer.json` (a Unigram model of 250k pieces).
`tokenizers` keeps that model in ~0.3 GB and needs ~1.6 s to load it (2 cores): most of what a
question's embedder costs. sentencepiece runs the same kind of model from a compact trie.
`convert` writes the same pieces, scores and normalization as a sentencepiece model when
`rag models` prepares the folder; `PieceTokenizer` then gives the ids `tokenizers` gives, with
the same special tokens, truncation and padding.

Where the two could disagree, the text goes to `tokenizers` (loaded then, once): a normalized text
holding combining marks, format or control characters (the two libraries group them with their
neighbours differently), or one whose pieces also spell it in another order ("...." as "..." + "."
or "." + "...": two segmentations of equal score, a tie the libraries break differently).
Everything else gets the same ids (tests/test_pieces.py compares them on generated and real text).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

SPM_FILE = "tokenizer.spm"  # beside the ONNX files (rag/onnx_export.py), written by `rag models`
_SPACES = re.compile(" {2,}")
_RISKY_CATEGORIES = frozenset({"Mn", "Me", "Mc", "Cf", "Cc", "Co", "Cs", "Cn"})


def _xlmr_shape(spec: dict) -> str | None:
    """The precompiled character map of a tokenizer.json of XLM-R's shape (the one convert reproduces), else None."""
    model, normalizer = spec.get("model") or {}, spec.get("normalizer") or {}
    steps = normalizer.get("normalizers") if normalizer.get("type") == "Sequence" else None
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    if (
        model.get("type") != "Unigram"
        or model.get("byte_fallback")
        or not steps
        or len(steps) != 2
        or steps[0].get("type") != "Precompiled"
        or steps[1] != {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
        or spec.get("pre_tokenizer") != metaspace
    ):
        return None
    return steps[0].get("precompiled_charsmap")


def convert(tokenizer_json: Path, target: Path) -> bool:
    """Write tokenizer_json's Unigram model as a sentencepiece model at target; False if it is not of XLM-R's shape."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    spec = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    charsmap = _xlmr_shape(spec)
    if charsmap is None:
        return False
    kinds = pb.ModelProto.SentencePiece
    special = {t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
    unk_id = spec["model"].get("unk_id")
    proto = pb.ModelProto()
    for i, (piece, score) in enumerate(spec["model"]["vocab"]):
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, score
        # Each piece keeps its id (its place in the list): the model's embedding rows follow those ids.
        entry.type = kinds.UNKNOWN if i == unk_id else kinds.CONTROL if piece in special else kinds.NORMAL
    trainer = proto.trainer_spec
    trainer.model_type = pb.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(proto.pieces)
    trainer.unk_id = unk_id if unk_id is not None else 3
    trainer.bos_id, trainer.eos_id, trainer.pad_id = -1, -1, -1  # added by PieceTokenizer, as tokenizers does
    norm = proto.normalizer_spec
    norm.name = "precompiled"
    norm.precompiled_charsmap = base64.b64decode(charsmap)
    # Spaces are handled in PieceTokenizer as tokenizers does (runs collapsed after the character
    # map, one leading "▁", nothing stripped); sentencepiece only escapes them.
    norm.add_dummy_prefix, norm.remove_extra_whitespaces, norm.escape_whitespaces = False, False, True
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(target)
    return True


class ReferenceTokenizer:
    """`tokenizers` itself on tokenizer.json, truncating and padding as the model expects."""

    def __init__(self, tokenizer_json: Path, *, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.enable_truncation(max_tokens)
        pad = self.tokenizer.token_to_id("<pad>")
        self.tokenizer.enable_padding(pad_id=pad if pad is not None else 0, pad_token="<pad>")

    def ids(self, text: str) -> list[int]:
        """The ids of one text, special tokens included, truncated."""
        return list(self.tokenizer.encode(text).ids)

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention mask) of texts, padded to the longest, as int64 arrays."""
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64).reshape(len(texts), -1)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64).reshape(len(texts), -1)
        return ids, mask


class PieceTokenizer:
    """Token ids of texts, as `tokenizers` would give them for the same tokenizer.json (truncated, padded)."""

    def __init__(self, spm_file: Path, tokenizer_json: Path, *, max_tokens: int) -> None:
        """spm_file: what convert wrote from tokenizer_json; max_tokens: the model's limit, special tokens included."""
        import sentencepiece as spm

        self._pieces = spm.SentencePieceProcessor(model_file=str(spm_file))
        self._normalizer = spm.SentencePieceNormalizer(
            model_file=str(spm_file), add_dummy_prefix=False, remove_extra_whitespaces=False, escape_whitespaces=False
        )
        self._tokenizer_json = Path(tokenizer_json)
        self._reference = None  # tokenizers, for the texts sentencepiece may split otherwise
        self._lock = threading.Lock()
        self.bos, self.eos, self.pad = (self._pieces.piece_to_id(p) for p in ("<s>", "</s>", "<pad>"))
        self.max_tokens = max_tokens
        self.fallbacks = 0  # texts given to tokenizers so far

    def ids(self, text: str) -> list[int]:
        """The ids of one text, special tokens included, truncated to max_tokens."""
        try:
            normalized = _SPACES.sub(" ", self._normalizer.normalize(text))
        except (RuntimeError, UnicodeError):  # not encodable as UTF-8 (a lone surrogate): tokenizers decides
            return self._reference_ids(text)
        if any(unicodedata.category(ch) in _RISKY_CATEGORIES for ch in normalized):
            return self._reference_ids(text)
        if not normalized:
            return [self.bos, self.eos]
        if not normalized.startswith(" "):
            normalized = " " + normalized
        ids = self._pieces.encode(normalized)
        if self._tied(ids):
            return self._reference_ids(text)
        return [self.bos, *ids[: self.max_tokens - 2], self.eos]

    def _tied(self, ids: list[int]) -> bool:
        """True when the same pieces in another order spell the same text: a tie each library breaks its own way.

        ("...." as "..." + "." or "." + "...", "1010101010" as 10|101|010|10 or 10|10|101|010.) Found by
        spelling the text again from the same pieces, trying another piece where one fits; a text
        whose search runs long is counted as tied, and tokenizers decides.
        """
        pieces = [self._pieces.id_to_piece(i) for i in ids]
        text = "".join(pieces)
        left = Counter(pieces)
        lengths = sorted({len(p) for p in left})
        first: dict[int, str] = {}  # where each piece of the original spelling starts
        at = 0
        for piece in pieces:
            first[at] = piece
            at += len(piece)
        budget = [20 * len(pieces) + 1000]

        def spell(at: int, other: bool) -> bool:
            if at == len(text):
                return other
            budget[0] -= 1
            if budget[0] < 0:
                raise RecursionError
            for length in lengths:
                piece = text[at : at + length]
                if left[piece] > 0:
                    left[piece] -= 1
                    found = spell(at + length, other or first.get(at) != piece)
                    left[piece] += 1
                    if found:
                        return True
            return False

        try:
            return spell(0, False)
        except RecursionError:
            return True

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention mask) of texts, padded to the longest, as int64 arrays."""
        rows = [self.ids(t) for t in texts]
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), self.pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask

    def _reference_ids(self, text: str) -> list[int]:
        with self._lock:
            if self._reference is None:
                self._reference = ReferenceTokenizer(self._tokenizer_json, max_tokens=self.max_tokens)
            self.fallbacks += 1
        return self._reference.ids(text)
