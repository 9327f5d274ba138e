"""Scripted OpenAI-compatible Chat Completions servers for tests: over real HTTP (real SSE), or in process."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


class FakeLLM:
    """Each request takes the next script; with none queued it answers ``default``.

    Script keys: ``text`` (the answer), ``status`` (an HTTP error status), ``hang`` (seconds before
    answering), ``cut_after`` (stream that many pieces then drop the connection), ``garbage`` (not JSON),
    ``pause`` (seconds between streamed pieces), ``drip`` (send the whole response one byte at a time, this
    many seconds apart).
    """

    def __init__(self, default: str = "Réponse [1].") -> None:
        self.scripts: deque[dict[str, Any]] = deque()
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/health", lambda _: JSONResponse({"status": "ok"})),
            ]
        )

    def script(self, *items: dict[str, Any]) -> None:
        self.scripts.extend(items)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        step = self.scripts.popleft() if self.scripts else {"text": self.default}
        if step.get("hang"):
            await asyncio.sleep(step["hang"])
        if step.get("status"):
            return JSONResponse({"error": {"message": "scripted failure"}}, status_code=step["status"])
        text = step.get("text", self.default)
        if step.get("drip"):
            return StreamingResponse(_drip(step["drip"]), media_type="application/json")
        if not body.get("stream"):
            if step.get("garbage"):
                return PlainTextResponse("<html>not json</html>", media_type="application/json")
            return JSONResponse(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                }
            )
        words = [w + " " for w in text.split(" ")]
        words[-1] = words[-1].rstrip()

        async def events():
            for i, word in enumerate(words):
                if step.get("cut_after") is not None and i == step["cut_after"]:
                    raise ConnectionError("scripted cut")  # the server drops the connection mid-stream
                if step.get("garbage"):
                    yield "data: {not json\n\n"
                    return
                chunk = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
                if step.get("pause"):
                    await asyncio.sleep(step["pause"])
            done = {
                "id": "x",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


async def _drip(pause: float):
    """One byte every ``pause`` seconds, for as long as the client listens: each read succeeds, none ends."""
    for _ in range(10_000):
        yield b" "
        await asyncio.sleep(pause)


class ScriptedTransport(httpx.MockTransport):
    """The same scripts as :class:`FakeLLM`, in process through ``httpx.MockTransport`` (no socket, no waiting):
    ``text``, ``status``, ``garbage`` and ``cut_after``. For the fast tier; timing faults need :class:`FakeLLM`."""

    def __init__(self, default: str = "Réponse [1].") -> None:
        self.scripts: deque[dict[str, Any]] = deque()
        self.default = default
        self.requests: list[dict[str, Any]] = []
        super().__init__(self._handle)

    def script(self, *items: dict[str, Any]) -> None:
        self.scripts.extend(items)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        step = self.scripts.popleft() if self.scripts else {"text": self.default}
        if step.get("status"):
            return httpx.Response(step["status"], json={"error": {"message": "scripted failure"}})
        text = step.get("text", self.default)
        if not body.get("stream"):
            if step.get("garbage"):
                return httpx.Response(200, text="<html>not json</html>")
            message = {"role": "assistant", "content": text}
            return httpx.Response(200, json={"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
        words = [w + " " for w in text.split(" ")]
        words[-1] = words[-1].rstrip()
        events = [{"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]} for word in words]
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        lines = [f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events] + ["data: [DONE]\n\n"]
        if step.get("garbage"):
            lines = ["data: {not json\n\n"]
        return httpx.Response(200, stream=_Pieces(lines, step.get("cut_after")), headers=SSE)


SSE = {"content-type": "text/event-stream"}


class _Pieces(httpx.SyncByteStream):
    """A response body sent piece by piece, cut (a read error) after ``cut_after`` pieces when given."""

    def __init__(self, lines: list[str], cut_after: int | None) -> None:
        self.lines, self.cut_after = lines, cut_after

    def __iter__(self):
        for i, line in enumerate(self.lines):
            if self.cut_after is not None and i == self.cut_after:
                raise httpx.ReadError("scripted cut")
            yield line.encode()
