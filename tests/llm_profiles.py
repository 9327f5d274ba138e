"""Stand-ins for the LLM servers teams run — vLLM, llama.cpp's ``llama-server``, Ollama's ``/v1``, the Albert API
(OpenGateLLM) and Mistral's API — each as strict as the real one, from their source and documentation:

- vLLM answers 404 to a model it does not serve, 400 to a prompt longer than its context, and ends a stream
  that fails midway with an ``error`` event then ``[DONE]``; a thinking model (Qwen3) thinks unless
  ``chat_template_kwargs.enable_thinking`` is false, its reasoning in ``reasoning_content``.
- llama.cpp takes any model name, sends a non-streamed answer only once all of it is written, refuses a prompt
  longer than ``-c`` (400 ``exceed_context_size_error``), says a stream error on an ``error:`` line; with
  ``--reasoning-format none`` the thinking stays in the content between ``<think>`` tags.
- Ollama answers 404 to a model not pulled, thinks by default (``reasoning`` deltas) unless
  ``reasoning_effort`` is ``none``, and cuts a prompt longer than its context silently.
- Albert wants a key, limits requests per minute (429 with no ``Retry-After``) and says when it is busy
  (503, ``Retry-After: 10``); a failing stream is vLLM's behind it.
- Mistral wants a key, refuses unknown fields (422 ``extra_forbidden``: ``seed``; it reads ``random_seed``),
  answers 400 to an unknown model, and its reasoning model (Magistral) answers ``content`` as a list of parts,
  its thinking in a ``thinking`` part — it cannot be turned off.

Each request takes the next script (``text``, ``status`` with ``retry_after``, ``fail_after`` pieces, ``hang``);
with none queued it answers ``default``. Tokens are words; the thinking spends :data:`THOUGHT` of them first.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

THOUGHT = ("Je", "réfléchis", "à", "la", "question", "posée", "avant", "de", "répondre", "brièvement") * 3
MISTRAL_FIELDS = {
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed", "response_format",
    "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n", "safe_prompt", "prompt_mode",
    "parallel_tool_calls", "prediction",
}  # fmt: skip


@dataclass
class Profile:
    name: str
    models: tuple[str, ...]
    any_model: bool = False
    key: str | None = None
    thinks: bool = False  # the served model thinks by default
    thinking: str = "reasoning_content"  # where: reasoning_content, reasoning, tags, parts
    context: int = 8192
    truncates: bool = False  # a prompt too long is cut silently (else refused)
    buffered: float = 0.0  # seconds before a non-streamed answer, sent all at once
    stream_error: str = "event_then_done"  # event_then_done, error_line, event
    owner: str = "vllm"  # owned_by in GET /v1/models


PROFILES = {
    "vllm": Profile("vllm", ("Qwen/Qwen3-8B",), thinks=True, context=4096),
    "llamacpp": Profile(
        "llamacpp", ("qwen3-4b-q4_k_m.gguf",), any_model=True, thinks=True, thinking="tags", context=4096,
        buffered=1.5, stream_error="error_line", owner="llamacpp",
    ),
    "ollama": Profile(
        "ollama", ("qwen3:4b",), thinks=True, thinking="reasoning", context=4096, truncates=True, stream_error="event",
        owner="library",
    ),
    "albert": Profile("albert", ("albert-large",), key="albert-key", context=16000, owner="Albert API"),
    "mistral": Profile(
        "mistral", ("mistral-small-latest", "magistral-small-latest"), key="mistral-key", thinking="parts",
        owner="mistralai",
    ),
}  # fmt: skip


@dataclass
class LLMServer:
    profile: Profile
    default: str = "Réponse [1]."
    scripts: deque[dict[str, Any]] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    truncated: int = 0  # prompts cut silently

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models),
                Route("/health", lambda _: JSONResponse({"status": "ok"})),
            ]
        )

    def script(self, *items: dict[str, Any]) -> None:
        self.scripts.extend(items)

    def reset(self) -> None:
        self.scripts.clear()
        self.requests.clear()
        self.truncated = 0

    def _refusal(self, request: Request, body: dict[str, Any]) -> Response | None:
        p = self.profile
        if p.key and request.headers.get("authorization") != f"Bearer {p.key}":
            if p.name == "mistral":
                return JSONResponse({"message": "Unauthorized", "request_id": "x"}, status_code=401)
            return JSONResponse({"detail": "Invalid authentication scheme."}, status_code=401)
        if p.name == "mistral":
            extra = sorted(set(body) - MISTRAL_FIELDS)
            if extra:
                detail = [{"type": "extra_forbidden", "loc": ["body", f], "msg": "Extra inputs are not permitted"}
                          for f in extra]  # fmt: skip
                error = {"object": "error", "message": {"detail": detail}, "type": "invalid_request_message_error"}
                return JSONResponse(error, status_code=422)
        model = body.get("model")
        if not p.any_model and model not in p.models:
            return _unknown_model(p.name, str(model))
        prompt = sum(len(str(m.get("content") or "")) for m in body.get("messages", [])) // 4
        if prompt + int(body.get("max_tokens") or 0) > p.context:
            if p.truncates:
                self.truncated += 1
            elif p.name == "llamacpp":
                message = "the request exceeds the available context size, try increasing it"
                error = {"code": 400, "message": message, "type": "exceed_context_size_error", "n_ctx": p.context}
                return JSONResponse({"error": error}, status_code=400)
            else:
                message = f"This model's maximum context length is {p.context} tokens. However, you requested more."
                return JSONResponse({"error": {"message": message, "type": "BadRequestError", "code": 400}}, 400)
        return None

    async def models(self, request: Request) -> Response:
        if self.profile.key and request.headers.get("authorization") != f"Bearer {self.profile.key}":
            return JSONResponse({"detail": "Invalid authentication scheme."}, status_code=401)
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": m, "object": "model", "owned_by": self.profile.owner} for m in self.profile.models],
            }
        )

    def _thinks(self, body: dict[str, Any]) -> bool:
        p = self.profile
        if p.name == "mistral":
            return str(body.get("model", "")).startswith("magistral")  # cannot be turned off
        if not p.thinks:
            return False
        if p.name == "ollama":
            return body.get("reasoning_effort") != "none" and body.get("think") is not False
        return (body.get("chat_template_kwargs") or {}).get("enable_thinking") is not False

    async def chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": {"message": "invalid JSON", "code": 400}}, status_code=400)
        self.requests.append(body)
        refused = self._refusal(request, body)
        if refused is not None:
            return refused
        step = self.scripts.popleft() if self.scripts else {}
        if step.get("hang"):
            await asyncio.sleep(step["hang"])
        if step.get("status"):
            headers = {"Retry-After": str(step["retry_after"])} if step.get("retry_after") else {}
            return JSONResponse({"detail": step.get("detail", "scripted")}, step["status"], headers=headers)
        thinking = list(THOUGHT) if self._thinks(body) else []
        words = step.get("text", self.default).split(" ")
        budget = int(body.get("max_tokens") or 512)
        thought, answer = thinking[:budget], words[: max(budget - len(thinking), 0)]
        finish = "length" if len(thinking) + len(words) > budget else "stop"
        if not body.get("stream"):
            await asyncio.sleep(self.profile.buffered)
            return JSONResponse(self._whole(body, thought, answer, finish))
        return StreamingResponse(
            self._events(thought, answer, finish, step.get("fail_after")), media_type="text/event-stream"
        )

    def _whole(self, body: dict[str, Any], thought: list[str], answer: list[str], finish: str) -> dict[str, Any]:
        text, kind = " ".join(answer), self.profile.thinking
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thought and kind == "tags":
            message["content"] = (
                f"<think>\n{' '.join(thought)}\n</think>\n\n{text}" if answer else "<think>\n" + " ".join(thought)
            )
        elif thought and kind == "parts":
            thinking = {"type": "thinking", "thinking": [{"type": "text", "text": " ".join(thought)}]}
            message["content"] = [thinking, {"type": "text", "text": text}]
        elif thought:
            message[kind] = " ".join(thought)
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return {"id": "x", "object": "chat.completion", "model": body.get("model"), "choices": [choice]}

    def _delta(self, word: str, thinking: bool) -> dict[str, Any]:
        kind = self.profile.thinking
        if thinking and kind == "parts":
            return {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": word}]}]}
        if thinking and kind != "tags":
            return {kind: word, "content": None if kind == "reasoning_content" else ""}
        return {"content": [{"type": "text", "text": word}] if kind == "parts" else word}

    async def _events(self, thought: list[str], answer: list[str], finish: str, fail_after: int | None):
        kind = self.profile.thinking
        pieces: list[tuple[str, bool]] = [(w + " ", True) for w in thought]
        if thought and kind == "tags":
            pieces = [("<think>\n", False), *((w + " ", False) for w in thought)]
            pieces += [("\n</think>\n\n", False)] if answer else []
        pieces += [(w + (" " if i < len(answer) - 1 else ""), False) for i, w in enumerate(answer)]
        for i, (word, thinking) in enumerate(pieces):
            if fail_after is not None and i == fail_after:
                yield self._stream_error()
                return
            yield _event({"choices": [{"index": 0, "delta": self._delta(word, thinking), "finish_reason": None}]})
        yield _event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}) + "data: [DONE]\n\n"

    def _stream_error(self) -> str:
        error = {"message": "CUDA out of memory", "type": "InternalServerError", "code": 500}
        if self.profile.stream_error == "error_line":
            return f"error: {json.dumps({'code': 500, 'message': 'slot failed', 'type': 'server_error'})}\n\n"
        if self.profile.stream_error == "event":
            return _event({"error": error})
        return _event({"error": error}) + "data: [DONE]\n\n"


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _unknown_model(server: str, model: str) -> Response:
    if server == "ollama":
        error = {"message": f'model "{model}" not found, try pulling it first', "type": "api_error"}
        return JSONResponse({"error": error}, status_code=404)
    if server == "albert":
        return JSONResponse({"detail": "Model not found."}, status_code=404)
    if server == "mistral":
        body = {"object": "error", "message": f"Invalid model: {model}", "type": "invalid_model", "code": "1500"}
        return JSONResponse(body, status_code=400)
    error = {"message": f"The model `{model}` does not exist.", "type": "NotFoundError", "param": "model", "code": 404}
    return JSONResponse({"error": error}, status_code=404)
