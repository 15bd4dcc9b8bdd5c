"""Deterministic fakes and a tiny Japanese corpus shared by the tests."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.generation import Message

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


class HashingEmbedder:
    """Character-bigram hashing embedder: Japanese-friendly, deterministic (crc32, not salted hash())."""

    model_id = "fake-bigram-512"
    dimension = 512

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            text = re.sub(r"\s+", "", text)
            for a, b in itertools.pairwise(text):
                out[row, zlib.crc32((a + b).encode("utf-8")) % self.dimension] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts)

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self._embed(texts)


class RecordingGenerator:
    """Answers with the first sentence of passage [1] and cites it; records every prompt it gets."""

    def __init__(self, reply: str | None = None) -> None:
        self.reply = reply
        self.calls: list[list[Message]] = []

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        return sum(len(m["content"]) for m in messages)

    def stream_chat(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        self.calls.append(messages)
        text = self.reply
        if text is None:
            sentence = re.search(r"\[1\] <資料>(?:（[^）]*）)?([^。\n]*。)", messages[-1]["content"])
            text = f"{sentence.group(1)}[1]" if sentence else "資料には記載がありません。"
        # Stream in small pieces, as a real model does.
        for i in range(0, len(text), 3):
            yield text[i : i + 3]


class OverlapDetectingGenerator(RecordingGenerator):
    """A fake model that notes when two callers are inside it at once (the real one would corrupt both)."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self.inside = 0
        self.most_inside = 0

    def _enter(self) -> None:
        with self._guard:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)

    def _leave(self) -> None:
        with self._guard:
            self.inside -= 1

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        self._enter()  # tokenizing uses the model too
        try:
            time.sleep(0.001)
            return super().count_prompt_tokens(messages)
        finally:
            self._leave()

    def stream_chat(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        self._enter()
        try:
            for piece in super().stream_chat(messages, max_tokens=max_tokens):
                time.sleep(0.001)  # give other threads every chance to step in
                yield piece
        finally:
            self._leave()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the tiny corpus under tmp_path (tests may add broken files to it)."""
    dest = tmp_path / "seeds"
    shutil.copytree(DATA / "corpus", dest)
    return dest


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture
def settings(tmp_path: Path, corpus: Path) -> Settings:
    return Settings(
        index_dir=tmp_path / "index", seeds_dir=corpus, models_dir=tmp_path / "models", chunk_size=120, chunk_overlap=20
    )


# ---- the real parts (integration tests): converted e5, FAISS, the real seeds, the default GGUF ----

KURSK_Q = "ロシア軍がクルスク州で奪還を目指している要衝の町はどこですか?"
KURSK_FILE = "000_b6beab82226e0b33.txt"


_CACHE: dict[str, Path] = {}  # the session's RAG_CACHE_DIR: what models keep between processes


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder for the whole session, shared by its processes: tests write nothing into ~/.cache."""
    _CACHE["dir"] = tmp_path_factory.mktemp("cache")
    return _CACHE["dir"]


@pytest.fixture(scope="session")
def real_settings(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Settings:
    # Models are prepared under the repo's models/ (as `make` does); the index goes to a temp dir.
    return Settings(
        models_dir=REPO / "models",
        seeds_dir=REPO / "seeds",
        index_dir=tmp_path_factory.mktemp("real") / "index",
        cache_dir=cache_dir,
    )


@pytest.fixture(scope="session")
def real_embedder(real_settings: Settings):
    from rag.factories import load_embedder

    return load_embedder(real_settings)


@pytest.fixture(scope="session")
def real_index(real_settings: Settings, real_embedder) -> Settings:
    from rag.ingest import build_index

    report = build_index(settings=real_settings, embedder=real_embedder)
    assert report.docs >= 30 and report.skipped == []
    return real_settings


@pytest.fixture(scope="session")
def real_pipe(real_index: Settings, real_embedder):
    from rag.factories import load_generator, load_pipeline

    return load_pipeline(settings=real_index, embedder=real_embedder, generator=load_generator(real_index))


def run_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: no RAG_* settings of the developer's, the repo's models."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_MODELS_DIR": str(REPO / "models"), "PYTHONUNBUFFERED": "1"})
    if "dir" in _CACHE:
        env["RAG_CACHE_DIR"] = str(_CACHE["dir"])
    env.update(extra)
    return env


def rag_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `rag ARGS` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        capture_output=True,
        text=True,
        env=run_env(**env),
        cwd=REPO,
        timeout=900,
    )


def stop_process(proc: subprocess.Popen, *, timeout: float = 30) -> None:
    """Ask a server process to stop; kill it if it has not within timeout seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def chat_server(settings: Settings, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start `app.py` on the index of `settings` on a free port (RAG_* settings in env); yield (process, port) once it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--index", str(settings.index_dir), "--port", str(port), *args],
        cwd=REPO,
        env=run_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited: {proc.stdout.read() if proc.stdout else ''}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        else:
            pytest.fail("the chat page did not start within 300 s")
        yield proc, port
    finally:
        stop_process(proc, timeout=20)
