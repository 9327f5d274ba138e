"""What an OpenAI-compatible LLM adds, when one is configured (``RAG_LLM_BASE_URL``): drafted answers whose
citations are checked (:mod:`.drafting`), a verdict on whether the top passage answers (:mod:`.judge`),
follow-up questions rewritten as standalone ones (:mod:`.rewriter`); one client (:mod:`.client`) and the
prompt files (:mod:`.prompts`)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from rag.answer.extractive import ExtractiveGenerator
from rag.config import Settings
from rag.egress import EgressPolicy
from rag.llm.client import ChatClient
from rag.llm.drafting import LLMGenerator, Reset
from rag.llm.judge import Judge
from rag.llm.prompts import PromptSet
from rag.llm.rewriter import Rewriter
from rag.llm.titles import Titler

__all__ = ["ChatClient", "Judge", "LLMGenerator", "LLMParts", "PromptSet", "Reset", "Rewriter", "Titler"]


@dataclass(frozen=True)
class LLMParts:
    """The LLM's stages, sharing one client."""

    client: ChatClient
    prompts: PromptSet
    drafter: LLMGenerator
    rewriter: Rewriter
    judge: Judge | None
    titler: Titler

    @classmethod
    def make(
        cls, settings: Settings, fallback: ExtractiveGenerator, transport: httpx.BaseTransport | None = None
    ) -> LLMParts | None:
        """The stages, when an LLM server is configured (None otherwise); the prompts are read here.
        ``transport``: how the client reaches the server (default: the network)."""
        if not settings.llm.base_url:
            return None
        client = ChatClient(settings.llm, transport, EgressPolicy.from_settings(settings))
        prompts = PromptSet.load(settings.answer.prompts_dir)
        faq = settings.answer.faq_name
        judge = Judge(client, prompts.judge, settings.llm, faq) if settings.llm.judge else None
        return cls(
            client,
            prompts,
            LLMGenerator(client, prompts, fallback, settings.answer),
            Rewriter(client, prompts.rewrite, settings.llm, faq),
            judge,
            Titler(client, prompts.gap_title, settings.llm, faq),
        )

    def close(self) -> None:
        self.client.close()
