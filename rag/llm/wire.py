"""What OpenAI-compatible servers send back, read the same way whichever server it is: the answer's text from a
whole response or from a stream of events, without the model's reasoning, and whether the answer is complete.

Servers differ: vLLM (and the Albert API in front of it) ends a failed stream with an ``error`` event and then
``[DONE]``; llama.cpp sends an ``error:`` line; reasoning models put their thinking in ``reasoning`` or
``reasoning_content`` (Ollama, vLLM, llama.cpp), inside ``<think>…</think>`` in the content (templates without a
reasoning parser), or as ``thinking`` parts of a list content (Mistral's Magistral).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from rag.errors import LLMError

_OPEN, _CLOSE = "<think>", "</think>"
_THOUGHT = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts whose ``text`` parts are joined (``thinking``
    parts are the model's reasoning, never the answer)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise LLMError("malformed", "the answer's content is neither text nor a list of parts")


def without_thinking(text: str) -> str:
    """The text without ``<think>…</think>`` blocks (an unclosed one runs to the end); text before a lone
    ``</think>`` is reasoning too (templates that open the block in the prompt)."""
    if _CLOSE in text and _OPEN not in text.split(_CLOSE, 1)[0]:
        text = text.rsplit(_CLOSE, 1)[1]
    return _THOUGHT.sub("", text).strip()


def whole(body: str, cut_ok: bool) -> str:
    """The answer in a non-streamed response. A response cut at ``max_tokens`` (``finish_reason: length``) is a
    :class:`LLMError` unless ``cut_ok`` (a verdict's first word is enough)."""
    try:
        choice = json.loads(body)["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMError("malformed", body[:200]) from None
    if not isinstance(message, dict):
        raise LLMError("malformed", "no message in the answer")
    text = without_thinking(text_of(message.get("content")))
    if choice.get("finish_reason") == "length" and not (cut_ok and text):
        raise LLMError("length", "the answer was cut at max_tokens")
    return text


def events(lines: Iterator[str]) -> Iterator[tuple[str, str | None]]:
    """``(text, finish_reason)`` for each event of a stream, until ``[DONE]``; an error event is a
    :class:`LLMError`, wherever it comes."""
    for line in lines:
        if line.startswith("error:"):  # llama.cpp's error line
            raise LLMError("server_error", line[6:].strip()[:200])
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise LLMError("malformed", data[:200]) from None
        if not isinstance(chunk, dict):
            raise LLMError("malformed", data[:200])
        if chunk.get("error"):  # vLLM, Albert, Ollama: an error event, often followed by [DONE]
            error = chunk["error"]
            detail = error.get("message") if isinstance(error, dict) else error
            raise LLMError("server_error", str(detail)[:200])
        choices = chunk.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        delta = choice.get("delta") or {}
        yield text_of(delta.get("content") if isinstance(delta, dict) else None), choice.get("finish_reason")


def pieces(lines: Iterator[str]) -> Iterator[str]:
    """The answer's pieces, reasoning left out. A stream that ends without a finish reason, or cut at
    ``max_tokens``, is a :class:`LLMError`: a half answer is never taken for a whole one."""
    thinking = ThinkingFilter()
    finish = None
    for text, reason in events(lines):
        clean = thinking.feed(text)
        if clean:
            yield clean
        finish = reason or finish
    tail = thinking.flush()
    if tail:
        yield tail
    if finish is None:
        raise LLMError("stream_cut", "the stream ended before the answer was complete")
    if finish == "length":
        raise LLMError("length", "the answer was cut at max_tokens")


class ThinkingFilter:
    """Takes ``<think>…</think>`` out of a stream. The start is held until it is known not to open a block; a
    ``</think>`` after text was let through means the text was reasoning: a :class:`LLMError`."""

    def __init__(self) -> None:
        self.buffer, self.started, self.inside = "", False, False

    def feed(self, piece: str) -> str:
        self.buffer += piece
        out = []
        while self.buffer:
            if self.inside:
                end = self.buffer.find(_CLOSE)
                if end == -1:
                    self.buffer = self.buffer[-len(_CLOSE) :]  # keep what may be the start of the closing tag
                    break
                self.buffer, self.inside = self.buffer[end + len(_CLOSE) :].lstrip(), False
                continue
            if not self.started:
                head = self.buffer.lstrip()
                if len(head) < len(_OPEN) and _OPEN.startswith(head):
                    break  # too short to know yet
                self.started = True
                if head.startswith(_OPEN):
                    self.buffer, self.inside = head[len(_OPEN) :], True
                    continue
            if _CLOSE in self.buffer:
                raise LLMError("reasoning", "the model's reasoning came out as the answer")
            keep = _partial_tag(self.buffer)
            out.append(self.buffer[: len(self.buffer) - keep])
            self.buffer = self.buffer[len(self.buffer) - keep :]
            break
        return "".join(out)

    def flush(self) -> str:
        rest, self.buffer = ("" if self.inside else self.buffer), ""
        return rest


def _partial_tag(text: str) -> int:
    """How many characters at the end of ``text`` may begin ``</think>``."""
    for size in range(min(len(_CLOSE) - 1, len(text)), 0, -1):
        if _CLOSE.startswith(text[-size:]):
            return size
    return 0
