"""`rag serve`: the chat page and the OpenAI-compatible API in one server, many clients at once.

The first test runs the real HTTP stack (uvicorn, Gradio, the official `openai` client) on the
fake models; the integration tests start a real `rag serve` process on the real models.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag.api import MODEL_ID
from rag.webapp import EXAMPLES
from tests.conftest import KURSK_Q, OverlapDetectingGenerator, chat_server, free_port

FAKE_QUESTIONS = ["嵐山には1日あたり何人の観光客が訪れた?", "ハヤブサ9の開発費は?", "臨時バスは何分間隔で運行している?"]


@contextlib.contextmanager
def served(pipe) -> Iterator[str]:
    """Serve build_server(pipe) with uvicorn in a thread; yield its base URL."""
    import uvicorn

    from rag.webapp import build_server

    server = uvicorn.Server(uvicorn.Config(build_server(pipe), host="127.0.0.1", port=free_port(), log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def api_answer(base: str, question: str, *, stream: bool = False, max_tokens: int | None = None) -> tuple[str, list[dict]]:
    """(answer text, sources) through the official openai client."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=900)
    extra = {"max_tokens": max_tokens} if max_tokens else {}
    messages = [{"role": "user", "content": question}]
    if not stream:
        completion = client.chat.completions.create(model=MODEL_ID, messages=messages, **extra)
        return completion.choices[0].message.content or "", completion.model_extra["sources"]
    text, sources = "", None
    for chunk in client.chat.completions.create(model=MODEL_ID, messages=messages, stream=True, **extra):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if (chunk.model_extra or {}).get("sources") is not None:
            sources = chunk.model_extra["sources"]
    assert sources is not None, "the last chunk carries the sources"
    return text, sources


def page_answer(base: str, question: str) -> str:
    """The answer text the chat page shows, through gradio_client."""
    from gradio_client import Client

    from rag.webapp import answer_part

    result = Client(f"{base}/", verbose=False).predict(question, api_name="/chat")
    return answer_part(result[0]["content"] if isinstance(result, list) else str(result))


def at_once(calls: list[Callable[[], str]]) -> list[str]:
    """Run the calls from as many threads, released together."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], str]) -> str:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_page_and_api_clients_at_once_get_their_answers_one_model_use_at_a_time(settings, embedder) -> None:
    from rag.factories import load_pipeline
    from rag.ingest import build_index

    build_index(settings=settings, embedder=embedder)
    generator = OverlapDetectingGenerator()
    pipe = load_pipeline(settings=settings, embedder=embedder, generator=generator)
    with served(pipe) as base:
        alone = {q: (page_answer(base, q), api_answer(base, q)[0]) for q in FAKE_QUESTIONS}
        for q, (page, api) in alone.items():
            assert page == api and "[1]" in api, q
        calls = [
            (lambda q=FAKE_QUESTIONS[i % 3], i=i: page_answer(base, q) if i % 3 == 0 else api_answer(base, q, stream=i % 3 == 1)[0])
            for i in range(12)  # 20 at once on the real models below; here the stack, quickly
        ]
        answers = at_once(calls)
    assert answers == [alone[FAKE_QUESTIONS[i % 3]][0] for i in range(12)]
    assert generator.most_inside == 1 and pipe.gate.waiting == 0


# ---- the real thing: `rag serve` on the real models, in its own process ----

EXPECTED = {EXAMPLES[0]: "スジャ", EXAMPLES[1]: "11億ドル", EXAMPLES[2]: "15.9%"}
REAL_ENV = {"RAG_N_THREADS": "2", "RAG_MAX_TOKENS": "128"}  # answers to these are a few dozen tokens


@pytest.mark.integration
def test_openai_client_gets_cited_answers_from_rag_serve(real_index) -> None:
    with chat_server(real_index, **REAL_ENV) as (_proc, port):
        base = f"http://127.0.0.1:{port}"
        text, sources = api_answer(base, KURSK_Q)
        numbers = {int(n) for n in re.findall(r"\[(\d+)\]", text)}
        assert "スジャ" in text and numbers, text
        assert sources and all(s["quote"] and s["quote"] in s["text"] and s["file"].endswith(".txt") for s in sources)
        assert numbers == {s["number"] for s in sources}  # every marker has its source and no source is unused
        streamed, streamed_sources = api_answer(base, KURSK_Q, stream=True)
        assert streamed == text and streamed_sources == sources


@pytest.mark.integration
def test_twenty_clients_at_once_page_and_api_each_get_the_answer_they_get_alone(real_index) -> None:
    questions = list(EXPECTED)
    with chat_server(real_index, **REAL_ENV) as (_proc, port):
        base = f"http://127.0.0.1:{port}"
        alone = {q: api_answer(base, q)[0] for q in questions}
        for q in questions:
            assert EXPECTED[q] in alone[q], (q, alone[q])
            assert page_answer(base, q) == alone[q]  # the page and the API give the same answer
        calls = [
            (lambda q=questions[i % 3], i=i: page_answer(base, q) if i % 2 else api_answer(base, q, stream=i % 4 == 0)[0])
            for i in range(20)
        ]
        answers = at_once(calls)
    for i, answer in enumerate(answers):
        assert answer == alone[questions[i % 3]], (i, answer)
