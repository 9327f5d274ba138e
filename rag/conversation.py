"""Follow-up questions in a conversation: "Et pour la radiologie ?" after a question about the hospital.

A follow-up that is elliptical (few content words, or opening with "et", "and", "what about"…) is also
searched joined to the previous question, and whichever reading the FAQ answers with more confidence
is kept. With an LLM, the LLM rewrites the follow-up as a standalone question first.
"""

from __future__ import annotations

import re
import time

from .analyzer import FrenchAnalyzer
from .config import LLMSettings
from .errors import LLMError
from .llm import ChatClient
from .prompts import PromptTemplate, quote

CONNECTOR = re.compile(
    r"^\W*(et|mais|ou|alors|aussi|sinon|pour|dans le cas|en cas|and|but|or|also|what about|how about|for)\b",
    re.IGNORECASE,
)
SHORT = 3  # a follow-up with this many content words or fewer leans on the question before it

_analyzer = FrenchAnalyzer()


def elliptical(question: str) -> bool:
    return len(_analyzer(question)) <= SHORT or bool(CONNECTOR.match(question))


def joined(previous: str, question: str) -> str:
    return f"{previous.strip()} {question.strip()}"


class Rewriter:
    """Asks the LLM for the follow-up as a standalone question (one short call, bounded like a verdict)."""

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
