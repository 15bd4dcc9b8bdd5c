"""A damaged or mismatched index gives one clear message naming the file and `rag build`; nothing answers from it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rag import cli
from rag.config import Settings
from rag.errors import IndexCorruptError, IndexMismatchError, RagError
from rag.factories import load_pipeline
from rag.ingest import build_index
from rag.manifest import MANIFEST
from rag.stores.faiss_store import VECTORS
from rag.versions import CHUNKS, CURRENT, LEXICAL, version_dir
from tests.conftest import REPO, HashingEmbedder, RecordingGenerator, run_env

QUESTION = "嵐山には1日あたり何人の観光客が訪れた?"


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_manifest(folder: Path, **fields: object) -> None:
    raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    raw.update(fields)
    (folder / MANIFEST).write_text(json.dumps(raw), encoding="utf-8")


def _drop_last_chunk(folder: Path) -> None:
    lines = (folder / CHUNKS).read_text(encoding="utf-8").splitlines()
    (folder / CHUNKS).write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")


def _bm25_file(folder: Path) -> Path:
    return sorted((folder / LEXICAL).glob("*.npy"))[0]


# name -> (damage to the current version folder, file the message must name, error class)
DAMAGES: dict[str, tuple[Callable[[Path], None], Callable[[Path], Path], type[RagError]]] = {
    "truncated vectors": (lambda v: _truncate(v / VECTORS), lambda v: v / VECTORS, IndexCorruptError),
    "empty vectors": (lambda v: _truncate(v / VECTORS, 0), lambda v: v / VECTORS, IndexCorruptError),
    "missing vectors": (lambda v: (v / VECTORS).unlink(), lambda v: v / VECTORS, IndexCorruptError),
    "missing BM25 folder": (lambda v: shutil.rmtree(v / LEXICAL), lambda v: v / LEXICAL, IndexCorruptError),
    "missing BM25 file": (lambda v: _bm25_file(v).unlink(), _bm25_file, IndexCorruptError),
    "truncated BM25 file": (lambda v: _truncate(_bm25_file(v), 0.9), lambda v: v / LEXICAL, IndexCorruptError),
    "manifest not JSON": (
        lambda v: (v / MANIFEST).write_text("{not json", encoding="utf-8"),
        lambda v: v / MANIFEST,
        IndexCorruptError,
    ),
    "manifest a JSON list": (
        lambda v: (v / MANIFEST).write_text("[1, 2]", encoding="utf-8"),
        lambda v: v / MANIFEST,
        IndexCorruptError,
    ),
    "another embedder": (
        lambda v: _edit_manifest(v, embedding_model="intfloat/multilingual-e5-large"),
        lambda v: v / MANIFEST,
        IndexMismatchError,
    ),
    "another dimension": (lambda v: _edit_manifest(v, dimension=384), lambda v: v / VECTORS, IndexCorruptError),
    "missing chunk store": (lambda v: (v / CHUNKS).unlink(), lambda v: v / CHUNKS, IndexCorruptError),
    "chunk store one passage short": (_drop_last_chunk, lambda v: v / CHUNKS, IndexCorruptError),
    "chunk store cut mid-line": (lambda v: _truncate(v / CHUNKS, 0.7), lambda v: v / CHUNKS, IndexCorruptError),
    "CURRENT names a missing version": (lambda v: shutil.rmtree(v), lambda v: v, IndexCorruptError),
    "CURRENT is garbage": (
        lambda v: (v.parent / CURRENT).write_bytes(b"\xff\xfe garbage"),
        lambda v: v.parent / CURRENT,
        IndexCorruptError,
    ),
}


@pytest.fixture
def built(settings: Settings, embedder: HashingEmbedder) -> Settings:
    build_index(settings=settings, embedder=embedder)
    return settings


def _damage(settings: Settings, name: str) -> Path:
    """Apply the named damage; return the file the message must name."""
    damage, named, _ = DAMAGES[name]
    folder = version_dir(settings.index_dir)
    expected = named(folder)
    damage(folder)
    return expected


@pytest.mark.parametrize("name", list(DAMAGES))
def test_each_damage_refuses_to_load_with_one_message_naming_the_file(built: Settings, embedder, name: str) -> None:
    expected_file = _damage(built, name)
    generator = RecordingGenerator()
    with pytest.raises(DAMAGES[name][2]) as caught:
        load_pipeline(settings=built, embedder=embedder, generator=generator)
    message = str(caught.value)
    assert str(expected_file) in message, message
    assert "rag build" in message and "作り直して" in message
    assert caught.value.path == str(expected_file)
    assert len(message) < 600 and "\n" not in message  # one readable line, not a C++ error dump
    assert generator.calls == []  # nothing was answered from half an index


@pytest.mark.parametrize("name", list(DAMAGES))
def test_the_advice_works_rag_build_full_repairs_every_damage(built: Settings, embedder, name: str) -> None:
    _damage(built, name)
    build_index(settings=built, embedder=embedder, full=True)
    answer = load_pipeline(settings=built, embedder=embedder, generator=RecordingGenerator()).ask(QUESTION)
    assert "5万人" in answer.text and answer.citations


@pytest.mark.parametrize("name", ["truncated vectors", "missing BM25 file", "chunk store one passage short"])
def test_a_plain_rag_build_repairs_a_damaged_index_instead_of_calling_it_current(
    built: Settings, embedder, name: str
) -> None:
    _damage(built, name)
    report = build_index(settings=built, embedder=embedder)
    assert report.rebuilt
    answer = load_pipeline(settings=built, embedder=embedder, generator=RecordingGenerator()).ask(QUESTION)
    assert "5万人" in answer.text


@pytest.mark.parametrize("command", ["ask", "serve"])
def test_cli_prints_the_message_without_a_traceback_and_exits_non_zero(
    built: Settings, embedder, monkeypatch, capsys, command: str
) -> None:
    from rag import factories, webapp

    expected_file = _damage(built, "truncated vectors")
    generators: list[RecordingGenerator] = []
    monkeypatch.setattr(factories, "load_embedder", lambda settings: HashingEmbedder())
    monkeypatch.setattr(factories, "load_generator", lambda settings: generators.append(RecordingGenerator()))
    launched: list[object] = []
    monkeypatch.setattr(webapp, "build_app", lambda pipe: launched.append(pipe))
    args = [QUESTION] if command == "ask" else ["--port", "1"]
    code = cli.main([command, *args, "--index", str(built.index_dir)])
    out, err = capsys.readouterr()
    assert code != 0
    assert err.startswith("エラー: ") and str(expected_file) in err and "rag build --full" in err
    assert "Traceback" not in err and out == ""
    assert launched == [] and generators == []  # no page served, no model loaded for nothing


@pytest.mark.parametrize("name", ["manifest not JSON", "CURRENT names a missing version"])
def test_rag_serve_process_refuses_to_start(built: Settings, name: str) -> None:
    # Both damages are found before any model is loaded, so the real command runs here in seconds.
    expected_file = _damage(built, name)
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", "serve", "--index", str(built.index_dir), "--port", "1"],
        capture_output=True,
        text=True,
        env=run_env(),
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == cli.EXIT_ERROR
    assert str(expected_file) in proc.stderr and "rag build --full" in proc.stderr
    assert "Traceback" not in proc.stderr and "http://" not in proc.stdout


def test_a_damaged_new_version_keeps_the_running_pipeline_on_the_old_one(built: Settings, embedder, corpus) -> None:
    pipe = load_pipeline(settings=built, embedder=embedder, generator=RecordingGenerator())
    (corpus / "new.txt").write_text("新しい記事\n\n東京で新しい橋が開通した。", encoding="utf-8")
    build_index(settings=built, embedder=embedder)
    _truncate(version_dir(built.index_dir) / VECTORS)
    with pytest.warns(UserWarning, match="vectors.faiss"):
        answer = pipe.ask(QUESTION)
    assert "5万人" in answer.text
