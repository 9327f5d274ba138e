"""``rag eval --judge``: the configured LLM grades every answer given — is it correct and complete according to
the passages it cites, is every claim found in them — several times, at temperature 0 with a fixed seed for
each vote where the server takes one; the majority verdict counts and the agreement of the votes is reported.
Every reply is cached by (question, answer, passages, model, prompt, vote), so that a run made again gives the
same scores without a call. When the LLM stops answering, what was graded is kept and the report says so.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import LLMError
from rag.evaluation.run import EvalQuery, Outcome
from rag.language.analyzer import fold
from rag.llm.client import ChatClient
from rag.llm.prompts import PromptTemplate, quote

CRITERIA = ("correct", "complete", "supported")
_NAMES = {"correcte": "correct", "complete": "complete", "fondee": "supported"}
_LINE = re.compile(r"^\W*(correcte|complete|fondee)\W*[:=]\s*(oui|non|yes|no)\b")
STOP_AFTER = 3  # failed calls in a row after which the LLM is taken to be away


def parse(reply: str) -> dict[str, bool] | None:
    """The three verdicts of a reply, or None when it is not in the asked form."""
    found = {}
    for line in fold(reply).splitlines():
        match = _LINE.match(line.strip())
        if match:
            found[_NAMES[match.group(1)]] = match.group(2) in {"oui", "yes"}
    return found if set(found) == set(CRITERIA) else None


class Cache:
    """Replies by key, kept in a JSON-lines file; each new one appended (and flushed) as it comes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.replies: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.replies[row["key"]] = row["reply"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a crash

    def put(self, key: str, reply: str) -> None:
        self.replies[key] = reply
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "reply": reply}, ensure_ascii=False) + "\n")


@dataclass
class Grade:
    verdicts: dict[str, bool]
    agreement: float  # the share of votes agreeing with the majority, over the criteria


class Grader:
    def __init__(
        self,
        client: ChatClient,
        prompt: PromptTemplate,
        faq_name: str,
        cache: Cache,
        votes: int = 3,
        seed: int = 0,
        timeout: float = 60.0,
    ) -> None:
        self.client, self.prompt, self.faq_name, self.cache = client, prompt, faq_name, cache
        self.votes, self.seed, self.timeout = votes, seed, timeout
        self.calls = 0  # made to the LLM (not taken from the cache)

    def grade(self, question: str, answer: str, passages: Sequence[str]) -> Grade | None:
        """The majority verdicts of the votes in the asked form (None when none is); :class:`LLMError` when the
        LLM fails."""
        numbered = "\n\n".join(f"[{n}] {quote(text)}" for n, text in enumerate(passages, start=1))
        content = self.prompt.render(
            faq_name=self.faq_name, question=quote(question), passages=numbered, answer=quote(answer)
        )
        ballots = []
        for vote in range(self.votes):
            key = hashlib.sha256(json.dumps([self.client.config.model, content, self.seed + vote]).encode()).hexdigest()
            reply = self.cache.replies.get(key)
            if reply is None:
                deadline = time.monotonic() + self.timeout
                reply = self.client.complete(
                    [{"role": "user", "content": content}],
                    deadline,
                    max_tokens=60,
                    cut_ok=True,
                    temperature=0.0,
                    seed=self.seed + vote,
                )
                self.calls += 1
                self.cache.put(key, reply)
            parsed = parse(reply)
            if parsed is not None:
                ballots.append(parsed)
        if not ballots:
            return None
        verdicts = {c: sum(b[c] for b in ballots) * 2 > len(ballots) for c in CRITERIA}
        agreement = sum(sum(b[c] == verdicts[c] for b in ballots) / len(ballots) for c in CRITERIA) / len(CRITERIA)
        return Grade(verdicts, agreement)


def grade_run(
    grader: Grader,
    queries: Sequence[EvalQuery],
    outcomes: Sequence[Outcome],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], list[Grade | None]]:
    """The share of answers graded correct, complete and supported, the votes' agreement, and how many answers
    were graded, left malformed or left ungraded (the LLM away); and each answer's grade."""
    answered = [i for i, o in enumerate(outcomes) if not o.abstained and o.answer]
    grades: list[Grade | None] = [None] * len(outcomes)
    failures, stopped, malformed = 0, None, 0
    for done, i in enumerate(answered, start=1):
        try:
            grades[i] = grader.grade(queries[i].query, outcomes[i].answer, outcomes[i].passages)
            malformed += grades[i] is None
            failures = 0
        except LLMError as exc:
            failures += 1
            if failures >= STOP_AFTER:
                stopped = f"the LLM failed {failures} times in a row ({exc.reason})"
                break
        if progress:
            progress(done, len(answered))
    graded = [g for g in grades if g is not None]
    report: dict[str, Any] = {
        "judge_answers": len(answered),
        "judge_graded": len(graded),
        "judge_malformed": malformed,
        "judge_calls": grader.calls,
        "judge_votes": grader.votes,
    }
    if graded:
        for criterion in CRITERIA:
            report[f"judge_{criterion}"] = round(sum(g.verdicts[criterion] for g in graded) / len(graded), 4)
        report["judge_agreement"] = round(sum(g.agreement for g in graded) / len(graded), 4)
    if stopped:
        report["judge_stopped"] = f"{stopped}: {len(graded)} of {len(answered)} answers graded, the rest not"
    return report, grades
