"""Gradio chat page: turns Answers into chat messages and a sources panel. No retrieval logic here."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

from rag.config import Settings
from rag.errors import BusyError, RagError, UploadError
from rag.factories import load_pipeline
from rag.ingest import add_documents
from rag.pipeline import RagPipeline
from rag.types import Answer, Citation

TITLE = "記事QA"
DESCRIPTION = (
    "保存したニュース記事だけをもとに、ローカルの言語モデルが日本語で答えます。"
    "回答中の [1] などの番号は、回答の下の「出典」に並ぶ記事の段落を指します。開いて原文を確かめてください。"
)
EXAMPLES = [
    "ロシア軍がクルスク州で奪還を目指している要衝の町はどこですか?",
    "在日米軍の強化計画を中止すると、どれくらいの予算を削減できますか?",
    "ゼレンスキー氏の再選を願う国民の割合は何%ですか?",
]
SOURCES_TITLE = "出典"
BUSY_MESSAGE = "ただいま混み合っています（回答待ちの質問が上限に達しました）。1分ほどしてからもう一度質問してください。"
WAITING_MESSAGE = "ほかの質問に答えています。順番が来たら答えます（前に {ahead} 件）…"


def page_label(page: int | None) -> str:
    """「p. 3」 for a passage of a PDF, "" otherwise."""
    return f"p. {page}" if page is not None else ""


def format_sources(citations: list[Citation]) -> str:
    """Markdown for the numbered sources: title, date, seed file, and the passage itself."""
    blocks = []
    for c in citations:
        meta = " · ".join(x for x in (c.date, f"`{c.source}`", page_label(c.page)) if x)
        passage, title = html.escape(c.text), html.escape(c.title)
        quote = html.escape(c.quote)
        if quote and quote in passage:
            # The sentence that supports the answer is highlighted inside its passage.
            passage = passage.replace(quote, f"<mark>{quote}</mark>", 1)
        elif quote and quote in title:
            # Some answers are stated only in the headline (a share, a sum): then the title is what to check.
            title = title.replace(quote, f"<mark>{quote}</mark>", 1)
        passage = passage.replace("\n", "\n> ")
        blocks.append(f"**[{c.n}] {title}**  \n{meta}\n\n> {passage}")
    return "\n\n---\n\n".join(blocks)


QUOTE_LABEL = "出典の文"
_QUOTE_BLOCK = f"\n\n> {QUOTE_LABEL}"


def quote_block(answer: Answer) -> str:
    """Under the answer, the sentence (or title) of each cited passage that states it, word for word."""
    lines = [f"[{c.n}] <mark>{html.escape(c.quote)}</mark>" for c in answer.citations if c.quote]
    if not lines:
        return ""
    return _QUOTE_BLOCK + "  \n> " + "  \n> ".join(lines)


def answer_part(content: str) -> str:
    """The answer of an answer message, without the quoted sentences under it."""
    return content.split(_QUOTE_BLOCK, 1)[0]


def answer_messages(answer: Answer) -> list[dict[str, Any]]:
    """The assistant's answer, then a collapsible sources message (cited passages, else all given)."""
    messages: list[dict[str, Any]] = [{"role": "assistant", "content": answer.text + quote_block(answer)}]
    shown = answer.citations or answer.passages
    if shown:
        if answer.citations:
            label = f"{SOURCES_TITLE} ({len(shown)}件)"
        elif answer.refused:
            label = f"検索で近かった資料 ({len(shown)}件)"
        else:
            label = f"参照した資料 ({len(shown)}件・回答を直接支える箇所は見つかりませんでした)"
        messages.append(
            {"role": "assistant", "content": format_sources(shown), "metadata": {"title": label, "status": "done"}}
        )
    return messages


