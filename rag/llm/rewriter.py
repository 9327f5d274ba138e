"""A follow-up question rewritten by the LLM as a standalone question ("Et pour la radiologie ?" after a
question about the hospital → the question about radiology), before it is searched."""

from __future__ import annotations

import time

from rag.config import LLMSettings
from rag.errors import LLMError
from rag.llm.client import ChatClient
from rag.llm.prompts import PromptTemplate, quote


class Rewriter:
    """One short call, bounded like a verdict; no rewriting when the LLM gives none in time."""

    def __init__(self, client: ChatClient, prompt: PromptTemplate, settings: LLMSettings, faq_name: str) -> None:
        self.client, self.prompt, self.settings, self.faq_name = client, prompt, settings, faq_name

    def rewrite(self, previous: str, question: str) -> str | None:
        """The standalone question, or None when the LLM gives none in time."""
        content = self.prompt.render(faq_name=self.faq_name, previous=quote(previous), question=quote(question))
        deadline = time.monotonic() + min(self.settings.judge_timeout, self.settings.total_timeout)
        try:
            reply = self.client.complete([{"role": "user", "content": content}], deadline, max_tokens=96)
        except LLMError:
            return None
        line = next((line.strip() for line in reply.splitlines() if line.strip()), "")
        return line[:500] or None
