"""The title the LLM proposes for a gap in the FAQ: the question a new entry would answer, written from the
questions users asked. One bounded call; None when it fails (the gap keeps its most central question)."""

from __future__ import annotations

import time

from rag.config import LLMSettings
from rag.errors import LLMError
from rag.llm.client import ChatClient
from rag.llm.prompts import PromptTemplate, quote

MAX_QUESTIONS = 8


class Titler:
    def __init__(self, client: ChatClient, prompt: PromptTemplate, settings: LLMSettings, faq_name: str) -> None:
        self.client, self.prompt, self.settings, self.faq_name = client, prompt, settings, faq_name

    def title(self, questions: list[str]) -> str | None:
        listed = "\n".join(f"- {quote(q)}" for q in questions[:MAX_QUESTIONS])
        content = self.prompt.render(faq_name=self.faq_name, questions=listed)
        deadline = time.monotonic() + self.settings.total_timeout
        try:
            reply = self.client.complete([{"role": "user", "content": content}], deadline, max_tokens=80)
        except LLMError:
            return None
        line = next((s.strip(' -•*"«»') for s in reply.splitlines() if s.strip()), "")
        return line[:200] if len(line) >= 8 else None
