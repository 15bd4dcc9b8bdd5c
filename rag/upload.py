"""Put user-given article files into the seeds folder: safe names, allowed types, a size limit, no silent overwrite.

Used by `rag add`, `rag.add_documents` and the chat page's upload control. Every file is checked
before any is copied, so a refused call changes nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rag.documents import SEED_SUFFIXES, read_file
from rag.errors import UploadError
from rag.files import atomic_copy, atomic_write_bytes, sha256_file
from rag.office import REFUSED_SUFFIXES

UPLOAD_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf", ".docx")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # an article is kilobytes; 10 MB is already a whole saved site
# A PDF or Word file carries fonts and pictures beside its text: a 20-page press release with photos is 10-30 MB.
MAX_PAGED_UPLOAD_BYTES = 50 * 1024 * 1024
_PAGED = (".pdf", ".docx")
MAX_NAME_CHARS = 100
# Characters that are path syntax, shell-hostile or invisible; Japanese letters are all kept.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


@dataclass(frozen=True)
class SavedFile:
    """A file put into the seeds folder, with what is needed to undo it."""

    name: str  # relative to the seeds folder
    previous: bytes | None  # the bytes it replaced (None: the name was new)
    unchanged: bool = False  # the seeds folder already held exactly these bytes: nothing was written


def allowed_suffixes() -> tuple[str, ...]:
    """The file types that can be added: those the reader reads, among .txt/.md/.html/.htm."""
    return tuple(s for s in UPLOAD_SUFFIXES if s in SEED_SUFFIXES)


def upload_limit(name: str) -> int:
    """The largest file, in bytes, that can be added under this name (50 MB for PDF/DOCX, else 10 MB)."""
    return MAX_PAGED_UPLOAD_BYTES if Path(name).suffix.lower() in _PAGED else MAX_UPLOAD_BYTES


def safe_name(name: str) -> str:
    """A file name for the seeds folder from any given name: no folders, no '..', no hidden or control characters."""
    # Both separators: a name from a browser on Windows arrives as C:\\Users\\...\\記事.txt.
    base = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = _UNSAFE.sub("_", stem).strip(" ._")
    stem = re.sub(r"\s+", "_", stem)[:MAX_NAME_CHARS] or "article"
    suffix = _UNSAFE.sub("", suffix).lower()
    return f"{stem}.{suffix}" if suffix else stem


def _check(path: Path, name: str, seeds_dir: Path, *, replace: bool) -> bool:
    """Raise UploadError if path cannot be added as seeds_dir/name; True if it is already there unchanged."""
    shown = path.name
    allowed = allowed_suffixes()
    suffix = Path(name).suffix.lower()
    if suffix in REFUSED_SUFFIXES:
        raise UploadError(
            f"{shown}: {REFUSED_SUFFIXES[suffix]}.", filename=shown, code="doc", detail=REFUSED_SUFFIXES[suffix]
        )
    if suffix not in allowed:
        raise UploadError(
            f"{shown}: only {', '.join(allowed)} files can be added. Save the article as one of these and try again.",
            filename=shown,
            code="type",
        )
    if not path.is_file():
        raise UploadError(f"{shown}: no such file ({path}).", filename=shown, code="missing")
    size = path.stat().st_size
    limit = upload_limit(name)
    if size > limit:
        raise UploadError(
            f"{shown} is {size / 1e6:.1f} MB; {suffix or 'such'} files up to {limit // (1024 * 1024)} MB can be added. "
            "Split it into smaller files (for example one per article) and add those.",
            filename=shown,
            code="size",
        )
    if size == 0:
        raise UploadError(f"{shown} is empty. Nothing was added.", filename=shown, code="empty")
    dest = seeds_dir / name
    if dest.exists():
        if dest.is_file() and sha256_file(dest) == sha256_file(path):
            return True
        if not replace:
            raise UploadError(
                f"{name} already exists in {seeds_dir}/ with other content. Rename the file, or use "
                "`rag add --replace` (replace=True) to replace it.",
                filename=shown,
                code="exists",
            )
    reading = read_file(path, root=path.parent)
    if reading.report.status == "skipped":
        raise UploadError(
            f"{shown}: {reading.report.reason}. Nothing was added; check that the file holds the article text.",
            filename=shown,
            code="unreadable",
            detail=reading.report.reason,
        )
    return False


def save_files(
    paths: Iterable[str | Path], seeds_dir: Path, *, replace: bool = False, names: Iterable[str] | None = None
) -> list[SavedFile]:
    """Check every file, then copy each into seeds_dir under a safe name; refuse all if one is refused.

    `names` gives the original names when `paths` are temporary copies (as with a browser upload).
    """
    seeds_dir = Path(seeds_dir)
    paths = [Path(p) for p in paths]
    given = list(names) if names is not None else [p.name for p in paths]
    if len(given) != len(paths):
        raise ValueError("names must match paths one for one")
    targets = [safe_name(n) for n in given]
    seen: dict[str, str] = {}
    for original, target in zip(given, targets):
        if target in seen:
            raise UploadError(
                f"{original} and {seen[target]} would both be saved as {target}. Rename one of them.",
                filename=original,
                code="duplicate",
            )
        seen[target] = original
    if not seeds_dir.is_dir():
        seeds_dir.mkdir(parents=True)
    unchanged = [_check(p, t, seeds_dir, replace=replace) for p, t in zip(paths, targets)]

    saved: list[SavedFile] = []
    try:
        for path, target, same in zip(paths, targets, unchanged):
            dest = seeds_dir / target
            if same:
                saved.append(SavedFile(name=target, previous=None, unchanged=True))
                continue
            previous = dest.read_bytes() if dest.is_file() else None
            # Written under a temporary name and renamed: a build running now never reads half a file.
            atomic_copy(path, dest)
            saved.append(SavedFile(name=target, previous=previous))
    except BaseException:
        undo(saved, seeds_dir)
        raise
    return saved


def undo(saved: list[SavedFile], seeds_dir: Path) -> None:
    """Put the seeds folder back as it was before save_files (used when the index update fails)."""
    for s in reversed(saved):
        if s.unchanged:
            continue
        dest = Path(seeds_dir) / s.name
        if s.previous is None:
            dest.unlink(missing_ok=True)
        else:
            atomic_write_bytes(dest, s.previous)
