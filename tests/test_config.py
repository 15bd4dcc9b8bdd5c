from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import RagError


def test_from_env_reads_rag_variables() -> None:
    s = Settings.from_env({"RAG_LLM_PATH": "/m/x.gguf", "RAG_INDEX_DIR": "/tmp/idx", "RAG_TOP_K": "7", "OTHER": "1"})
    assert s.llm_path == Path("/m/x.gguf") and s.index_dir == Path("/tmp/idx") and s.top_k == 7


def test_bad_number_in_env_is_a_clear_error() -> None:
    with pytest.raises(RagError, match="RAG_TOP_K"):
        Settings.from_env({"RAG_TOP_K": "many"})
