"""記事QA: question answering over Japanese news articles with a local LLM and cited sources.

    import rag
    rag.build_index(seeds_dir="seeds", index_dir="index")
    pipe = rag.load_pipeline(index_dir="index")
    answer = pipe.ask("質問")
    rag.add_documents(["記事.txt"], index_dir="index", seeds_dir="seeds")  # pipe answers from it next question
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rag.config import Settings
from rag.errors import (
    BusyError,
    DiskFullError,
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotBuiltError,
    ModelError,
    QuestionError,
    RagError,
    SeedsError,
    UploadError,
)
from rag.types import AddReport, Answer, BuildReport, Chunk, Citation, Document, FileReport, Hit, SkippedFile

if TYPE_CHECKING:
    from rag.factories import load_pipeline
    from rag.gate import AnswerStream
    from rag.ingest import add_documents, build_index
    from rag.pipeline import RagPipeline

# The entry points are imported on first use: `import rag` (and every `python -m rag...` or
# `from rag.x import y`, which runs this file first) stays as light as config, errors and types.
_LAZY = {
    "load_pipeline": "rag.factories",
    "AnswerStream": "rag.gate",
    "add_documents": "rag.ingest",
    "build_index": "rag.ingest",
    "RagPipeline": "rag.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rag' has no attribute {name!r}")


__all__ = [
    "AddReport",
    "Answer",
    "AnswerStream",
    "BuildReport",
    "BusyError",
    "Chunk",
    "Citation",
    "DiskFullError",
    "Document",
    "FileReport",
    "Hit",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotBuiltError",
    "ModelError",
    "QuestionError",
    "RagError",
    "RagPipeline",
    "SeedsError",
    "Settings",
    "SkippedFile",
    "UploadError",
    "add_documents",
    "build_index",
    "load_pipeline",
]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
