"""A scripted OpenAI-compatible embeddings server for tests (real HTTP), giving the hash embedder's vectors."""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .conftest import HashEmbedder


class FakeEmbeddings:
    """Each request takes the next script; with none queued it answers the vectors.

    Script keys: ``status`` (answer this HTTP status), ``retry_after`` (its Retry-After header), ``garbage``
    (a body that is not JSON), ``drop`` (one vector fewer than asked), ``drip`` (send the answer one byte at a
    time, this many seconds apart). ``refuse`` names request fields answered with a 400 naming them, as
    OpenAI's API does for arguments it does not know.
    """

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.embedder = HashEmbedder()
        self.scripts: deque[dict[str, Any]] = deque()
        self.refuse = set(refuse)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.ports: list[int] = []  # the client's port of each request: one per connection
        self.app = Starlette(
            routes=[
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/health", lambda _: JSONResponse({"status": "ok"})),
            ]
        )

    def script(self, *items: dict[str, Any]) -> None:
        self.scripts.extend(items)

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.ports.append(request.client.port if request.client else 0)
        for name in sorted(self.refuse & set(body)):
            message = f"Unrecognized request argument supplied: {name}"
            return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, 400)
        step = self.scripts.popleft() if self.scripts else {}
        if "status" in step:
            headers = {"Retry-After": str(step["retry_after"])} if "retry_after" in step else None
            return JSONResponse({"error": {"message": "scripted failure"}}, step["status"], headers=headers)
        if step.get("garbage"):
            return Response("<html>oops</html>", media_type="text/html")
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        vectors = self.embedder.encode_passages(texts)[: len(texts) - 1 if step.get("drop") else None]
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(v, as_base64)}
            for i, v in reversed(list(enumerate(vectors)))  # out of order: the index field says where each goes
        ]
        payload = {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": 1}}
        if "drip" in step:
            return StreamingResponse(_drip(JSONResponse(payload).body, step["drip"]), media_type="application/json")
        return JSONResponse(payload)


def _encoded(vector: np.ndarray, as_base64: bool) -> str | list[float]:
    vector = vector.astype("<f4")
    return base64.b64encode(vector.tobytes()).decode() if as_base64 else [float(x) for x in vector]


async def _drip(body: bytes, pause: float):
    for byte in body:
        await asyncio.sleep(pause)
        yield bytes([byte])