def history_pairs(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(question, answer) pairs from Gradio's message history, leaving out the sources messages."""
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    for msg in history:
        content = msg.get("content")
        if isinstance(content, list):  # Gradio may hand back [{"type": "text", "text": ...}]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            continue
        if msg.get("role") == "user":
            question = content
        elif msg.get("role") == "assistant" and question is not None and not (msg.get("metadata") or {}).get("title"):
            pairs.append((question, answer_part(content)))
            question = None
    return pairs


UPLOAD_LABEL = "記事を追加する"
_UPLOAD_REFUSALS = {
    "type": "{name}: この種類のファイルは追加できません（{allowed} のみ）。",
    "size": "{name}: ファイルが大きすぎます（上限 .txt .md .html は 10 MB、.pdf .docx は 50 MB）。記事ごとに分けて追加してください。",
    "doc": "{name}: {detail}。",
    "exists": "{name}: 同じ名前で内容の違う記事がすでにあります。名前を変えるか「同じ名前の記事を置き換える」を選んでください。",
    "empty": "{name}: ファイルが空です。",
    "missing": "{name}: ファイルが見つかりません。もう一度選んでください。",
    "unreadable": "{name}: 記事の本文を読み取れませんでした（{detail}）。",
    "duplicate": "{name}: 同じ名前になるファイルが2つ選ばれています。名前を変えてください。",
}


def upload_articles(pipe: RagPipeline, paths: list[str], *, replace: bool = False) -> str:
    """Add uploaded files to the seeds folder and the index; a Japanese message says what happened."""
    from rag.upload import allowed_suffixes

    if not paths:
        return "追加するファイルを選んでください。"
    settings = pipe.settings
    try:
        result = add_documents(
            paths,
            settings=settings,
            embedder=pipe.retriever.embedder,
            replace=replace,
        )
    except UploadError as exc:
        template = _UPLOAD_REFUSALS.get(exc.code, "{name}: 追加できませんでした（{detail}）。")
        reason = template.format(name=exc.filename, allowed=" ".join(allowed_suffixes()), detail=exc.detail or exc)
        return f"**追加しませんでした。** {reason} ほかのファイルも追加していません。"
    except RagError as exc:
        return f"**追加しませんでした。** 索引を更新できませんでした: {exc} 以前の索引のまま答えます。"
    pipe.reload_if_changed()  # the next question is answered from the new index
    build = result.build
    lines = ["**記事を追加しました。** 次の質問から新しい記事も検索します。"]
    by_name = {f.path: f for f in build.files}
    for name in result.saved:
        f = by_name.get(name)
        if name in result.unchanged:
            lines.append(f"- `{name}`: 同じ内容の記事がすでにありました（変更なし）")
        elif f is not None:
            lines.append(f"- `{name}`: {f.articles} 件の記事、{f.kept_chars} 文字")
    lines.append(f"索引: {build.docs} 記事、{build.chunks} 段落（新たに埋め込んだ段落 {build.embedded}）")
    return "\n".join(lines)


def build_app(pipe: RagPipeline) -> Any:
    """The Gradio Blocks app around a loaded pipeline."""
    import gradio as gr

    def respond(message: str, history: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        if not message or not message.strip():
            yield [{"role": "assistant", "content": "質問を入力してください。"}]
            return
        try:
            stream = pipe.stream(message, history=history_pairs(history))
        except BusyError:
            yield [{"role": "assistant", "content": BUSY_MESSAGE}]
            return
        except RagError as exc:  # too long, not text: say so in the chat instead of a stack trace
            yield [{"role": "assistant", "content": str(exc)}]
            return
        # `with`: when the reader presses 停止 or leaves, the model is freed for the next question at once.
        with stream:
            if stream.ahead:
                yield [{"role": "assistant", "content": WAITING_MESSAGE.format(ahead=stream.ahead)}]
            else:
                yield [{"role": "assistant", "content": "資料を検索しています…"}]
            text = ""
            try:
                for piece in stream:
                    text += piece
                    yield [{"role": "assistant", "content": text}]
            except RagError as exc:  # the prompt did not fit, the index could not be read: said, not a stack trace
                yield [{"role": "assistant", "content": str(exc)}]
                return
        assert stream.answer is not None
        yield answer_messages(stream.answer)

    chatbot = gr.Chatbot(label="記事QA", height=560, placeholder="ニュース記事について質問してください。")
    textbox = gr.Textbox(placeholder="例: ロシア軍が奪還を目指している町はどこ?", submit_btn="送信", stop_btn="停止")
    app = gr.ChatInterface(
        respond,
        chatbot=chatbot,
        textbox=textbox,
        examples=EXAMPLES,
        examples_label="質問の例",
        title=TITLE,
        description=DESCRIPTION,
        # No limit here: the pipeline's gate answers one question at a time for the page and the HTTP
        # API together, and says "busy" beyond RAG_MAX_WAITING instead of a queue that only grows.
        concurrency_limit=None,
        api_name="chat",
    )
    from rag.upload import allowed_suffixes

    def upload(files: list[Any] | None, replace: bool) -> str:
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files or []]
        return upload_articles(pipe, paths, replace=replace)

    with app, gr.Accordion(UPLOAD_LABEL, open=False):  # added below the chat, inside the same page
        # No file_types filter: Gradio would refuse other types with its own English message; the
        # handler refuses them with a Japanese one that says which types are accepted.
        files = gr.File(
            label=f"記事ファイル（{' '.join(allowed_suffixes())}、1ファイル 10 MB まで、PDF と Word は 50 MB まで）",
            file_count="multiple",
        )
        replace = gr.Checkbox(label="同じ名前の記事を置き換える", value=False)
        button = gr.Button(UPLOAD_LABEL, variant="secondary")
        result = gr.Markdown()
        button.click(upload, inputs=[files, replace], outputs=result, api_name="add_articles", concurrency_limit=1)
    return app


def build_server(pipe: RagPipeline, *, api_key: str = "") -> Any:
    """One FastAPI app: the OpenAI-compatible API under /v1 and /healthz, the chat page at /."""
    import gradio as gr

    from rag.api import build_api

    app = build_api(pipe, api_key=api_key)
    page = build_app(pipe).queue(default_concurrency_limit=None)
    return gr.mount_gradio_app(app, page, path="/", footer_links=["api"])


def serve(*, settings: Settings | None = None, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Load the models once and serve the chat page and the API (on 127.0.0.1 unless told otherwise); uploads go to settings.seeds_dir."""
    import uvicorn

    settings = settings or Settings.from_env()
    pipe = load_pipeline(settings=settings)
    app = build_server(pipe, api_key=settings.api_key)
    print(f"記事QA: http://{host}:{port}  (OpenAI-compatible API: http://{host}:{port}/v1)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        print("warning: listening beyond this machine without RAG_API_KEY: anyone who can reach it may ask.", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
