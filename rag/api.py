"""OpenAI-compatible HTTP API for `rag serve`: FastAPI routes only, no retrieval logic.

POST /v1/chat/completions (JSON, or server-sent events with "stream": true), GET /v1/models,
GET /healthz. The answer's sources travel in an extra top-level field "sources" (and in the last
streamed chunk). Errors use OpenAI's shape {"error": {"message", "type", "code"}}.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

# FastAPI is imported here, at the top: it reads the routes' annotations (Request) from this module's
# globals. `import rag` does not import this module; `rag serve` does.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from rag.errors import BusyError, PromptTooLongError, QuestionError, QuestionTooLongError, RagError
from rag.gate import AnswerStream
from rag.pipeline import RagPipeline
from rag.types import Answer, Citation

MODEL_ID = "kiji-qa"
MAX_BODY_BYTES = 1_000_000  # a chat request with a long conversation is a few kB; a megabyte is not a question
KEEP_ALIVE_SECONDS = 10.0  # an SSE comment while a streamed question waits, so proxies do not cut the line
RETRY_AFTER_SECONDS = 10
_ROLES_IGNORED = {"system", "developer"}  # the instruction is 記事QA's own; a client's system prompt is not used
_PIECE = re.compile(r"[^。！？\n]*(?:[。！？\n]+|$)")


class ApiError(Exception):
    """A request the API refuses, with its HTTP status and OpenAI error type and code."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code


@dataclass(frozen=True)
class ChatRequest:
    """What 記事QA reads of a chat-completions request."""

    question: str
    history: list[tuple[str, str]]
    stream: bool = False
    max_tokens: int | None = None
    include_usage: bool = False


def _text(content: object, where: str) -> str:
    """A message's text: a string, or the text parts of a content list (other parts are refused)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise ApiError(400, f"{where}: only text content is supported (parts of type 'text').", code="unsupported_content")
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(400, f"{where}: content must be a string or a list of text parts.", code="invalid_content")


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"'{name}' must be a positive integer.", code="invalid_value")
    return value


def parse_request(body: object) -> ChatRequest:
    """Check a decoded JSON body: the last message is the question, earlier user/assistant pairs the history."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_body")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of chat messages.", code="invalid_messages")
    turns: list[tuple[str, str]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ApiError(400, f"messages[{i}] must be an object with 'role' and 'content'.", code="invalid_messages")
        role = msg.get("role")
        if role in _ROLES_IGNORED:
            continue
        if role not in ("user", "assistant"):
            raise ApiError(400, f"messages[{i}]: role {role!r} is not supported (user, assistant, system).", code="invalid_role")
        turns.append((role, _text(msg.get("content"), f"messages[{i}]")))
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "The last message must be the user's question.", code="invalid_messages")
    history: list[tuple[str, str]] = []
    asked: str | None = None
    for role, text in turns[:-1]:
        if role == "user":
            asked = text  # two user messages in a row: the later one is the turn that was answered
        elif asked is not None:
            history.append((asked, text))
            asked = None
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false.", code="invalid_value")
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise ApiError(400, "Only one answer per request is written ('n' must be 1).", code="invalid_value")
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return ChatRequest(
        question=turns[-1][1], history=history, stream=stream, max_tokens=max_tokens, include_usage=include_usage
    )


def source_json(c: Citation) -> dict[str, Any]:
    """One cited source as the API returns it."""
    return {
        "number": c.n,
        "file": c.source,
        "title": c.title,
        "date": c.date,
        "url": c.url,
        "page": c.page,
        "quote": c.quote,
        "text": c.text,
    }


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def completion_json(answer: Answer, *, completion_id: str, created: int) -> dict[str, Any]:
    """A chat.completion object for a finished Answer, with "sources" and "refused"."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": MODEL_ID,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": _usage(answer),
        "sources": [source_json(c) for c in answer.citations],
        "refused": answer.refused,
    }


def error_json(message: str, type_: str, code: str) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "code": code or None, "param": None}}


def error_of(exc: Exception) -> ApiError:
    """The HTTP status and OpenAI error for an exception raised while answering."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BusyError):
        return ApiError(503, str(exc), type_="server_error", code="busy")
    if isinstance(exc, QuestionTooLongError):
        return ApiError(413, str(exc), code="question_too_long")
    if isinstance(exc, PromptTooLongError):
        return ApiError(413, str(exc), code="context_length_exceeded")
    if isinstance(exc, QuestionError):
        return ApiError(400, str(exc), code="invalid_question")
    if isinstance(exc, RagError):
        return ApiError(500, str(exc), type_="server_error", code="rag_error")
    return ApiError(500, "Internal error while answering; see the server log.", type_="server_error", code="internal_error")


