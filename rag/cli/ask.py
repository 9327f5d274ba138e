"""``rag search`` and ``rag ask``: questions from the command line."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from rag.cli.common import IndexDir, JsonOut, K, app, console, friendly, loaded, unset_out
from rag.errors import ConfigError
from rag.models import Question
from rag.query.service import listen_address


@app.command()
@friendly
def search(
    questions: Annotated[list[str], typer.Argument(help="one or more questions")],
    k: K = None,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="FIELD=VALUE, e.g. theme=Internet (repeat: any of)")
    ] = None,
    index_dir: IndexDir = None,
    as_json: JsonOut = False,
) -> None:
    """Search the FAQ for each question."""
    service = loaded(index_dir)
    filters = parse_filters(filter_ or [])
    for question in questions:
        result = service.search(Question(query=question, k=k, filters=filters), listen_address(service.settings))
        if as_json:
            payload = result.model_dump(include={"query", "abstained", "outcome", "confidence", "results"})
            for hit in payload["results"]:  # the retrieval internals stay out
                hit.pop("dense_score", None)
                hit.pop("bm25_score", None)
                unset_out(hit)
            sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
            continue
        table = Table(title=escape(question), show_lines=False, title_justify="left")
        for column in ("#", "score", "id", "passage", "link"):
            table.add_column(column, overflow="fold")
        if result.outcome == "declined":
            console.print(f"[yellow]{escape(question)}[/]: no relevant entry (confidence {result.confidence:.3f})")
            continue
        if result.outcome == "suggested":
            table.title = escape(
                f"{question} — not sure the FAQ answers it (confidence {result.confidence:.3f}); nearest:"
            )
        for rank, hit in enumerate(result.results, start=1):
            text = (hit.question + " — " if hit.question else "") + hit.text
            passage = text[:160] + ("…" if len(text) > 160 else "")
            table.add_row(str(rank), f"{hit.score:.3f}", escape(hit.id), escape(passage), escape(hit.url or ""))
        console.print(table)


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """``["couloir=Biologie", "couloir=Officine"]`` → ``{"couloir": ["Biologie", "Officine"]}``."""
    filters: dict[str, list[str]] = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            raise ConfigError(f"--filter {item!r}: write FIELD=VALUE, e.g. --filter theme=Internet")
        filters.setdefault(field.strip(), []).append(value.strip())
    return filters


@app.command()
@friendly
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    k: K = None,
    index_dir: IndexDir = None,
    as_json: JsonOut = False,
) -> None:
    """Answer a question with numbered citations to FAQ entries."""
    service = loaded(index_dir)
    result = service.ask(Question(query=question, k=k), listen_address(service.settings))
    if as_json:
        payload = result.model_dump(exclude={"citations": {"__all__": {"question"}}})
        for item in payload["citations"] + payload["passages"]:
            unset_out(item)
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return
    console.print(escape(result.answer), highlight=False)
    if result.note:
        console.print(f"[dim]{escape(result.note)}[/]", highlight=False)
    if result.citations:
        console.print("\n[bold]Sources[/]")
        for citation in result.citations:
            console.print(escape(f"  [{citation.n}] {citation.url}"), highlight=False)
