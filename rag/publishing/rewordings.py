"""Questions about FAQ entries written by the LLM, as users would ask them, to fit the confidence on the FAQ
(:mod:`rag.publishing.selfcalibration`): closer to users' wording than the questions made offline
(:mod:`rag.publishing.probes`). One bounded call per entry; an entry whose call fails gets the offline questions
instead."""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

from rag.config import LLMSettings
from rag.errors import LLMError
from rag.indexing.faq_index import FaqIndex
from rag.llm.client import ChatClient
from rag.llm.prompts import PromptTemplate, quote
from rag.publishing.probes import Probe, ProbeWriter

log = logging.getLogger("rag.llm")
PER_ENTRY = 3
_LEAD = re.compile(r"^\s*(?:[-•*]|\d+[.)])\s*")


class Rewordings:
    """Writes :data:`PER_ENTRY` questions about each entry; called as ``rewordings(index, entries)``."""

    def __init__(self, client: ChatClient, prompt: PromptTemplate, settings: LLMSettings, faq_name: str) -> None:
        self.client, self.prompt, self.settings, self.faq_name = client, prompt, settings, faq_name

    def __call__(self, index: FaqIndex, entries: list[int]) -> list[Probe]:
        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="rewordings") as pool:
            written = list(pool.map(lambda e: self._entry(index, e), entries))
        failed = [e for e, probes in zip(entries, written) if not probes]
        if failed:
            log.warning(
                "the LLM wrote no questions for %d of %d entries: made offline instead", len(failed), len(entries)
            )
        offline = ProbeWriter(index).write(failed) if failed else []
        return [p for probes in written for p in probes] + offline

    def _entry(self, index: FaqIndex, entry: int) -> list[Probe]:
        found = index.entries[entry]
        content = self.prompt.render(
            faq_name=self.faq_name, title=quote(found.question or ""), text=quote(found.answer[:4000]), count=PER_ENTRY
        )
        deadline = time.monotonic() + self.settings.total_timeout
        try:
            reply = self.client.complete([{"role": "user", "content": content}], deadline, max_tokens=256)
        except LLMError:
            return []
        lines = [_LEAD.sub("", line).strip() for line in reply.splitlines()]
        questions = [line for line in lines if 8 <= len(line) <= 300][:PER_ENTRY]
        return [Probe(entry, text, "llm") for text in dict.fromkeys(questions)]
