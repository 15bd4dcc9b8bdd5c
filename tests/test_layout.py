"""The house: no import loop inside rag/, and no tracked symbolic link (a link to one machine's path breaks everywhere else)."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "rag"


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def rag_imports(path: Path, base: Path, modules: set[str]) -> set[str]:
    """The rag modules a file imports, at the top or inside a function (a lazy import is still an import)."""
    found: set[str] = set()
    name = module_name(path, base)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .stores import y
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from rag import build` imports the module rag.build; `from rag.build import build` the module rag.build.
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return {m for m in found if m in modules}


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (the package root `rag` itself left out)."""
    files = {module_name(p, root.parent): p for p in root.rglob("*.py")}
    modules = set(files)
    # Every submodule runs rag/__init__.py first; that is how packages work, not a loop of ours.
    top = root.name
    return {name: rag_imports(path, root.parent, modules) - {top, name} for name, path in files.items() if name != top}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path of modules (first == last), or [] if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_no_import_loop_in_rag() -> None:
    graph = import_graph(PACKAGE)
    assert "rag.pipeline" in graph and "rag.verdict" in graph["rag.pipeline"]  # the parser sees real imports
    cycle = find_cycle(graph)
    assert not cycle, "import loop: " + " -> ".join(cycle)


def test_the_loop_finder_finds_a_loop(tmp_path: Path) -> None:
    pkg = tmp_path / "rag"
    (pkg / "stores").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from rag.index import VectorIndex\n")
    (pkg / "index.py").write_text("from rag.stores import VectorStore\n")
    (pkg / "stores" / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rag.index import Manifest\n"
    )
    (pkg / "text.py").write_text("import re\n")
    cycle = find_cycle(import_graph(pkg))
    assert cycle == ["rag.index", "rag.stores", "rag.index"]


def tracked_symlinks(repo: Path) -> list[str]:
    """Tracked paths that are symbolic links (git mode 120000); without git, every link in the tree."""
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-s", "-z"], capture_output=True, check=True
        ).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "index", "models"}
        links = []
        for folder, dirs, names in os.walk(repo):
            dirs[:] = [d for d in dirs if d not in skip or Path(folder) != repo]
            links += [str(Path(folder, n).relative_to(repo)) for n in names + dirs if Path(folder, n).is_symlink()]
        return links
    return [entry.split("\t", 1)[1] for entry in out.split("\0") if entry.startswith("120000 ")]


def test_no_tracked_file_is_a_symbolic_link() -> None:
    assert tracked_symlinks(REPO) == []


def test_models_readme_is_a_readable_file() -> None:
    readme = REPO / "models" / "README.md"
    assert readme.is_file() and not readme.is_symlink()
    text = readme.read_text(encoding="utf-8")
    assert "RAG_LLM_PATH" in text and "multilingual-e5-small" in text


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the git checkout")
def test_the_symlink_check_sees_a_tracked_link(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "README.md").symlink_to("/somewhere/on/one/machine/README.md")
    subprocess.run(["git", "-C", str(tmp_path), "add", "README.md"], check=True)
    assert tracked_symlinks(tmp_path) == ["README.md"]
