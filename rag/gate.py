"""The waiting line: one question at a time in the model (QuestionGate), and the stream a caller reads (AnswerStream)."""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator

from rag.errors import BusyError
from rag.types import Answer


class QuestionGate:
    """One question at a time in the model, the others wait in arrival order; at most max_waiting wait.

    llama.cpp's context is one piece of state: two questions evaluated into it at once would corrupt
    both answers, and the reproducible answers depend on each question starting from the cached
    instruction alone. Every entry point (ask, stream, the chat page, the HTTP API, threads of a
    caller) goes through the pipeline's one gate.
    """

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        # RLock: a stream dropped by the garbage collector leaves the queue from whatever thread runs it.
        self._cond = threading.Condition(threading.RLock())
        self._queue: deque[object] = deque()  # tickets in arrival order; the first one holds the model

    def enter(self) -> object:
        """Take a place in the queue (the ticket to wait() with); BusyError if it is full."""
        with self._cond:
            if len(self._queue) > self.max_waiting:
                raise BusyError(
                    f"記事QA is busy: one question is being answered and {len(self._queue) - 1} are waiting "
                    f"(at most {self.max_waiting}). Try again in a minute. "
                    "(混み合っています。しばらくしてからもう一度質問してください。)"
                )
            ticket = object()
            self._queue.append(ticket)
            return ticket

    def ahead(self, ticket: object) -> int:
        """How many questions are before this one (0: it is being answered or is next)."""
        with self._cond:
            return self._queue.index(ticket) if ticket in self._queue else 0

    def wait(self, ticket: object, cancelled: threading.Event | None = None) -> bool:
        """Block until the ticket is first in the queue (True) or `cancelled` is set (False)."""
        with self._cond:
            while self._queue[0] is not ticket:
                if cancelled is not None and cancelled.is_set():
                    return False
                self._cond.wait()
            return True

    def wake(self) -> None:
        """Let waiters look at their cancel flags again."""
        with self._cond:
            self._cond.notify_all()

    def leave(self, ticket: object) -> None:
        """Give up the place (waiting or answering); the next ticket goes on. Safe to call twice."""
        with self._cond:
            if ticket in self._queue:
                self._queue.remove(ticket)
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """Questions in the queue, the one being answered included."""
        with self._cond:
            return len(self._queue)


class AnswerStream:
    """Iterate to get the answer text in pieces; `.answer` holds the full Answer afterwards.

    The stream holds a place in the pipeline's queue from the moment it is made and the model while
    it is read; close() (or dropping it, or leaving a `with` block) gives both back, so a reader that
    stops early never keeps the next question waiting.
    """

    def __init__(
        self,
        pieces: Iterator[str],
        *,
        release: Callable[[], None] | None = None,
        result: list[Answer] | None = None,
        cancel: Callable[[], None] | None = None,
    ) -> None:
        self._pieces = pieces
        self._release = release
        self._cancel = cancel
        # The producer appends the Answer here, not to the stream: a generator holding the stream would
        # make a cycle, and a dropped stream would keep its place in the queue until the cyclic GC ran.
        self._result: list[Answer] = [] if result is None else result
        self.ahead = 0  # questions before this one when it was asked

    @property
    def answer(self) -> Answer | None:
        """The full Answer once the pieces are read to the end (None before)."""
        return self._result[-1] if self._result else None

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def cancel(self) -> None:
        """Ask the thread reading this stream to stop (safe from any thread): it ends after the current piece.

        A question still waiting for its turn leaves the queue without being answered; `.answer` stays None.
        """
        if self._cancel is not None:
            self._cancel()

    def close(self) -> None:
        """Stop reading (from the thread that reads): the model is free for the next question at once."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()
        if self._release is not None:
            self._release()
            self._release = None

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the gate may be gone already
            self.close()
