"""記事QA: question answering over Japanese news articles with a local LLM and cited sources.

    import rag
    rag.build_index(seeds_dir="seeds", index_dir="index")
    pipe = rag.load_pipeline(index_dir="index")
    answer = pipe.ask("質問")
    rag.add_documents(["記事.txt"], index_dir="index", seeds_dir="seeds")  # pipe answers from it next question
"""

from rag.config import Settings
from rag.errors import (
    BusyError,
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
from rag.pipeline import AnswerStream, RagPipeline, add_documents, build_index, load_pipeline
from rag.types import AddReport, Answer, BuildReport, Chunk, Citation, Document, FileReport, Hit, SkippedFile

__all__ = [
    "AddReport",
    "Answer",
    "AnswerStream",
    "BuildReport",
    "BusyError",
    "Chunk",
    "Citation",
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
