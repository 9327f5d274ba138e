"""Follow-up questions in a conversation: "Et pour la radiologie ?" after a question about the hospital.

A follow-up that is elliptical (few content words, or opening with "et", "and", "what about"…) is also
searched joined to the previous question, and whichever reading the FAQ answers with more confidence
is kept. With an LLM, the LLM rewrites the follow-up as a standalone question first
(:mod:`rag.llm.rewriter`).
"""

from __future__ import annotations

import re

from rag.language.analyzer import FrenchAnalyzer

CONNECTOR = re.compile(
    r"^\W*(et|mais|ou|alors|aussi|sinon|pour|dans le cas|en cas|and|but|or|also|what about|how about|for)\b",
    re.IGNORECASE,
)
SHORT = 3  # a follow-up with this many content words or fewer leans on the question before it

_analyzer = FrenchAnalyzer()


def connected(question: str) -> bool:
    """It opens with a connector: "et", "and", "what about"…"""
    return bool(CONNECTOR.match(question))


def elliptical(question: str) -> bool:
    return len(_analyzer(question)) <= SHORT or connected(question)


def joined(previous: str, question: str) -> str:
    return f"{previous.strip()} {question.strip()}"
