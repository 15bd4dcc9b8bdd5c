"""The index on the real parts: a real `rag build` killed with SIGKILL, `rag add`, and an upload through the chat page."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.config import Settings
from rag.retrieval import Retriever
from rag.vector_index import VectorIndex
from tests.conftest import KURSK_FILE, KURSK_Q, REPO, chat_server, rag_cli, run_env
from tests.test_index import NEW_ARTICLE

pytestmark = pytest.mark.integration


@pytest.fixture
def copied(real_index: Settings, tmp_path: Path) -> Settings:
    """A copy of the session's real index and of the seeds (so tests may change both)."""
    shutil.copytree(real_index.index_dir, tmp_path / "index", ignore=shutil.ignore_patterns(".lock"))
    shutil.copytree(REPO / "seeds", tmp_path / "seeds")
    return Settings(models_dir=real_index.models_dir, seeds_dir=tmp_path / "seeds", index_dir=tmp_path / "index")


def _texts(index_dir: Path) -> list[str]:
    return [c.text for c in VectorIndex.load(index_dir).chunks]


def _start_build(settings: Settings) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "build", "--seeds", str(settings.seeds_dir), "--index",
         str(settings.index_dir), "--quiet"],
        cwd=REPO, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(index_dir: Path, prefix: str, proc: subprocess.Popen[str], before: set[str]) -> bool:
    """Poll until an entry starting with prefix (and not in before) appears; False if the build ended first."""
    while proc.poll() is None:
        if any(e.name.startswith(prefix) and e.name not in before for e in index_dir.iterdir()):
            return True
        time.sleep(0.002)
    return False


def test_real_rag_build_killed_with_sigkill_leaves_old_or_new_index(copied: Settings, real_embedder, tmp_path) -> None:
    old = _texts(copied.index_dir)
    pristine = tmp_path / "pristine"
    shutil.copytree(copied.index_dir, pristine)
    changed = copied.seeds_dir / KURSK_FILE
    changed.write_text(changed.read_text(encoding="utf-8").replace("スジャ", "スジャ（Sudzha）"), encoding="utf-8")
    expected = tmp_path / "expected"
    shutil.copytree(pristine, expected)
    started = time.monotonic()
    out = rag_cli("build", "--seeds", str(copied.seeds_dir), "--index", str(expected), "--quiet")
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    new = _texts(expected)
    assert new != old

    outcomes = []
    # Early in the build (loading, reading) and well into it (embedding): the build's own length sets
    # the second moment, so a faster build (ONNX start-up) is still killed while it runs.
    late = round(took * 0.6, 1)
    moments = ("after 1 s", f"after {late} s", "when .tmp-v- appears", "when the new v- appears")
    for moment in moments:
        shutil.rmtree(copied.index_dir)
        shutil.copytree(pristine, copied.index_dir)  # every kill starts from the old index
        before = {e.name for e in copied.index_dir.iterdir()}
        proc = _start_build(copied)
        if moment.startswith("after"):
            time.sleep(float(moment.split()[1]))
            reached = proc.poll() is None
        else:
            reached = _wait_for(copied.index_dir, ".tmp-v-" if ".tmp" in moment else "v-", proc, before)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        texts = _texts(copied.index_dir)  # loads: never a missing or half-written index
        assert texts in (old, new), moment
        outcomes.append((moment, reached, "old" if texts == old else "new"))
        retriever = Retriever(VectorIndex.load(copied.index_dir, expected_model=real_embedder.model_id), real_embedder)
        assert any(h.chunk.source == KURSK_FILE and "スジャ" in h.chunk.text for h in retriever.retrieve(KURSK_Q, k=4))
    print(outcomes)
    assert all(reached for _, reached, _ in outcomes), outcomes  # each kill hit a running build
    # The next build finishes the job from whatever the last kill left.
    out = rag_cli("build", "--seeds", str(copied.seeds_dir), "--index", str(copied.index_dir), "--quiet")
    assert out.returncode == 0, out.stderr
    assert _texts(copied.index_dir) == new
    left = sorted(e.name for e in copied.index_dir.iterdir())
    assert not [n for n in left if n.startswith(".tmp-")] and len([n for n in left if n.startswith("v-")]) <= 2, left


def test_rag_add_then_ask_from_the_cli(copied: Settings, tmp_path: Path) -> None:
    article = tmp_path / "sapporo.txt"
    article.write_text(NEW_ARTICLE, encoding="utf-8")
    where = ["--seeds", str(copied.seeds_dir), "--index", str(copied.index_dir)]
    out = rag_cli("add", str(article), *where, "--quiet")
    assert out.returncode == 0, out.stderr
    assert "追加: " in out.stdout and "追加 1" in out.stdout and "変更なし 5" in out.stdout
    out = rag_cli("ask", "さっぽろ雪まつりの大通会場には雪像が何基並んだ?", "--index", str(copied.index_dir))
    assert out.returncode == 0, out.stderr
    assert "150" in out.stdout.partition("出典:")[0] and "sapporo.txt" in out.stdout


def test_rag_add_inspect_and_ask_a_pdf_from_the_cli(copied: Settings, tmp_path: Path) -> None:
    from tests.office_files import make_pdf

    title, *paragraphs = [p for p in NEW_ARTICLE.split("\n\n") if p.strip()]
    article = tmp_path / "sapporo.pdf"
    # Two lines a column: the article runs over three pages, each with a running head and a page number.
    make_pdf(article, [p.strip() for p in paragraphs], title=title, headline=title, lines_per_column=2)
    where = ["--seeds", str(copied.seeds_dir), "--index", str(copied.index_dir)]
    out = rag_cli("add", str(article), *where, "--quiet")
    assert out.returncode == 0, out.stderr
    assert "追加: " in out.stdout and "追加 1" in out.stdout
    out = rag_cli("inspect", str(copied.seeds_dir / "sapporo.pdf"))
    assert "--- p. 2 ---" in out.stdout and "[page header/footer] - 2 -" in out.stdout
    out = rag_cli("ask", "さっぽろ雪まつりの大通会場には雪像が何基並んだ?", "--index", str(copied.index_dir))
    assert out.returncode == 0, out.stderr
    answer, _, sources = out.stdout.partition("出典:")
    assert "150" in answer and "sapporo.pdf p. " in sources


def test_chat_page_upload_then_answers_from_the_new_article(copied: Settings, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    article = tmp_path / "さっぽろ雪まつり.txt"
    article.write_text(NEW_ARTICLE, encoding="utf-8")
    with chat_server(copied, "--seeds", str(copied.seeds_dir)) as (_proc, port):
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        first = str(client.predict(KURSK_Q, api_name="/chat"))
        assert "スジャ" in first
        message = client.predict([handle_file(str(article))], False, api_name="/add_articles")
        assert "記事を追加しました" in message and "さっぽろ雪まつり.txt" in message, message
        assert (copied.seeds_dir / "さっぽろ雪まつり.txt").read_text(encoding="utf-8") == NEW_ARTICLE
        answer = str(client.predict("さっぽろ雪まつりの大通会場には雪像が何基並んだ?", api_name="/chat"))
        assert "150" in answer and "さっぽろ雪まつり.txt" in answer, answer
        pdf = tmp_path / "scan.pdf"
        pdf.write_bytes(b"%PDF-1.4")
        refused = client.predict([handle_file(str(pdf))], False, api_name="/add_articles")
        assert "追加しませんでした" in refused and "scan.pdf" in refused, refused
    assert not (copied.seeds_dir / "scan.pdf").exists()
