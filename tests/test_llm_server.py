"""The OpenAI-compatible server backend, against a tiny fake server speaking the same HTTP and SSE."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rag import answerability
from rag.cli import _settings, build_parser
from rag.config import Settings
from rag.errors import LLMServerError, PromptTooLongError
from rag.factories import load_generator, load_pipeline
from rag.ingest import build_index
from rag.llm_server import TEMPLATE_TOKENS, OpenAIServerGenerator
from tests.conftest import RecordingGenerator, free_port


class FakeOpenAIServer:
    """An OpenAI-compatible server in a thread; it answers what `reply(messages)` says, in pieces."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # bodies of POST /v1/chat/completions
        self.headers: list[dict[str, str]] = []
        self.count_requests = 0
        self.reply = _first_sentence_of_passage_1  # the same rule as RecordingGenerator
        self.logprobs: float | None = None  # each token's log-probability, or None: sends none
        self.reject_logprobs = False  # answer 400 to a request that asks for them
        self.error: tuple[int, dict[str, Any]] | None = None  # (status, body) for every chat request
        self.error_in_stream: str | None = None  # an error event after the first piece
        self.delay = 0.0  # seconds before answering a chat request
        self.tokenize = False  # offer llama-cpp-python's /extras/tokenize/count (be that server)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
                    pass

            def _json(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
                else:
                    self._json(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/extras/tokenize/count" and fake.tokenize:
                    fake.count_requests += 1
                    self._json(200, {"count": len(body["input"]) // 2})
                elif self.path == "/v1/chat/completions":
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    time.sleep(fake.delay)
                    if fake.error:
                        self._json(*fake.error)
                    elif fake.reject_logprobs and body.get("logprobs"):
                        self._json(400, {"error": {"message": "logprobs is not supported by this model"}})
                    else:
                        self._stream(fake.reply(body["messages"]))
                else:
                    fake.count_requests += self.path.startswith("/extras")
                    self._json(404, {"detail": "Not Found"})

            def _stream(self, text: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
                for n, piece in enumerate(pieces):
                    choice: dict[str, Any] = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                    if fake.logprobs is not None:
                        token = {"token": piece, "logprob": fake.logprobs, "bytes": None, "top_logprobs": []}
                        choice["logprobs"] = {"content": [token]}
                    self._event(_chunk(choice))
                    if n == 0 and fake.error_in_stream:
                        self._event({"error": {"message": fake.error_in_stream}})
                        return
                self._event(_chunk({"index": 0, "delta": {}, "finish_reason": "stop"}))
                self.wfile.write(b"data: [DONE]\n\n")

            def _event(self, data: object) -> None:
                self.wfile.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def _chunk(choice: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake-model", "choices": [choice]}


def _first_sentence_of_passage_1(messages: list[dict[str, str]]) -> str:
    recorder = RecordingGenerator()
    return "".join(recorder.stream_chat(messages, max_tokens=100))


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


MESSAGES = [
    {"role": "system", "content": "指示"},
    {"role": "user", "content": "資料:\n[1] 嵐山に約5万人が訪れた。\n\n質問: 何人?"},
]


def test_streams_the_reply_in_pieces_for_the_unchanged_messages(server) -> None:
    server.reply = lambda messages: "約5万人です[1]。"
    gen = OpenAIServerGenerator(server.url)
    pieces = list(gen.stream_chat(MESSAGES, max_tokens=50))
    assert len(pieces) > 1 and "".join(pieces) == "約5万人です[1]。"
    [sent] = server.requests
    assert sent["messages"] == MESSAGES
    assert sent["model"] == "fake-model"  # none given: the server's first model
    assert (sent["stream"], sent["temperature"], sent["seed"], sent["max_tokens"]) == (True, 0.0, 0, 50)
    assert sent["logprobs"] is True and sent["repeat_penalty"] == 1.0  # no repetition penalty, as in-process


def test_the_pipeline_answers_the_same_through_a_server(settings, embedder, server) -> None:
    build_index(settings=settings, embedder=embedder)
    local = RecordingGenerator()
    in_process = load_pipeline(settings=settings, embedder=embedder, generator=local)
    over_http = load_pipeline(settings=settings, embedder=embedder, generator=OpenAIServerGenerator(server.url))
    for question in ("嵐山には1日あたり何人の観光客が訪れた?", "ハヤブサ9の開発費は?", "紅葉の見頃はいつ?"):
        a, b = in_process.ask(question), over_http.ask(question)
        assert (b.text, b.refused, b.refusal_reason) == (a.text, a.refused, a.refusal_reason)
        assert [(c.n, c.source, c.quote) for c in b.citations] == [(c.n, c.source, c.quote) for c in a.citations]
    assert [r["messages"] for r in server.requests] == local.calls  # the same prompt went out
    assert "約5万人" in in_process.ask("嵐山には1日あたり何人の観光客が訪れた?").text


def test_stream_through_a_server_yields_pieces_then_the_checked_answer(settings, embedder, server) -> None:
    build_index(settings=settings, embedder=embedder)
    pipe = load_pipeline(settings=settings, embedder=embedder, generator=OpenAIServerGenerator(server.url))
    stream = pipe.stream("ハヤブサ9の開発費は?")
    pieces = list(stream)
    assert len(pieces) > 1
    assert stream.answer is not None and stream.answer.citations[0].source == "blog.txt"


def test_token_logprobs_are_kept_when_the_server_sends_them(server) -> None:
    server.logprobs = -0.25
    gen = OpenAIServerGenerator(server.url)
    pieces = list(gen.stream_chat(MESSAGES, max_tokens=50))
    assert gen.last_logprobs == [-0.25] * len(pieces)  # one per token the server sent


def test_no_logprobs_from_the_server_leaves_them_empty(server) -> None:
    gen = OpenAIServerGenerator(server.url)
    gen.last_logprobs = [-1.0]  # from an earlier answer: must not leak into this one
    list(gen.stream_chat(MESSAGES, max_tokens=50))
    assert gen.last_logprobs == []


def test_a_server_that_rejects_logprobs_is_asked_again_without_them(server) -> None:
    server.reject_logprobs = True
    gen = OpenAIServerGenerator(server.url)
    assert "".join(gen.stream_chat(MESSAGES, max_tokens=50)) == _first_sentence_of_passage_1(MESSAGES)
    assert gen.last_logprobs == []
    list(gen.stream_chat(MESSAGES, max_tokens=50))
    assert [bool(r.get("logprobs")) for r in server.requests] == [True, False, False]  # asked once only


@pytest.fixture
def weak_logprobs_decide(monkeypatch):
    """An answerability model where log-probabilities decide; without them, cited coverage does."""
    monkeypatch.setattr(answerability, "THRESHOLD", 0.6)
    monkeypatch.setattr(answerability, "THRESHOLD_NO_LOGPROBS", 0.6)
    monkeypatch.setattr(answerability, "WEIGHTS", [0.0, 0.0, 10.0, 0.0])  # mean log-probability only
    monkeypatch.setattr(answerability, "BIAS", 0.0)
    monkeypatch.setattr(answerability, "WEIGHTS_NO_LOGPROBS", [6.0, 0.0, 0.0, 0.0])  # cited coverage only
    monkeypatch.setattr(answerability, "BIAS_NO_LOGPROBS", -3.0)


def test_answerability_falls_back_to_the_weights_without_logprobs(
    settings, embedder, server, weak_logprobs_decide
) -> None:
    build_index(settings=settings, embedder=embedder)
    pipe = load_pipeline(settings=settings, embedder=embedder, generator=OpenAIServerGenerator(server.url))
    question = "嵐山には1日あたり何人の観光客が訪れた?"

    server.logprobs = -2.0  # unsure tokens: the log-probability model refuses
    unsure = pipe.ask(question)
    assert unsure.refused and "answerability" in unsure.refusal_reason

    server.logprobs = None  # none sent: judged on coverage alone, not as if every token were certain (0)
    answer = pipe.ask(question)
    assert not answer.refused and "約5万人" in answer.text
    # With a missing logprob read as 0 the full model would give 0.5 < 0.6 and refuse: the fallback decided.
    ev = answerability.evidence(question, [answer.citations[0].text], [p.text for p in answer.passages], [])
    assert answerability.probability(ev) == 0.5 < answerability.THRESHOLD
    assert answerability.confidence(ev, has_logprobs=False) >= answerability.THRESHOLD_NO_LOGPROBS


def test_prompt_tokens_are_counted_by_the_server_when_it_can(server) -> None:
    server.tokenize = True
    gen = OpenAIServerGenerator(server.url)
    text = "\n".join(m["content"] for m in MESSAGES)
    assert gen.count_prompt_tokens(MESSAGES) == len(text) // 2 + TEMPLATE_TOKENS * 3


def test_prompt_tokens_are_estimated_high_without_a_tokenizer_endpoint(server) -> None:
    gen = OpenAIServerGenerator(server.url)
    count = gen.count_prompt_tokens(MESSAGES)
    assert count >= sum(len(m["content"]) for m in MESSAGES)  # a character is at least a token's worth
    assert gen.count_prompt_tokens(MESSAGES) == count
    assert server.count_requests == 1  # the missing endpoint is not asked again


def test_llama_cpp_pythons_server_is_not_asked_for_logprobs(server) -> None:
    # Its streaming with log-probabilities drops characters spanning two tokens (ジャーナル → ジャール).
    server.tokenize = True  # its /extras/tokenize/count endpoint tells it apart
    server.logprobs = -0.5
    gen = OpenAIServerGenerator(server.url)
    list(gen.stream_chat(MESSAGES, max_tokens=50))
    assert "logprobs" not in server.requests[0]


def test_the_settings_choose_the_server_backend(server) -> None:
    gen = load_generator(Settings(llm_url=server.url, llm_model="named-model", llm_api_key="secret"))
    assert isinstance(gen, OpenAIServerGenerator)
    list(gen.stream_chat(MESSAGES, max_tokens=10))
    assert server.requests[0]["model"] == "named-model"
    assert server.headers[0]["authorization"] == "Bearer secret"


def test_url_model_and_key_come_from_env_and_command_line() -> None:
    env = Settings.from_env({"RAG_LLM_URL": "http://gpu:8000/v1", "RAG_LLM_MODEL": "qwen", "RAG_LLM_API_KEY": "k"})
    assert (env.llm_url, env.llm_model, env.llm_api_key) == ("http://gpu:8000/v1", "qwen", "k")
    for command in (["ask", "質問"], ["serve"], ["eval", "qa.jsonl"]):
        args = build_parser().parse_args([*command, "--llm-url", "http://localhost:11434/v1", "--llm-model", "m"])
        assert (_settings(args).llm_url, _settings(args).llm_model) == ("http://localhost:11434/v1", "m")


def test_an_unreachable_server_is_a_clear_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMServerError, match="Cannot reach") as err:
        load_generator(Settings(llm_url=url))
    assert url in str(err.value) and "RAG_LLM_URL" in str(err.value)


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(LLMServerError, match="not an http"):
        OpenAIServerGenerator("localhost:8000")


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (500, {"detail": "model crashed"}, "HTTP 500: model crashed"),
        (401, {"detail": "Invalid API key"}, "RAG_LLM_API_KEY"),
        (404, {"error": {"message": "model 'x' not found"}}, "RAG_LLM_MODEL"),
    ],
)
def test_an_http_error_is_a_clear_error_naming_the_url(server, status, body, says) -> None:
    gen = OpenAIServerGenerator(server.url)
    server.error = (status, body)
    with pytest.raises(LLMServerError, match=says) as err:
        list(gen.stream_chat(MESSAGES, max_tokens=10))
    assert server.url in str(err.value)


def test_a_prompt_over_the_servers_context_is_prompt_too_long(server) -> None:
    gen = OpenAIServerGenerator(server.url)
    server.error = (400, {"error": {"message": "Requested tokens (5000) exceed context window of 4096"}})
    with pytest.raises(PromptTooLongError, match="RAG_N_CTX"):
        list(gen.stream_chat(MESSAGES, max_tokens=10))


def test_an_error_in_the_middle_of_the_stream_is_a_clear_error(server) -> None:
    gen = OpenAIServerGenerator(server.url)
    server.error_in_stream = "out of memory"
    with pytest.raises(LLMServerError, match="out of memory") as err:
        list(gen.stream_chat(MESSAGES, max_tokens=10))
    assert server.url in str(err.value)


def test_a_server_that_does_not_answer_in_time_is_a_clear_error(server) -> None:
    gen = OpenAIServerGenerator(server.url, timeout=0.2)
    server.delay = 1.0
    with pytest.raises(LLMServerError, match="did not answer") as err:
        list(gen.stream_chat(MESSAGES, max_tokens=10))
    assert server.url in str(err.value)


def test_the_api_key_is_not_shown_with_the_settings() -> None:
    assert "sekret" not in repr(Settings(llm_api_key="sekret"))
