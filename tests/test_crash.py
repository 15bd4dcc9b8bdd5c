"""A build killed with SIGKILL at any point leaves the old or the new complete index, and the next build cleans up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from rag.ingest import build_index
from rag.manifest import MANIFEST
from rag.retrieval import Retriever
from rag.vector_index import VectorIndex
from rag.versions import CURRENT, version_dir
from tests.conftest import REPO, HashingEmbedder
from tests.test_index import NEW_ARTICLE


def _texts(index_dir: Path) -> list[str]:
    return [c.text for c in VectorIndex.load(index_dir).chunks]


def _flatten(index_dir: Path) -> None:
    """Turn a versioned index into the flat layout of format 2 (manifest.json directly in index/)."""
    folder = version_dir(index_dir)
    for entry in folder.iterdir():
        shutil.move(str(entry), index_dir / entry.name)
    raw = json.loads((index_dir / MANIFEST).read_text())
    raw.pop("reader"), raw.pop("files")
    raw["format_version"] = 2
    (index_dir / MANIFEST).write_text(json.dumps(raw))
    folder.rmdir()
    (index_dir / CURRENT).unlink()


@pytest.mark.parametrize("layout", ["versioned", "flat"])
def test_build_killed_at_every_filesystem_operation(settings, corpus: Path, tmp_path: Path, layout: str) -> None:
    template = tmp_path / "template"
    build_index(settings=settings, index_dir=template, embedder=HashingEmbedder())
    if layout == "flat":
        _flatten(template)
    else:  # a previous version beside the current one, so the build also removes an old version
        (corpus / "extra.txt").write_text(NEW_ARTICLE, encoding="utf-8")
        build_index(settings=settings, index_dir=template, embedder=HashingEmbedder())
        (corpus / "extra.txt").unlink()
        build_index(settings=settings, index_dir=template, embedder=HashingEmbedder())
        assert len([p for p in template.iterdir() if p.name.startswith("v-")]) == 2
    old = _texts(template)
    (corpus / "sapporo.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    kyoto = corpus / "kyoto.txt"
    kyoto.write_text(kyoto.read_text().replace("約5万人", "約6万人"), encoding="utf-8")
    expected = tmp_path / "expected"
    build_index(settings=settings, index_dir=expected, embedder=HashingEmbedder())
    new = _texts(expected)
    assert old != new

    workdir = tmp_path / "runs"
    workdir.mkdir()
    out = subprocess.run(
        [sys.executable, str(REPO / "tests" / "crash_child.py"), str(corpus), str(template), str(workdir)],
        capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    points = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(points) >= 20 and all(p["killed"] for p in points[:-1]) and not points[-1]["killed"]

    seen: Counter[str] = Counter()
    for p in points:
        index_dir = Path(p["dir"])
        texts = _texts(index_dir)  # loads: never a missing or half-written index
        assert texts in (old, new), p
        seen["old" if texts == old else "new"] += 1
        hits = Retriever(VectorIndex.load(index_dir), HashingEmbedder()).retrieve("嵐山を訪れた観光客は何人?", k=1)
        assert "嵐山" in hits[0].chunk.text, p
        # The next build finishes the job and leaves no trace of the killed one.
        build_index(settings=settings, index_dir=index_dir, embedder=HashingEmbedder())
        assert _texts(index_dir) == new, p
        left = sorted(e.name for e in index_dir.iterdir())
        assert not [n for n in left if n.startswith(".tmp-")], (p, left)
        assert len([n for n in left if n.startswith("v-")]) <= 2, (p, left)
        assert MANIFEST not in left, (p, left)  # a flat index is migrated
    assert seen["old"] and seen["new"], seen
    print(f"{layout}: {len(points)} kill points, {seen['old']} left the old index, {seen['new']} the new one")
