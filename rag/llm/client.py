"""A small client for OpenAI-compatible Chat Completions servers (vLLM, Ollama, llama.cpp server,
OpenAI, Mistral…), over httpx, streaming or not.

Every call runs in the client's own small pool of threads (``RAG_LLM_CONCURRENCY``): beyond it a call
fails at once as ``busy``, so a slow LLM never holds the threads that serve searches. The caller waits
at most until its deadline, by the wall clock, however the server drips its bytes; the worker stops
reading at the deadline too, and a non-streamed answer (which CPU servers send only once it is all written)
may take all the time left. Retries on 429/5xx/connection errors, before the first piece, after one pause
shared by every stage: the server's ``Retry-After`` when it gives one. What servers send back is read by
:mod:`.wire`; the model is looked up on the server by :meth:`ChatClient.look`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from rag.config import LLMSettings
from rag.egress import EgressPolicy
from rag.errors import ConfigError, LLMError
from rag.llm.wire import pieces, whole

RETRY_STATUS = {429, 500, 502, 503, 504}
OPTIONAL = ("seed",)  # fields some servers refuse (Mistral: 422, it wants random_seed): dropped once refused
CHARS_PER_TOKEN = 3.0  # a cautious estimate for French text: prompts are kept within the context by it
_END = object()
logger = logging.getLogger("rag.llm")


class ChatClient:
    def __init__(
        self, config: LLMSettings, transport: httpx.BaseTransport | None = None, policy: EgressPolicy | None = None
    ) -> None:
        """``transport``: how the server is reached (default: through ``policy``, the egress policy, which lets the
        configured server be reached wherever it is)."""
        if not config.base_url:
            raise ConfigError("no LLM server is configured; set RAG_LLM_BASE_URL")
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        transport = transport or (policy or EgressPolicy(trusted_urls=[config.base_url])).transport()
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/"), headers=headers, transport=transport, trust_env=False
        )
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="llm")
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._paused_until = 0.0  # shared by every stage: no call before (the server asked to wait)
        self._refused: set[str] = set()  # optional fields this server refused
        self.model = config.model
        self.model_state = "unknown"  # what the last look at GET /models found (:meth:`look`)

    def look(self, timeout: float = 2.0) -> str:
        """Ask the server which models it serves (``GET /models``) and say what was found: ``ok``,
        ``model_missing`` or ``unreachable``. With no model configured (``default``) and one served, that one
        is used. Never raises; called off the request path."""
        try:
            response = self._http.get("/models", timeout=timeout)
            listed = [m for m in response.json().get("data", []) if isinstance(m, dict)]
            served = [m.get("id") for m in listed]
        except (httpx.HTTPError, ValueError, AttributeError):
            self.model_state = "unreachable"
            return self.model_state
        if response.status_code == 404:  # a server that lists no models: nothing to check
            self.model_state = "ok"
        elif response.status_code >= 400:
            self.model_state = "unauthorized" if response.status_code in {401, 403} else "unreachable"
        elif self.config.model == "default" and len(served) == 1 and self.model == "default":
            self.model, self.model_state = served[0], "ok"
            logger.info("LLM model: %s, the one the server serves (RAG_LLM_MODEL unset)", self.model)
        elif self.model in served or not served or all(m.get("owned_by") == "llamacpp" for m in listed):
            self.model_state = "ok"  # llama.cpp serves its one model whatever name is asked
        else:
            if self.model_state != "model_missing":
                logger.error(
                    "LLM model %r is not served by %s (it serves: %s); set RAG_LLM_MODEL to one of them",
                    self.model,
                    self.config.base_url,
                    ", ".join(map(str, served[:10])),
                )
            self.model_state = "model_missing"
        return self.model_state

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def complete(
        self,
        messages: list[dict],
        deadline: float | None = None,
        max_tokens: int | None = None,
        cut_ok: bool = False,
        **sampling: Any,
    ) -> str:
        """The whole answer text, reasoning left out, from one non-streaming call (with retries). ``cut_ok``: an
        answer cut at ``max_tokens`` is taken (else it fails as ``length``). ``sampling``: fields that replace the
        settings' (``temperature``) or add to them (``seed``), for calls that must repeat themselves."""
        deadline = deadline or time.monotonic() + self.config.total_timeout
        payload = {**self._payload(messages, False, max_tokens), **sampling}
        return "".join(self._run(lambda put: put(self._complete(payload, deadline, cut_ok)), deadline))

    def stream(self, messages: list[dict], deadline: float | None = None) -> Iterator[str]:
        """Pieces of the answer as the server sends them. Retries only before the first piece."""
        deadline = deadline or time.monotonic() + self.config.total_timeout
        return self._run(lambda put: self._stream(messages, deadline, put), deadline)

    def _run(self, work: Callable[[Callable[[str], None]], None], deadline: float) -> Iterator[str]:
        """Run ``work`` in the pool; yield what it puts, waiting no later than ``deadline``."""
        if not self._slots.acquire(blocking=False):
            raise LLMError("busy", f"{self.config.concurrency} LLM calls are already running")
        out: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()

        def job() -> None:
            try:
                work(lambda piece: None if stop.is_set() else out.put(piece))
                out.put(_END)
            except LLMError as exc:
                out.put(exc)
            except Exception as exc:  # the top of the worker: whatever broke, the caller gets a reason
                out.put(LLMError("error", str(exc)))
            finally:
                self._slots.release()

        self._pool.submit(job)
        return _drain(out, deadline, stop)

    def _payload(self, messages: list[dict], stream: bool, max_tokens: int | None = None) -> dict:
        """The request: the settings' extra fields (``RAG_LLM_EXTRA_BODY``), then ours; the budget leaves room for
        the reasoning of models that think first (``RAG_LLM_REASONING_TOKENS``)."""
        budget = self._budget(max_tokens)
        if not self.fits(messages, max_tokens):
            raise LLMError("too_long", "the prompt and the answer do not fit RAG_LLM_CONTEXT_TOKENS")
        return {
            **self.config.extra_body,
            "model": self.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": budget,
            "stream": stream,
        }

    def _budget(self, max_tokens: int | None) -> int:
        return (max_tokens or self.config.max_tokens) + self.config.reasoning_tokens

    def fits(self, messages: list[dict], max_tokens: int | None = None) -> bool:
        """Whether the prompt and the answer's budget fit the model's context (estimated, cautiously)."""
        prompt = sum(len(str(m.get("content") or "")) for m in messages) / CHARS_PER_TOKEN
        return prompt + self._budget(max_tokens) <= self.config.context_tokens

    def _timeout(self, deadline: float, streamed: bool) -> httpx.Timeout:
        """Connect quickly; a stream must start within the first-token timeout, a whole answer may take the time
        left (servers on CPUs send nothing until it is all written)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise LLMError("timeout", "the answer deadline passed")
        read = min(self.config.first_token_timeout, left) if streamed else left
        return httpx.Timeout(connect=min(self.config.connect_timeout, left), read=read, write=read, pool=read)

    def _attempts(self, deadline: float) -> Iterator[int]:
        """Attempt numbers, each after the shared pause; none once the pause would outlast the deadline."""
        for attempt in range(self.config.retries + 1):
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                if time.monotonic() + wait >= deadline:
                    if attempt:
                        return
                    raise LLMError("rate_limited", f"the server asked to wait {wait:.0f} s more")
                time.sleep(wait)
            yield attempt

    def _refused_by(self, status: int, body: str, payload: dict) -> bool:
        """Whether the server refused an optional field we sent (then it is never sent again)."""
        named = [f for f in OPTIONAL if f in payload and f'"{f}"' in body] if status in {400, 422} else []
        for field in named:
            self._refused.add(field)
            payload.pop(field)
        return bool(named)

    def _failed(self, response: httpx.Response, body: str, payload: dict, attempt: int) -> LLMError:
        """The error to retry after the pause (at once, without it, when an optional field was refused), or
        raised when retrying cannot help."""
        if self._refused_by(response.status_code, body, payload):
            return LLMError("refused_field", body[:200])
        error = LLMError(f"http_{response.status_code}", body[:200])
        if response.status_code not in RETRY_STATUS:
            raise error
        self._pause(response.headers.get("retry-after"), attempt)
        return error

    def _pause(self, retry_after: str | None, attempt: int) -> None:
        try:
            wait = min(float(retry_after), 3600.0) if retry_after else self.config.backoff * 2**attempt
        except ValueError:  # an HTTP date: rare from these servers; a standard pause
            wait = self.config.backoff * 2**attempt
        self._paused_until = max(self._paused_until, time.monotonic() + wait)

    def _send(self, payload: dict, deadline: float, streamed: bool):
        for field in self._refused & payload.keys():
            payload.pop(field)
        return self._http.stream("POST", "/chat/completions", json=payload, timeout=self._timeout(deadline, streamed))

    def _complete(self, payload: dict, deadline: float, cut_ok: bool) -> str:
        last: LLMError = LLMError("unavailable")
        for attempt in self._attempts(deadline):
            try:
                with self._send(payload, deadline, False) as r:
                    body = "".join(_until(r.iter_text(), deadline))
                    if r.status_code >= 400:
                        last = self._failed(r, body, payload, attempt)
                        continue
            except httpx.TimeoutException:
                raise LLMError("timeout", "no answer in time") from None
            except httpx.TransportError as exc:
                last = LLMError("connection", str(exc))
                continue
            return whole(body, cut_ok)
        raise last

    def _stream(self, messages: list[dict], deadline: float, put: Callable[[str], None]) -> None:
        last: LLMError = LLMError("unavailable")
        payload = self._payload(messages, True)
        for attempt in self._attempts(deadline):
            started = False
            try:
                with self._send(payload, deadline, True) as r:
                    if r.status_code >= 400:
                        body = "".join(_until(r.iter_text(), deadline))
                        last = self._failed(r, body, payload, attempt)
                        continue
                    for piece in pieces(_lines(_until(r.iter_text(), deadline))):
                        started = True
                        put(piece)
                    return
            except httpx.TimeoutException:
                raise LLMError("timeout", "the server was too slow") from None
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if started:
                    raise LLMError("stream_cut", str(exc)) from None
                last = LLMError("connection", str(exc))
            except httpx.TransportError as exc:
                last = LLMError("connection", str(exc))
        raise last


def _drain(out: queue.Queue[Any], deadline: float, stop: threading.Event) -> Iterator[str]:
    try:
        while True:
            try:
                item = out.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise LLMError("timeout", "the answer deadline passed") from None
            if item is _END:
                return
            if isinstance(item, LLMError):
                raise item
            yield item
    finally:
        stop.set()


def _until(chunks: Iterator[str], deadline: float) -> Iterator[str]:
    """The response's text as it arrives; stops reading at the deadline, however slowly it drips."""
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise LLMError("timeout", "the answer deadline passed while reading")
        yield chunk


def _lines(chunks: Iterator[str]) -> Iterator[str]:
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split("\n")
        yield from (line.rstrip("\r") for line in complete)
    if buffer:
        yield buffer
