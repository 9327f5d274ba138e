"""A small client for OpenAI-compatible Chat Completions servers (vLLM, Ollama, llama.cpp server,
OpenAI, Mistral…), over httpx, streaming or not.

Every call runs in the client's own small pool of threads (``RAG_LLM_CONCURRENCY``): beyond it a call
fails at once as ``busy``, so a slow LLM never holds the threads that serve searches. The caller waits
at most until its deadline, by the wall clock, however the server drips its bytes; the worker stops
reading at the deadline too. Retries with backoff on 429/5xx/connection errors, before the first piece.
"""

from __future__ import annotations

import json
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

RETRY_STATUS = {429, 500, 502, 503, 504}
_END = object()


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

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def complete(
        self, messages: list[dict], deadline: float | None = None, max_tokens: int | None = None, **sampling: Any
    ) -> str:
        """The whole answer text, from one non-streaming call (with retries). ``sampling``: fields that replace
        the settings' (``temperature``) or add to them (``seed``), for calls that must repeat themselves."""
        deadline = deadline or time.monotonic() + self.config.total_timeout
        payload = {**self._payload(messages, False, max_tokens), **sampling}
        pieces = self._run(lambda put: put(self._complete(payload, deadline)), deadline)
        return "".join(pieces)

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
        return {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": max_tokens or self.config.max_tokens,
            "stream": stream,
        }

    def _timeout(self, deadline: float) -> httpx.Timeout:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LLMError("timeout", "the answer deadline passed")
        read = min(self.config.first_token_timeout, left)
        return httpx.Timeout(connect=min(self.config.connect_timeout, left), read=read, write=read, pool=read)

    def _attempts(self, deadline: float) -> Iterator[int]:
        for attempt in range(self.config.retries + 1):
            if attempt:
                pause = self.config.backoff * 2 ** (attempt - 1)
                if time.monotonic() + pause >= deadline:
                    return
                time.sleep(pause)
            yield attempt

    def _complete(self, payload: dict, deadline: float) -> str:
        last: LLMError = LLMError("unavailable")
        for _ in self._attempts(deadline):
            try:
                with self._http.stream("POST", "/chat/completions", json=payload, timeout=self._timeout(deadline)) as r:
                    body = "".join(_until(r.iter_text(), deadline))
                    if r.status_code in RETRY_STATUS:
                        last = LLMError(f"http_{r.status_code}", body[:200])
                        continue
                    if r.status_code >= 400:
                        raise LLMError(f"http_{r.status_code}", body[:200])
            except httpx.TimeoutException:
                raise LLMError("timeout", "no answer in time") from None
            except httpx.TransportError as exc:
                last = LLMError("connection", str(exc))
                continue
            return _content(body)
        raise last

    def _stream(self, messages: list[dict], deadline: float, put: Callable[[str], None]) -> None:
        last: LLMError = LLMError("unavailable")
        payload = self._payload(messages, True)
        for _ in self._attempts(deadline):
            started = False
            try:
                with self._http.stream("POST", "/chat/completions", json=payload, timeout=self._timeout(deadline)) as r:
                    if r.status_code >= 400:
                        error = LLMError(f"http_{r.status_code}", "".join(_until(r.iter_text(), deadline))[:200])
                        if r.status_code in RETRY_STATUS:
                            last = error
                            continue
                        raise error
                    for piece in _sse_pieces(_lines(_until(r.iter_text(), deadline))):
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


def _content(body: str) -> str:
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMError("malformed", body[:200]) from None
    if not isinstance(content, str):
        raise LLMError("malformed", "no text in the answer")
    return content


def _sse_pieces(lines: Iterator[str]) -> Iterator[str]:
    finished = False
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
            choice = chunk["choices"][0] if chunk.get("choices") else {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise LLMError("malformed", data[:200]) from None
        content = (choice.get("delta") or {}).get("content")
        if content:
            yield content
        if choice.get("finish_reason"):
            finished = True
    if not finished:
        raise LLMError("stream_cut", "the stream ended before the answer was complete")
