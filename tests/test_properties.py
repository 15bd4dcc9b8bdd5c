"""Random input at `ask` and at the HTTP API: every call gives an answer or a clear error, never a crash or a hang."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.api import build_api
from rag.config import Settings
from rag.errors import RagError
from rag.factories import load_pipeline
from rag.ingest import build_index
from rag.question import MAX_QUESTION_CHARS
from rag.types import Answer
from tests.conftest import DATA, HashingEmbedder, RecordingGenerator

# Any code point, lone surrogates and control characters included; Japanese often, so that some
# questions find passages; lengths around the limit.
_chars = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.sampled_from("嵐山観光客何人ハヤブサ開発費はの?。「」[1]\n\t\x00\x1b\u3000 "),
)
_text = st.one_of(
    st.text(_chars, max_size=40),
    st.text(_chars, min_size=MAX_QUESTION_CHARS - 5, max_size=MAX_QUESTION_CHARS + 5),
    st.sampled_from(["", "   ", "\x00\x00", "その町は?", "嵐山には1日あたり何人の観光客が訪れた?"]),
)
_history = st.lists(st.tuples(_text, st.one_of(_text, st.text(_chars, max_size=3000))), max_size=4)
_budget = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    import shutil

    root = tmp_path_factory.mktemp("props")
    shutil.copytree(DATA / "corpus", root / "seeds")
    cfg = Settings(index_dir=root / "index", seeds_dir=root / "seeds", chunk_size=120, chunk_overlap=20, n_ctx=1024, max_tokens=64)
    embedder = HashingEmbedder()
    build_index(settings=cfg, embedder=embedder)
    # n_ctx 1024 (in the fake's characters): long histories must be trimmed, never sent whole.
    return load_pipeline(settings=cfg, embedder=embedder, generator=RecordingGenerator())


@pytest.fixture(scope="module")
def client(pipe):
    with TestClient(build_api(pipe), raise_server_exceptions=False) as c:
        yield c


@_budget
@given(question=_text, history=_history)
def test_ask_answers_or_says_what_is_wrong(pipe, question: str, history: list[tuple[str, str]]) -> None:
    try:
        answer = pipe.ask(question, history=history)
    except RagError as exc:
        assert str(exc).strip()
    else:
        assert isinstance(answer, Answer) and answer.text
        prompt = pipe.generator.calls[-1]
        fits = pipe.generator.count_prompt_tokens(prompt) + pipe.settings.max_tokens <= pipe.settings.n_ctx
        assert fits or len(prompt) == 2  # earlier turns are dropped, oldest first, until it fits
    assert pipe.gate.waiting == 0  # nothing left holding the model


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool", "", None]),
        "content": st.one_of(_text, st.none(), st.integers(), st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _text}), max_size=2)),
    }
)
_request = st.fixed_dictionaries(
    {"messages": st.lists(_message, max_size=5)},
    optional={
        "stream": st.one_of(st.booleans(), _json),
        "max_tokens": st.one_of(st.integers(-2, 500), _json),
        "n": st.one_of(st.just(1), _json),
        "model": _json,
    },
)


def _check_response(response) -> None:
    assert response.status_code in (200, 400, 413), response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert error["message"] and error["type"] and error["code"]
    elif response.headers["content-type"].startswith("text/event-stream"):
        data = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
        assert data[-1] == "[DONE]" or "error" in json.loads(data[-1])
    else:
        body = response.json()
        assert body["choices"][0]["message"]["content"] and isinstance(body["sources"], list)


@_budget
@given(body=st.one_of(_request, _json.map(lambda v: {"messages": v}), _json))
def test_api_answers_json_or_an_openai_error(client, body) -> None:
    # ensure_ascii: lone surrogates travel as \ud800 escapes, as a client's JSON may carry them.
    raw = json.dumps(body, ensure_ascii=True).encode()
    _check_response(client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"}))


@_budget
@given(raw=st.binary(max_size=300))
def test_api_refuses_bytes_that_are_not_a_request(client, raw: bytes) -> None:
    _check_response(client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"}))
