"""Prompt templates kept as files in ``prompts/``, with ``${name}`` variables.

Templates are read and checked once; rendering with a missing variable is an error listing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

from rag.config import DEFAULT_PROMPTS
from rag.errors import PromptError
from rag.language.text import DONT_KNOW

LANGUAGE_NAMES = {"fr": "français", "en": "anglais (English)"}


def quote(text: str) -> str:
    """Text from users or from the FAQ, made unable to open or close the prompt's ``<tags>``."""
    return text.replace("<", "‹").replace(">", "›")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    template: Template

    @classmethod
    def read(cls, path: Path) -> PromptTemplate:
        if not path.exists():
            raise PromptError(f"prompt template {path} not found; set RAG_PROMPTS_DIR to the folder holding it")
        template = Template(path.read_text(encoding="utf-8"))
        if not template.is_valid():
            raise PromptError(f"prompt template {path} has a malformed ${{…}} placeholder")
        return cls(path.name, template)

    @property
    def variables(self) -> set[str]:
        return set(self.template.get_identifiers())

    def render(self, **values: object) -> str:
        missing = sorted(self.variables - set(values))
        if missing:
            raise PromptError(f"prompt {self.name} needs the variable(s) {', '.join(missing)}")
        return self.template.substitute({k: str(v) for k, v in values.items()})


@dataclass(frozen=True)
class PromptSet:
    """The system prompt, the user prompt, the layout of one numbered passage, the judge's question, the
    rewriting of follow-up questions, the questions about an entry that fit the confidence on a FAQ, and the eval's
    own: writing a test set (``generate``, ``near``) and grading an answer (``grade``); and the title proposed for
    a gap in the FAQ (``gap_title``)."""

    system: PromptTemplate
    user: PromptTemplate
    passage: PromptTemplate
    judge: PromptTemplate
    rewrite: PromptTemplate
    rewordings: PromptTemplate
    generate: PromptTemplate
    near: PromptTemplate
    grade: PromptTemplate
    gap_title: PromptTemplate

    @classmethod
    def load(cls, folder: Path) -> PromptSet:
        """The templates of ``folder``; one it lacks that came after the first five is the shipped one, so a
        folder of one's own written before keeps working."""
        folder = Path(folder)
        first = [folder / f"{name}.txt" for name in ("system", "user", "passage", "judge", "rewrite")]
        later = [
            folder / name if (folder / name).exists() else DEFAULT_PROMPTS / name
            for name in ("rewordings.txt", "generate.txt", "near.txt", "grade.txt", "gap_title.txt")
        ]
        return cls(*(PromptTemplate.read(path) for path in first + later))

    def messages(self, question: str, passages: list[tuple[str, str]], lang: str, faq_name: str) -> list[dict]:
        """Chat messages for a question and its numbered passages ``[(title, text), …]``."""
        blocks = "\n\n".join(
            self.passage.render(n=n, title=quote(title or ""), text=quote(text)).strip()
            for n, (title, text) in enumerate(passages, start=1)
        )
        common = {
            "language": LANGUAGE_NAMES.get(lang, LANGUAGE_NAMES["fr"]),
            "dont_know": DONT_KNOW.get(lang, DONT_KNOW["fr"]),
        }
        return [
            {"role": "system", "content": self.system.render(faq_name=faq_name, **common)},
            {"role": "user", "content": self.user.render(passages=blocks, question=quote(question), **common)},
        ]
