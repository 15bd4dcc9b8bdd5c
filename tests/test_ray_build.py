"""`rag build --ray`: the same index as the one-process build, on a local Ray instance, through faults.

A local instance (`ray.init(num_cpus=2)`, no network) runs the pipeline with the real embedder:
vectors and passage order equal to the one-process build's; a worker killed in the middle is
retried; a driver killed leaves the previous index usable and the next build cleans up; a file
that fails to read is reported by name; a full disk leaves the previous index and says so.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import rag
from rag.config import Settings
from rag.vector_index import VectorIndex
from tests.conftest import REPO, run_env

pytestmark = pytest.mark.integration

ray = pytest.importorskip("ray", reason="pip install -e '.[ray]' (make test installs it)")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _seeds(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(REPO / "seeds" / name, folder / name)
    return folder


SEEDS = sorted(p.name for p in (REPO / "seeds").glob("*.txt"))


def _settings(tmp: Path, seeds: Path, name: str, **extra: object) -> Settings:
    return Settings.from_env().with_overrides(
        models_dir=REPO / "models", seeds_dir=seeds, index_dir=tmp / name, **extra
    )


def _vectors(index_dir: Path) -> tuple[list[str], np.ndarray]:
    index = VectorIndex.load(index_dir)
    return [c.chunk_id for c in index.chunks], index.vectors(list(range(len(index.chunks))))


def _same_index(a: Path, b: Path) -> None:
    ids_a, va = _vectors(a)
    ids_b, vb = _vectors(b)
    assert ids_a == ids_b  # same passages, same order
    assert float((va * vb).sum(axis=1).min()) >= 0.9999


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple[Path, Path]:
    """The reference: the one-process build of the seeds (plus a broken PDF)."""
    tmp = tmp_path_factory.mktemp("ray-ref")
    seeds = _seeds(tmp / "seeds", SEEDS)
    (seeds / "壊れた.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")
    settings = _settings(tmp, seeds, "index")
    report = rag.build_index(settings=settings)
    assert report.docs >= 30
    return seeds, settings.index_dir


def test_ray_builds_the_same_index_and_reports_a_broken_file(local_ray, one_process, tmp_path: Path) -> None:
    seeds, reference = one_process
    settings = _settings(tmp_path, seeds, "ray-index", ray_address="auto", ray_workers=2)
    report = rag.build_index(settings=settings)
    _same_index(reference, settings.index_dir)
    skipped = {s.path: s.reason for s in report.skipped}
    assert "壊れた.pdf" in skipped and "PDF" in skipped["壊れた.pdf"]
    assert report.embedded == report.chunks

    # Incremental on Ray: only the new file is read and embedded; the others keep their vectors.
    extra = seeds.parent / "seeds2"
    shutil.copytree(seeds, extra)
    (extra / "追加.txt").write_text(
        "小樽で雪あかりの路\n\n小樽市の冬の催しに10日間で約12万人が訪れたと実行委員会が発表した。\n", encoding="utf-8"
    )
    again = rag.build_index(settings=settings.with_overrides(seeds_dir=extra))
    assert again.embedded == again.chunks - report.chunks and 0 < again.embedded < 5
    assert {f.path: f.status for f in again.files}["追加.txt"] == "added"


def _map_workers() -> list:
    import psutil

    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::") and "MapWorker" in cmd:
            out.append(proc)
    return out


def test_a_worker_killed_in_the_middle_is_retried_and_the_index_is_complete(
    local_ray, one_process, tmp_path: Path
) -> None:
    seeds, reference = one_process
    settings = _settings(tmp_path, seeds, "ray-index", ray_address="auto", ray_workers=2)
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["report"] = rag.build_index(settings=settings)
        except BaseException as exc:  # reported to the test below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        workers = [p for p in _map_workers() if time.time() - p.create_time() > 6]  # the embedder is loaded
        if workers:
            killed = workers[0].pid
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    thread.join(timeout=600)
    assert killed is not None, "no embedding worker was seen running"
    assert "error" not in result, result.get("error")
    _same_index(reference, settings.index_dir)


def test_a_killed_driver_leaves_the_previous_index_and_the_next_build_cleans_up(one_process, tmp_path: Path) -> None:
    seeds, _ = one_process
    small = _seeds(tmp_path / "seeds", SEEDS[:1])
    settings = _settings(tmp_path, small, "index")
    before = rag.build_index(settings=settings)
    for name in SEEDS[1:]:
        shutil.copy(seeds / name, small / name)
    cmd = [
        sys.executable,
        "-m",
        "rag.cli",
        "build",
        "--ray",
        "--seeds",
        str(small),
        "--index",
        str(settings.index_dir),
        "--quiet",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=run_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.info.get("cmdline") and time.time() - p.create_time() > 4 for p in _map_workers()):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the build ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started
        proc.wait()
    index = VectorIndex.load(settings.index_dir)  # the previous version still opens whole
    assert len(index.chunks) == before.chunks
    after = rag.build_index(settings=settings)
    assert after.chunks > before.chunks
    assert not [p.name for p in settings.index_dir.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("on_ray", [False, True])
def test_a_full_disk_keeps_the_previous_index_and_says_so(
    local_ray, one_process, tmp_path: Path, monkeypatch, on_ray: bool
) -> None:
    from rag.build import VectorSpool

    seeds, _ = one_process
    small = _seeds(tmp_path / "seeds", SEEDS[:1])
    settings = _settings(tmp_path, small, "index", ray_address="auto" if on_ray else "")
    before = rag.build_index(settings=settings.with_overrides(ray_address=""))
    shutil.copy(seeds / SEEDS[1], small / SEEDS[1])
    real_append = VectorSpool.append

    def append(self, rows) -> None:
        real_append(self, rows[:1])  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(VectorSpool, "append", append)
    with pytest.raises(rag.DiskFullError, match=r"disk .* is full"):
        rag.build_index(settings=settings)
    assert len(VectorIndex.load(settings.index_dir).chunks) == before.chunks
    monkeypatch.setattr(VectorSpool, "append", real_append)
    after = rag.build_index(settings=settings)
    assert after.chunks > before.chunks
    assert not [p.name for p in settings.index_dir.iterdir() if p.name.startswith(".tmp-")]


def test_the_default_build_never_imports_ray(tmp_path: Path) -> None:
    seeds = _seeds(tmp_path / "seeds", SEEDS[:1])
    code = (
        "import sys, rag\n"
        f"rag.build_index(seeds_dir={str(seeds)!r}, index_dir={str(tmp_path / 'index')!r})\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=run_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
