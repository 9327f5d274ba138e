"""A second opinion from the LLM, when one is configured: does the top passage answer the question?

One short call with a strict output format (OUI / NON), bounded by its own deadline. Its verdict moves
the confidence by a fixed amount of log-odds, and it is asked only when that can change the decision.
"""

from __future__ import annotations

import re
import time

from rag.config import LLMSettings
from rag.errors import LLMError
from rag.indexing.calibration import log_odds, probability
from rag.llm.client import ChatClient
from rag.llm.prompts import PromptTemplate, quote
from rag.models import Hit

_VERDICT = re.compile(r"^\W*(oui|non|yes|no)\b", re.IGNORECASE)


class Judge:
    def __init__(self, client: ChatClient, prompt: PromptTemplate, settings: LLMSettings, faq_name: str) -> None:
        self.client, self.prompt, self.settings, self.faq_name = client, prompt, settings, faq_name
        self._resting_until = 0.0  # after a failed call the LLM is left alone for a while

    def useful(self, confidence: float, threshold: float) -> bool:
        """Whether a verdict could move ``confidence`` across ``threshold`` (and the LLM is answering lately)."""
        if time.monotonic() < self._resting_until:
            return False
        return abs(log_odds(confidence) - log_odds(threshold)) < self.settings.judge_weight

    def verdict(self, question: str, hit: Hit) -> str:
        """``yes``, ``no``, or the reason there is no verdict (``timeout``, ``malformed``, ``http_500``…)."""
        content = self.prompt.render(
            faq_name=self.faq_name, question=quote(question), title=quote(hit.question or ""), text=quote(hit.text)
        )
        deadline = time.monotonic() + min(self.settings.judge_timeout, self.settings.total_timeout)
        try:
            reply = self.client.complete([{"role": "user", "content": content}], deadline, max_tokens=3, cut_ok=True)
        except LLMError as exc:
            # a slow or failing LLM must not slow every search down: ask again only after a rest
            self._resting_until = time.monotonic() + self.settings.judge_rest
            return exc.reason
        match = _VERDICT.match(reply)
        if not match:
            return "malformed"
        return "yes" if match.group(1).lower() in {"oui", "yes"} else "no"

    def adjust(self, confidence: float, verdict: str) -> float:
        if verdict not in {"yes", "no"}:
            return confidence
        shift = self.settings.judge_weight if verdict == "yes" else -self.settings.judge_weight
        return probability(log_odds(confidence) + shift)
