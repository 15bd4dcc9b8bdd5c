"""Many callers, one model: questions from threads never overlap in the generator, wait in order, and a full queue says busy."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import pytest

from rag.errors import BusyError
from rag.factories import load_pipeline
from rag.generation import Message
from rag.ingest import build_index
from tests.conftest import OverlapDetectingGenerator, RecordingGenerator

QUESTIONS = ["嵐山には1日あたり何人の観光客が訪れた?", "ハヤブサ9の開発費は?", "臨時バスは何分間隔で運行している?"]


class GatedGenerator(RecordingGenerator):
    """A fake model that writes its first piece, then waits until the test opens `go`."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.answered: list[str] = []

    def stream_chat(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        pieces = super().stream_chat(messages, max_tokens=max_tokens)
        yield next(pieces)
        assert self.go.wait(timeout=30)
        yield from pieces
        self.answered.append(messages[-1]["content"].rpartition("質問: ")[2])


@pytest.fixture
def index(settings, embedder):
    build_index(settings=settings, embedder=embedder)
    return settings


def _pipe(index, embedder, generator, **overrides):
    return load_pipeline(settings=index, embedder=embedder, generator=generator, **overrides)


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_threads_never_share_the_model_and_get_the_answers_they_get_alone(index, embedder) -> None:
    generator = OverlapDetectingGenerator()
    pipe = _pipe(index, embedder, generator, max_waiting=64)
    alone = {q: pipe.ask(q).text for q in QUESTIONS}
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(24)

    def worker(i: int) -> None:
        try:
            start.wait()
            q = QUESTIONS[i % len(QUESTIONS)]
            if i % 2:
                results[i] = pipe.ask(q).text
            else:  # streamed and asked calls mixed, as the page and the API do
                stream = pipe.stream(q)
                "".join(stream)
                results[i] = stream.answer.text
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert generator.most_inside == 1
    assert {i: results[i] for i in range(24)} == {i: alone[QUESTIONS[i % 3]] for i in range(24)}
    assert pipe.gate.waiting == 0


def test_questions_wait_in_arrival_order_and_a_full_queue_is_busy(index, embedder) -> None:
    generator = GatedGenerator()
    pipe = _pipe(index, embedder, generator, max_waiting=2)
    first = pipe.stream(QUESTIONS[0])
    next(first)  # being answered, holds the model
    done: list[str] = []

    def ask(q: str) -> None:
        done.append(pipe.ask(q).question)

    waiting = []
    for n, q in enumerate(QUESTIONS[1:], start=2):
        t = threading.Thread(target=ask, args=(q,))
        t.start()
        waiting.append(t)
        _wait_until(lambda n=n: pipe.gate.waiting == n, "the question to queue")
    with pytest.raises(BusyError, match="busy") as exc:
        pipe.ask("紅葉の見頃はいつ?")
    assert "混み合って" in str(exc.value)
    assert pipe.gate.waiting == 3  # the refused question took no place
    generator.go.set()
    assert "".join(first)
    for t in waiting:
        t.join(timeout=30)
    assert done == QUESTIONS[1:]  # first come, first served
    assert pipe.gate.waiting == 0
    assert pipe.ask("紅葉の見頃はいつ?").text  # room again


@pytest.mark.parametrize("how", ["close", "drop", "break", "never_started"])
def test_a_reader_that_stops_early_frees_the_model(index, embedder, how: str) -> None:
    generator = OverlapDetectingGenerator()
    pipe = _pipe(index, embedder, generator, max_waiting=0)
    stream = pipe.stream(QUESTIONS[0])
    if how == "close":
        next(stream)
        stream.close()
    elif how == "drop":
        next(stream)
        del stream
        gc.collect()  # not needed by CPython's reference counting, but makes the test independent of it
    elif how == "break":
        with stream:
            for _ in stream:
                break
    else:
        del stream
    assert pipe.gate.waiting == 0
    assert generator.inside == 0  # the model's generation was closed, not left suspended
    assert pipe.ask(QUESTIONS[1]).citations  # the next question is answered, not refused or blocked


def test_an_abandoned_stream_releases_the_model_while_others_wait(index, embedder) -> None:
    generator = GatedGenerator()
    pipe = _pipe(index, embedder, generator, max_waiting=4)
    abandoned = pipe.stream(QUESTIONS[0])
    next(abandoned)
    answers: list[str] = []
    t = threading.Thread(target=lambda: answers.append(pipe.ask(QUESTIONS[1]).text))
    t.start()
    _wait_until(lambda: pipe.gate.waiting == 2, "the second question to queue")
    generator.go.set()
    abandoned.close()  # the reader went away mid-answer
    t.join(timeout=30)
    assert answers and "ハヤブサ9" in answers[0]


def test_cancel_from_another_thread_takes_a_waiting_question_out_of_the_queue(index, embedder) -> None:
    generator = GatedGenerator()
    pipe = _pipe(index, embedder, generator, max_waiting=4)
    running = pipe.stream(QUESTIONS[0])
    next(running)
    waiting = pipe.stream(QUESTIONS[1])
    assert waiting.ahead == 1
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(("".join(waiting), waiting.answer)))
    t.start()
    waiting.cancel()  # e.g. the HTTP client hung up while its question waited
    t.join(timeout=30)
    assert got == [("", None)] and pipe.gate.waiting == 1
    generator.go.set()
    "".join(running)
    assert running.answer is not None and pipe.gate.waiting == 0
    assert len(generator.answered) == 1  # the cancelled question never reached the model
