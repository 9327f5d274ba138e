"""A small client for OpenAI-compatible Chat Completions servers (vLLM, Ollama, llama.cpp server,
OpenAI, Mistral…), over httpx: timeouts for connecting, the first token and the whole call, bounded
retries with backoff on 429/5xx/connection errors, streaming and non-streaming."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

from .config import LLMSettings
from .errors import ConfigError, LLMError

RETRY_STATUS = {429, 500, 502, 503, 504}


class ChatClient:
    def __init__(self, config: LLMSettings, transport: httpx.BaseTransport | None = None) -> None:
        if not config.base_url:
            raise ConfigError("no LLM server is configured; set RAG_LLM_BASE_URL")
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        base = config.base_url.rstrip("/")
        self._http = httpx.Client(base_url=base, headers=headers, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _payload(self, messages: list[dict], stream: bool) -> dict:
        return {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
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

    def complete(self, messages: list[dict], deadline: float | None = None) -> str:
        """The whole answer text, from one non-streaming call (with retries)."""
        deadline = deadline or time.monotonic() + self.config.total_timeout
        last: LLMError = LLMError("unavailable")
        for _ in self._attempts(deadline):
            try:
                response = self._http.post(
                    "/chat/completions", json=self._payload(messages, False), timeout=self._timeout(deadline)
                )
            except httpx.TimeoutException as exc:
                raise LLMError("timeout", str(exc) or "no answer in time") from None
            except httpx.TransportError as exc:
                last = LLMError("connection", str(exc))
                continue
            if response.status_code in RETRY_STATUS:
                last = LLMError(f"http_{response.status_code}", response.text[:200])
                continue
            if response.status_code >= 400:
                raise LLMError(f"http_{response.status_code}", response.text[:200])
            try:
                content = response.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise LLMError("malformed", response.text[:200]) from None
            if not isinstance(content, str):
                raise LLMError("malformed", "no text in the answer")
            return content
        raise last

    def stream(self, messages: list[dict], deadline: float | None = None) -> Iterator[str]:
        """Pieces of the answer as the server sends them. Retries only before the first piece."""
        deadline = deadline or time.monotonic() + self.config.total_timeout
        last: LLMError = LLMError("unavailable")
        for _ in self._attempts(deadline):
            started = False
            try:
                with self._http.stream(
                    "POST", "/chat/completions", json=self._payload(messages, True), timeout=self._timeout(deadline)
                ) as response:
                    if response.status_code in RETRY_STATUS:
                        response.read()
                        last = LLMError(f"http_{response.status_code}", response.text[:200])
                        continue
                    if response.status_code >= 400:
                        response.read()
                        raise LLMError(f"http_{response.status_code}", response.text[:200])
                    for piece in _sse_pieces(response.iter_lines(), deadline):
                        started = True
                        yield piece
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


def _sse_pieces(lines: Iterator[str], deadline: float) -> Iterator[str]:
    finished = False
    for line in lines:
        if time.monotonic() > deadline:
            raise LLMError("timeout", "the answer deadline passed while streaming")
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
