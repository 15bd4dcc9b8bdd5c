"""Kill an index build with SIGKILL before each of its filesystem operations (used by tests/test_crash.py).

    python tests/crash_child.py SEEDS TEMPLATE_INDEX WORKDIR

Imports everything once, counts the operations of one build, then for every point n (1 .. count+1)
copies TEMPLATE_INDEX to WORKDIR/<n>, forks, and in the child runs the build (fake embedder) with
a hook that sends SIGKILL to itself just before operation n: a real process dying at that instant,
with no chance to clean up. Prints one JSON line per point: {"n", "dir", "killed", "op"}.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bm25s
import faiss
import filelock  # noqa: F401
import tqdm.auto  # noqa: F401

from rag import build as build_mod
from rag.lexical import tokenize
from tests.conftest import HashingEmbedder

WRITE_MODES = set("wax+")


def _hook(kill_at: int, log: list[str]) -> None:
    """Wrap the operations a build uses to change files; the kill_at-th one kills the process first."""

    def wrap(owner: object, name: str, *, writes_only: bool = False) -> None:
        real = getattr(owner, name)

        def hooked(*args, **kwargs):
            if writes_only:
                mode = kwargs.get("mode", args[1] if len(args) > 1 else "r")
                if not (isinstance(mode, str) and WRITE_MODES & set(mode)):
                    return real(*args, **kwargs)
            log.append(f"{name}({args[0] if args else ''})")
            if len(log) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        setattr(owner, name, hooked)

    for name in ("rename", "replace", "fsync", "mkdir", "unlink", "rmdir"):
        wrap(os, name)
    wrap(shutil, "rmtree")
    wrap(builtins, "open", writes_only=True)
    wrap(io, "open", writes_only=True)
    wrap(faiss, "write_index")
    wrap(bm25s.BM25, "save")


def _build(seeds: Path, index_dir: Path) -> None:
    build_mod.build(seeds, index_dir, embedder=HashingEmbedder(), chunk_size=120, chunk_overlap=20)


def main() -> None:
    seeds, template, workdir = (Path(a) for a in sys.argv[1:4])
    tokenize("準備")  # load the MeCab dictionary before counting, so every run does the same operations

    def run(n: int) -> tuple[Path, bool, list[str]]:
        target = workdir / str(n)
        shutil.copytree(template, target)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            log: list[str] = []
            _hook(n, log)
            try:
                _build(seeds, target)
                status = 0
            except BaseException as exc:  # report, then leave without running the parent's cleanup
                print(f"build failed: {exc!r}", file=sys.stderr)
                status = 1
            os.write(write, json.dumps(log).encode())
            os._exit(status)
        os.close(write)
        _, wait_status = os.waitpid(pid, 0)
        with os.fdopen(read) as fh:
            log = json.loads(fh.read() or "[]")
        if os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) != 0:
            raise SystemExit(f"build {n} failed")
        killed = os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGKILL
        return target, killed, log

    _, killed, ops = run(0)  # no kill: count the operations
    assert not killed
    for n in range(1, len(ops) + 2):
        target, killed, _ = run(n)
        op = ops[n - 1] if n <= len(ops) else "after the last operation"
        print(json.dumps({"n": n, "dir": str(target), "killed": killed, "op": op}, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
