"""What an OpenAI-compatible LLM adds, when one is configured (``RAG_LLM_BASE_URL``): drafted answers whose
citations are checked (:mod:`.drafting`), a verdict on whether the top passage answers (:mod:`.judge`),
follow-up questions rewritten as standalone ones (:mod:`.rewriter`); one client (:mod:`.client`) and the
prompt files (:mod:`.prompts`)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ..config import Settings
from ..extractive import ExtractiveGenerator
from .client import ChatClient
from .drafting import LLMGenerator, Reset
from .judge import Judge
from .prompts import PromptSet
from .rewordings import Rewordings
from .rewriter import Rewriter
from .titles import Titler

__all__ = ["ChatClient", "Judge", "LLMGenerator", "LLMParts", "PromptSet", "Reset", "Rewordings", "Rewriter", "Titler"]


@dataclass(frozen=True)
class LLMParts:
    """The LLM's stages, sharing one client."""

    client: ChatClient
    prompts: PromptSet
    drafter: LLMGenerator
    rewriter: Rewriter
    judge: Judge | None
    rewordings: Rewordings
    titler: Titler

    @classmethod
    def make(
        cls, settings: Settings, fallback: ExtractiveGenerator, transport: httpx.BaseTransport | None = None
    ) -> LLMParts | None:
        """The stages, when an LLM server is configured (None otherwise); the prompts are read here.
        ``transport``: how the client reaches the server (default: the network)."""
        if not settings.llm.base_url:
            return None
        client, prompts = ChatClient(settings.llm, transport), PromptSet.load(settings.answer.prompts_dir)
        faq = settings.answer.faq_name
        judge = Judge(client, prompts.judge, settings.llm, faq) if settings.llm.judge else None
        return cls(
            client,
            prompts,
            LLMGenerator(client, prompts, fallback, settings.answer),
            Rewriter(client, prompts.rewrite, settings.llm, faq),
            judge,
            Rewordings(client, prompts.rewordings, settings.llm, faq),
            Titler(client, prompts.gap_title, settings.llm, faq),
        )

    def close(self) -> None:
        self.client.close()
