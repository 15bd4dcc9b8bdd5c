"""The Generator behind an OpenAI-compatible server: llama.cpp's server, vLLM, Ollama, ...

Chosen by `load_generator` when `RAG_LLM_URL` / `--llm-url` is set; everything else (the prompt
from build_messages, the citation checks, the refusal decision) is the same code as with the
embedded model, since this class only turns messages into streamed text.

- Streaming: `POST {url}/chat/completions` with `stream: true` (server-sent events), read with
  the `openai` client, whose SSE handling is what these servers test against.
- The same answer for the same question: `temperature` from the settings (0: greedy), a fixed
  `seed`, and `repeat_penalty: 1.0`, a llama.cpp extension that others ignore: llama-cpp-python's
  server otherwise applies 1.1, which the embedded model does not.
- Token log-probabilities are requested (`logprobs: true, top_logprobs: 1`). A server that sends
  none leaves `last_logprobs` empty, and make_answer then scores answerability with the weights fitted
  without them (answerability.WEIGHTS_NO_LOGPROBS: the two question-word coverages), never with a
  log-probability of 0 read as "certain". A server that rejects the request for log-probabilities
  is asked again without them, once; later requests do not ask.
- Except llama-cpp-python's server (known by its `/extras/tokenize/count` endpoint): asked for
  log-probabilities while streaming, it decodes each token on its own and drops the characters that
  span two tokens (「ジャーナル」 came back as 「ジャール」, and the answer was refused for it; the
  branch is marked "not sure how to handle this branch when dealing with CJK output" in
  llama_cpp/llama.py 0.3.36, see abetlen/llama-cpp-python#372). So it is not asked, and its answers
  are judged like those of any server without log-probabilities.
- Prompt tokens (for dropping old turns to fit the context window): llama-cpp-python's server counts
  them with the model's tokenizer (`POST /extras/tokenize/count`; the chat template's own tokens,
  which that endpoint does not see, are added as TEMPLATE_TOKENS per message: on the chat page's
  examples the count is 11 above the embedded model's exact one). Servers without that
  endpoint get an estimate of one token per character plus the same allowance: with Qwen2.5's
  tokenizer the seed passages take 0.70 tokens per character (median; at most 0.84 over 324
  passages of 200 characters) and the seed questions at most 0.86, so the estimate errs towards
  dropping a turn early, never towards overflowing the context (English text: about 0.25). Set RAG_N_CTX to the
  server's context size: the pipeline trims history to fit `n_ctx`.
- Errors: an unreachable server, a timeout or an HTTP error becomes LLMServerError naming the URL
  (PromptTooLongError when the server says the prompt exceeds its context).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from rag.errors import LLMServerError, PromptTooLongError
from rag.generation import Message

TEMPLATE_TOKENS = 8  # ChatML spends 5 per message (<|im_start|>, role, \n, <|im_end|>, \n); others a few more
TIMEOUT_SECONDS = 120.0  # no answer piece for this long: the server is stuck or overloaded
_TOO_LONG = re.compile(r"context|too long|exceed|maximum.*length", re.IGNORECASE)


class OpenAIServerGenerator:
    """Streams chat replies from an OpenAI-compatible server at `base_url` (ending in /v1)."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "",
        api_key: str = "",
        temperature: float = 0.0,
        seed: int = 0,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        import openai

        self.base_url = base_url.rstrip("/")
        if not re.match(r"https?://", self.base_url):
            raise LLMServerError(
                f"RAG_LLM_URL={base_url!r} is not an http(s) URL. Give the server's OpenAI base URL, "
                "e.g. http://localhost:8000/v1 (llama.cpp, vLLM) or http://localhost:11434/v1 (Ollama)."
            )
        # Servers without authentication ignore the key, but the client insists on one.
        self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "none", timeout=timeout, max_retries=0)
        self.temperature = temperature
        self.seed = seed
        self.timeout = timeout
        self.last_logprobs: list[float] = []  # log-probability of each token of the last answer ([]: not sent)
        # Fails here, at start-up, rather than at the first question: the URL is checked at once.
        self.model = model or self._first_model()
        self._count_url = f"{re.sub(r'/v1$', '', self.base_url)}/extras/tokenize/count"
        self.counts_tokens = self._server_count("") is not None  # llama-cpp-python's server (see above)
        self.ask_logprobs = not self.counts_tokens

    def _fail(self, exc: Exception, what: str) -> Exception:
        """The RagError to raise for an exception of the openai client."""
        import openai

        where = f"the LLM server at {self.base_url}"
        if isinstance(exc, openai.APITimeoutError):
            return LLMServerError(f"{where} did not answer {what} within {self.timeout:.0f} s. Is it overloaded?")
        if isinstance(exc, openai.APIConnectionError):
            return LLMServerError(
                f"Cannot reach {where} ({what}): {exc.__cause__ or exc}. Is the server running, and is "
                "RAG_LLM_URL (--llm-url) its OpenAI base URL, e.g. http://localhost:8000/v1?"
            )
        if isinstance(exc, openai.APIStatusError):
            detail = _error_detail(exc)
            if exc.status_code in (401, 403):
                hint = "Set RAG_LLM_API_KEY (--llm-key) to a key the server accepts."
            elif exc.status_code == 404:
                hint = "Check that the URL ends in /v1 and RAG_LLM_MODEL (--llm-model) names a model it serves."
            elif exc.status_code in (400, 413) and _TOO_LONG.search(detail):
                return PromptTooLongError(
                    f"{where} says the prompt does not fit its context ({detail}). Ask a shorter question, "
                    "start a new conversation, or set RAG_N_CTX to the server's context size."
                )
            else:
                hint = "See the server's log."
            return LLMServerError(f"{where} answered {what} with HTTP {exc.status_code}: {detail}. {hint}")
        if isinstance(exc, openai.APIError):  # an error event inside the stream
            return LLMServerError(f"{where} reported an error {what}: {exc}. See the server's log.")
        return exc

    def _first_model(self) -> str:
        import openai

        try:
            models = [m.id for m in self._client.models.list()]
        except openai.OpenAIError as exc:
            raise self._fail(exc, "listing its models (GET /models)") from exc
        if not models:
            raise LLMServerError(f"The LLM server at {self.base_url} serves no model. Set RAG_LLM_MODEL.")
        return models[0]

    def _server_count(self, text: str) -> int | None:
        """Tokens of text by llama-cpp-python's tokenizer endpoint; None if the server has none."""
        import openai

        try:
            result = self._client.post(self._count_url, cast_to=object, body={"input": text, "model": self.model})
        except openai.APIStatusError:
            return None
        except openai.OpenAIError as exc:
            raise self._fail(exc, "counting prompt tokens") from exc
        count = result.get("count") if isinstance(result, dict) else None
        return count if isinstance(count, int) else None

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens of the prompt: the server's own count if it offers one, else an upper estimate."""
        allowance = TEMPLATE_TOKENS * (len(messages) + 1)  # +1: the assistant turn the prompt opens
        text = "\n".join(m["content"] for m in messages)
        counted = self._server_count(text) if self.counts_tokens else None
        return (len(text) if counted is None else counted) + allowance

    def _request(self, messages: list[Message], max_tokens: int) -> Any:
        import openai

        body: dict[str, Any] = {"repeat_penalty": 1.0}
        options: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "stream": True,
            "extra_body": body,
        }
        if self.ask_logprobs:
            options.update(logprobs=True, top_logprobs=1)
        try:
            return self._client.chat.completions.create(**options)
        except openai.APIStatusError as exc:
            if self.ask_logprobs and exc.status_code < 500 and "logprob" in _error_detail(exc).lower():
                self.ask_logprobs = False  # this server does not do them; answerability falls back
                return self._request(messages, max_tokens)
            raise self._fail(exc, "the question") from exc
        except openai.OpenAIError as exc:
            raise self._fail(exc, "the question") from exc

    def stream_chat(self, messages: list[Message], *, max_tokens: int) -> Iterator[str]:
        """Yield the reply in pieces as the server sends them; `last_logprobs` is set as they come."""
        import openai

        self.last_logprobs = []
        stream = self._request(messages, max_tokens)
        try:
            for chunk in stream:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.logprobs is not None and choice.logprobs.content:
                    self.last_logprobs.extend(t.logprob for t in choice.logprobs.content)
                if choice.delta is not None and choice.delta.content:
                    yield choice.delta.content
        except openai.OpenAIError as exc:
            raise self._fail(exc, "while streaming the answer") from exc
        finally:
            stream.close()


def _error_detail(exc: Any) -> str:
    """The server's own words from an error response (OpenAI's {"error": {"message"}} or FastAPI's {"detail"})."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message") or inner.get("detail")
            if message:
                return str(message)
        if isinstance(body.get("detail"), str):
            return body["detail"]
    return str(getattr(exc, "message", "") or exc)
