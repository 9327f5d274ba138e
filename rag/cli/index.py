"""``rag index``, ``rag sync`` and ``rag sources check``: building and publishing the FAQ's index."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rag.cli.common import (
    IndexDir,
    JsonOut,
    app,
    bar,
    build_with_progress,
    console,
    err,
    friendly,
    make_settings,
    publisher_for,
)
from rag.config import is_url


@app.command()
@friendly
def index(
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="FAQ file(s), web page(s) or sitemap(s); default: the Ségur FAQ"),
    ] = None,
    index_dir: IndexDir = None,
) -> None:
    """Build the index from FAQ sources (.txt export, .jsonl, .json, .csv, .md, .html, https:// pages, sitemaps)."""
    publisher = publisher_for(make_settings(index_dir, sources=source or None))
    if any(is_url(s) for s in publisher.sources):
        with contextlib.ExitStack() as stack:
            report = publisher.fetch_pages(bar(stack, "pages"))
        print_pages(report)
    build_with_progress(publisher)


def print_pages(report: Any) -> None:
    err.print(
        f"pages: {report.pages} read ({report.unchanged} unchanged), {len(report.problems)} problems", highlight=False
    )
    for problem in report.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)


@app.command()
@friendly
def sync(index_dir: IndexDir = None, as_json: JsonOut = False) -> None:
    """Read the FAQ's web pages again; publish a new version when they changed (only changed entries embedded)."""
    publisher = publisher_for(make_settings(index_dir))
    with contextlib.ExitStack() as stack:
        done = publisher.sync(bar(stack, "pages"), building=bar(stack, "embedding"))
    summary = {
        "pages": done.report.pages,
        "unchanged_pages": done.report.unchanged,
        "problems": done.report.problems,
        "published": done.published,
        "version": done.version,
        "added": done.added,
        "changed": done.changed,
        "removed": done.removed,
        "embedded": done.embedded,
    }
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
        return
    print_pages(done.report)
    if not done.published:
        console.print(f"nothing changed: version {done.version} stays in service", highlight=False)
        return
    table = Table(title=f"version {done.version}: {done.embedded} vectors embedded", title_justify="left")
    for column in ("added", "changed", "removed"):
        table.add_column(column, justify="right")
    table.add_row(str(len(done.added)), str(len(done.changed)), str(len(done.removed)))
    console.print(table)


sources_app = typer.Typer(help="The FAQ's sources: their quality.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")


@sources_app.command("check")
@friendly
def sources_check(index_dir: IndexDir = None, as_json: JsonOut = False) -> None:
    """Duplicates, conflicts, empty or overlong answers, pages that gave nothing, stale pages."""
    publisher = publisher_for(make_settings(index_dir))
    publisher.query.load()
    findings = publisher.source_report()
    if as_json:
        sys.stdout.write(json.dumps({"findings": [f.as_dict() for f in findings]}, ensure_ascii=False) + "\n")
        return
    if not findings:
        console.print("no finding: no duplicate, conflict, empty or overlong answer, every page read")
        return
    table = Table(title=f"{len(findings)} findings", title_justify="left")
    for column in ("kind", "entries or page", "detail"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        table.add_row(finding.kind, escape(", ".join(finding.ids)), escape(finding.detail))
    console.print(table)
