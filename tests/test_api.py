"""The OpenAI-compatible HTTP API (rag/api.py) on the fake models: shapes, streaming, errors, auth, busy."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from rag.api import MAX_BODY_BYTES, MODEL_ID, build_api
from rag.factories import load_pipeline
from rag.ingest import build_index
from rag.question import MAX_QUESTION_CHARS
from tests.conftest import RecordingGenerator

Q = "嵐山には1日あたり何人の観光客が訪れた?"


@pytest.fixture
def pipe(settings, embedder):
    build_index(settings=settings, embedder=embedder)
    return load_pipeline(settings=settings, embedder=embedder, generator=RecordingGenerator())


@pytest.fixture
def client(pipe):
    with TestClient(build_api(pipe)) as c:
        yield c


def ask(client: TestClient, question: str = Q, **body):
    return client.post("/v1/chat/completions", json={"model": MODEL_ID, "messages": [{"role": "user", "content": question}], **body})


def events(response) -> list[dict]:
    """The JSON events of an SSE response, ending with the [DONE] marker checked and dropped."""
    data = [line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["message"] and error["code"] == code
    return error


def test_completion_has_the_answer_with_markers_and_its_sources(client, pipe) -> None:
    r = ask(client)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL_ID and body["id"].startswith("chatcmpl-")
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert "約5万人" in choice["message"]["content"] and "[1]" in choice["message"]["content"]
    [source] = body["sources"]
    assert source["number"] == 1 and source["file"] == "kyoto.txt" and "紅葉" in source["title"]
    assert source["date"] and "約5万人" in source["quote"] and source["quote"] in source["text"]
    assert body["refused"] is False
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["total_tokens"] >= body["usage"]["prompt_tokens"]
    assert choice["message"]["content"] == pipe.ask(Q).text  # the same answer as the Python API


def test_streamed_answer_is_the_same_text_and_its_last_chunk_carries_the_sources(client) -> None:
    whole = ask(client).json()
    r = ask(client, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = events(r)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    last = next(c for c in reversed(chunks) if c["choices"])
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["sources"] == whole["sources"] and last["sources"][0]["quote"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] > 0


def test_earlier_turns_are_the_history_of_a_follow_up(client, pipe) -> None:
    messages = [
        {"role": "system", "content": "You are a pirate."},  # 記事QA's own instruction is used
        {"role": "user", "content": "新型ロケット「ハヤブサ9」の打ち上げについて教えて"},
        {"role": "assistant", "content": [{"type": "text", "text": "9月30日に打ち上げられました。[1]"}]},
        {"role": "user", "content": "次回はいつ?"},
    ]
    r = client.post("/v1/chat/completions", json={"messages": messages})
    assert r.status_code == 200, r.text
    prompt = pipe.generator.calls[-1]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1]["content"] == messages[1]["content"] and "pirate" not in json.dumps(prompt)
    assert "来年3月" in prompt[-1]["content"]  # the passage found with the conversation, not with 「次回はいつ?」 alone


def test_models_and_health(client) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [MODEL_ID]
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["questions_in_queue"] == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[" * 100_000, "invalid_json"),
        (b'["a list"]', "invalid_body"),
        (b'{"messages": []}', "invalid_messages"),
        (b'{"messages": [{"role": "assistant", "content": "hi"}]}', "invalid_messages"),
        (b'{"messages": [{"role": "tool", "content": "x"}, {"role": "user", "content": "q"}]}', "invalid_role"),
        (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}', "unsupported_content"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "invalid_content"),
        (b'{"messages": [{"role": "user", "content": "q"}], "stream": "yes"}', "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "q"}], "n": 2}', "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "q"}], "max_tokens": 0}', "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "  \\u0000 \\n"}]}', "invalid_question"),
    ],
)
def test_bad_requests_get_400_in_openai_error_shape(client, body: bytes, code: str) -> None:
    r = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    error = assert_error(r, 400, code)
    assert error["type"] == "invalid_request_error"


def test_too_long_question_and_too_large_body_get_413(client) -> None:
    error = assert_error(ask(client, "あ" * (MAX_QUESTION_CHARS + 1)), 413, "question_too_long")
    assert str(MAX_QUESTION_CHARS) in error["message"]
    assert ask(client, "あ" * MAX_QUESTION_CHARS).status_code == 200  # the limit itself is allowed
    huge = json.dumps({"messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]})
    assert_error(client.post("/v1/chat/completions", content=huge), 413, "request_too_large")


def test_control_characters_are_ignored(client) -> None:
    plain = ask(client).json()["choices"][0]["message"]["content"]
    noisy = ask(client, "\x1b[31m" + Q + "\x00").json()["choices"][0]["message"]["content"]
    assert noisy == plain


def test_api_key_is_required_when_set(pipe) -> None:
    with TestClient(build_api(pipe, api_key="s3cret")) as client:
        assert_error(ask(client), 401, "invalid_api_key")
        assert_error(client.get("/v1/models"), 401, "invalid_api_key")
        wrong = {"Authorization": "Bearer nope"}
        assert_error(client.get("/v1/models", headers=wrong), 401, "invalid_api_key")
        right = {"Authorization": "Bearer s3cret"}
        assert client.get("/v1/models", headers=right).status_code == 200
        r = client.post("/v1/chat/completions", headers=right, json={"messages": [{"role": "user", "content": Q}]})
        assert r.status_code == 200 and r.json()["sources"]
        assert client.get("/healthz").status_code == 200  # health checks need no key and tell nothing secret


def test_busy_when_the_queue_is_full_then_served_again(settings, embedder) -> None:
    build_index(settings=settings, embedder=embedder)
    pipe = load_pipeline(settings=settings, embedder=embedder, generator=RecordingGenerator(), max_waiting=0)
    with TestClient(build_api(pipe)) as client:
        held = pipe.stream(Q)  # a question being answered (by the page, say) and no room to wait
        next(held)
        for stream in (False, True):  # a streamed request is refused before its events start
            r = ask(client, stream=stream)
            error = assert_error(r, 503, "busy")
            assert "busy" in error["message"] and "混み合って" in error["message"]
            assert r.headers["retry-after"]
        assert client.get("/healthz").json()["questions_in_queue"] == 1
        held.close()
        assert ask(client).status_code == 200


def test_page_and_api_are_served_by_one_app(pipe) -> None:
    from rag.webapp import build_server

    with TestClient(build_server(pipe)) as client:
        assert ask(client).json()["sources"]
        assert client.get("/v1/models").status_code == 200
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        config = client.get("/config").json()
        assert any(d.get("api_name") == "chat" for d in config["dependencies"])
