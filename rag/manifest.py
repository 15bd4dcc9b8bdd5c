"""What an index version is: its manifest (how it was built), read and checked, and when it can be reused.

Every version folder holds one `manifest.json`. Loading compares it with the settings in use, and an
incremental build reuses a version's passages only when nothing that made them has changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rag.chunking import JAPANESE_SEPARATORS
from rag.errors import REBUILD_HINT, IndexMismatchError, IndexNotBuiltError, damaged, short

# Bump when the files or their meaning change; an index of another version is rebuilt, not guessed at.
FORMAT_VERSION = 3  # 2: BM25 index beside the vectors; 3: per-file reports and reader fingerprint (incremental)
READABLE_VERSIONS = (2, 3)  # 2 is read as it is and fully rebuilt by the next build
MANIFEST = "manifest.json"
DEFAULT_STORE = "faiss"  # rag/stores/faiss_store.py's kind: indexes written before the store field used it
FLAT = "Flat"  # the exact FAISS index as a faiss.index_factory string

# The modules that decide which passages a file gives. Their source is fingerprinted into the
# manifest: when it changes, stored passages of unchanged files may no longer be what a fresh read
# gives, so the next build re-reads and re-embeds every file instead of reusing them.
_READER_MODULES = ("documents.py", "office.py", "text.py", "chunking.py")


def reader_fingerprint() -> str:
    """A short hash of the code that turns files into passages (see _READER_MODULES)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for name in _READER_MODULES:
        digest.update(name.encode() + b"\0" + (package / name).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Manifest:
    """How an index was built; loading compares it with the settings in use."""

    embedding_model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    separators: list[str]
    sources: dict[str, str]  # seed file (relative path) -> sha256 of its bytes (skipped files too)
    docs: int
    chunks: int
    skipped: dict[str, str] = field(default_factory=dict)  # file -> reason
    format_version: int = FORMAT_VERSION
    created_at: str = ""
    reader: str = ""  # reader_fingerprint() of the build; "" for indexes not built from a seeds folder
    # file -> {"articles", "kept_chars", "dropped_chars"}: an unchanged file's report without re-reading it
    files: dict[str, dict[str, int]] = field(default_factory=dict)
    # The FAISS index kind as a faiss.index_factory string ("Flat": exact; "IVF<lists>,Flat": approximate)
    # and, for IVF, how many lists a query scans. Indexes written before these fields were exact.
    vector_index: str = FLAT
    nprobe: int = 0
    # Where the vectors are (rag/stores): "faiss" (vectors.faiss in this folder) or "qdrant" (the
    # collection named here). Indexes written before these fields keep theirs in FAISS.
    store: str = DEFAULT_STORE
    collection: str = ""


def read_manifest_file(folder: Path) -> Manifest:
    """The manifest in one version folder; IndexNotBuiltError if there is none, IndexCorruptError if unreadable."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise IndexNotBuiltError(f"No index in {folder}/. Run `rag build` (or `make index`) first.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise damaged(path, f"is not valid JSON ({short(exc)})") from exc
    if not isinstance(raw, dict):
        raise damaged(path, f"holds a JSON {type(raw).__name__}, not the index's description")
    if raw.get("format_version") not in READABLE_VERSIONS:
        raise IndexMismatchError(
            f"The index in {folder}/ has format version {raw.get('format_version')} ({path}), this 記事QA reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}. {REBUILD_HINT}",
            path=str(path),
        )
    try:
        return Manifest(**raw)
    except TypeError as exc:
        raise damaged(path, f"is missing fields or has unknown ones ({short(exc)})") from exc


def incompatible(
    manifest: Manifest, *, embedding_model: str, chunk_size: int, chunk_overlap: int, store: str = DEFAULT_STORE
) -> str | None:
    """Why no stored passage of this index can be reused, or None."""
    if manifest.store != store:
        return f"vector store changed ({manifest.store} -> {store})"
    if manifest.format_version != FORMAT_VERSION:
        return f"index format {manifest.format_version} (now {FORMAT_VERSION})"
    if manifest.embedding_model != embedding_model:
        return f"embedding model changed ({manifest.embedding_model} -> {embedding_model})"
    if (manifest.chunk_size, manifest.chunk_overlap) != (chunk_size, chunk_overlap):
        return "chunking parameters changed"
    if manifest.separators != JAPANESE_SEPARATORS:
        return "chunk separators changed"
    if manifest.reader != reader_fingerprint():
        return "the code that reads and chunks files changed"
    return None
