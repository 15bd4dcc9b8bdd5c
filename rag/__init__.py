"""記事QA: question answering over Japanese news articles with a local LLM and cited sources.

    import rag
    rag.build_index(seeds_dir="seeds", index_dir="index")
    pipe = rag.load_pipeline(index_dir="index")
    answer = pipe.ask("質問")
"""

from rag.config import Settings
from rag.errors import IndexCorruptError, IndexMismatchError, IndexNotBuiltError, ModelError, RagError, SeedsError
from rag.pipeline import AnswerStream, RagPipeline, build_index, load_pipeline
from rag.types import Answer, BuildReport, Chunk, Citation, Document, Hit, SkippedFile

__all__ = [
    "Answer",
    "AnswerStream",
    "BuildReport",
    "Chunk",
    "Citation",
    "Document",
    "Hit",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotBuiltError",
    "ModelError",
    "RagError",
    "RagPipeline",
    "SeedsError",
    "Settings",
    "SkippedFile",
    "build_index",
    "load_pipeline",
]