def _read_to_end(stream: AnswerStream) -> Answer | None:
    """Read a stream in a worker thread (the model runs there); None if it was cancelled."""
    with stream:
        for _ in stream:
            pass
    return stream.answer


def build_api(pipe: RagPipeline, *, api_key: str = "") -> FastAPI:
    """The FastAPI app with the OpenAI-compatible routes around a loaded pipeline (mount the page on it)."""
    # Threads that wait their turn and run the model: one per place in the pipeline's queue, so the
    # pipeline's gate, not a thread pool, decides who waits and who is told the server is busy.
    workers = ThreadPoolExecutor(max_workers=pipe.gate.max_waiting + 1, thread_name_prefix="rag-api")
    open_streams: weakref.WeakSet[AnswerStream] = weakref.WeakSet()
    started = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # Stopping the server (Ctrl-C) must not wait for every queued question to be answered:
        # the worker threads are joined at exit, so their questions are cancelled first.
        for stream in list(open_streams):
            stream.cancel()
        workers.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="記事QA API", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    def refuse(err: ApiError) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if err.status == 503 else None
        if err.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(error_json(str(err), err.type, err.code), status_code=err.status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return refuse(exc)

    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        return refuse(error_of(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return refuse(error_of(exc))

    def check_key(request: Request) -> None:
        if not api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(
                401,
                "Missing or wrong API key: send 'Authorization: Bearer <RAG_API_KEY>'.",
                type_="authentication_error",
                code="invalid_api_key",
            )

    async def read_json(request: Request) -> object:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, f"The request is larger than {MAX_BODY_BYTES} bytes.", code="request_too_large")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > MAX_BODY_BYTES:
                raise ApiError(413, f"The request is larger than {MAX_BODY_BYTES} bytes.", code="request_too_large")
        try:
            return json.loads(bytes(body))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None

    async def answer_of(stream: AnswerStream, request: Request) -> Answer | None:
        """Wait for the answer in a worker thread; a client that hangs up gives its place back."""
        future = asyncio.get_running_loop().run_in_executor(workers, _read_to_end, stream)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=1.0)
                if done:
                    return future.result()
                if await request.is_disconnected():
                    stream.cancel()
                    return None
        except asyncio.CancelledError:
            stream.cancel()
            raise

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": MODEL_ID, "questions_in_queue": pipe.gate.waiting, "max_waiting": pipe.gate.max_waiting}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": started, "owned_by": "kiji-qa"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        check_key(request)
        req = parse_request(await read_json(request))
        # Checks the question and takes a place in the queue now: 400/413/503 before any answer starts.
        stream = pipe.stream(req.question, history=req.history, max_tokens=req.max_tokens)
        open_streams.add(stream)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not req.stream:
            answer = await answer_of(stream, request)
            if answer is None:  # the client hung up
                return JSONResponse(error_json("Cancelled.", "invalid_request_error", "cancelled"), status_code=499)
            return completion_json(answer, completion_id=completion_id, created=created)
        return StreamingResponse(
            _events(stream, req, completion_id, created, workers),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    app.state.workers = workers
    return app


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(
    stream: AnswerStream, req: ChatRequest, completion_id: str, created: int, workers: ThreadPoolExecutor
) -> AsyncIterator[str]:
    """Server-sent events: the role at once, keep-alive comments while waiting, the checked answer, its sources.

    The text is sent once the whole answer has passed the checks against its sources (the chat page
    shows the model's words as they come and replaces them at the end; an API client cannot take
    back what it was sent). So streamed and non-streamed answers are the same text.
    """

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [choice],
        }
        return _sse({**body, **extra})

    future = asyncio.get_running_loop().run_in_executor(workers, _read_to_end, stream)
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            done, _ = await asyncio.wait({future}, timeout=KEEP_ALIVE_SECONDS)
            if done:
                break
            yield ": waiting for the model\n\n"
        try:
            answer = future.result()
        except Exception as exc:  # the stream is open: the error goes as an event, as OpenAI's servers do
            err = error_of(exc)
            yield _sse(error_json(str(err), err.type, err.code))
            return
        if answer is None:
            return
        for piece in _PIECE.findall(answer.text):
            if piece:
                yield chunk({"content": piece})
        yield chunk({}, "stop", sources=[source_json(c) for c in answer.citations], refused=answer.refused)
        if req.include_usage:
            yield _sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": MODEL_ID,
                    "choices": [],
                    "usage": _usage(answer),
                }
            )
        yield "data: [DONE]\n\n"
    finally:  # the client hung up (or the answer was sent): nothing keeps the model busy for it
        stream.cancel()
