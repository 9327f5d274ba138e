"""The FAQ team's commands: ``rag feedback`` (votes), ``rag gaps`` (the gap report and its resolution),
``rag curation`` (the team's decisions as JSONL) and ``rag log`` (erasing users' questions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from rag.cli.common import (
    Db,
    IndexDir,
    JsonOut,
    app,
    console,
    emit,
    err,
    every_collection,
    friendly,
    make_settings,
    store_at,
)
from rag.config import Settings
from rag.errors import ConfigError
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from rag.store import existing_store

if TYPE_CHECKING:
    from rag.publishing.erasure import Erasure

feedback_app = typer.Typer(help="Feedback given on the web page and the API.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
@friendly
def feedback_export(
    out: Annotated[Path | None, typer.Option("--out", help="queries file to write (default: stdout)")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="feedback database (default: RAG_FEEDBACK_DB)")] = None,
) -> None:
    """Unhelpful and unanswered questions as an eval queries file, for a person to label."""
    rows = store_at(db).votes.to_label()
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    emit(text, out, f"{len(rows)} questions to {out}; fill in 'relevant' with the right entry ids")


@feedback_app.command("stats")
@friendly
def feedback_stats(
    db: Annotated[Path | None, typer.Option("--db", help="feedback database (default: RAG_FEEDBACK_DB)")] = None,
    as_json: JsonOut = False,
) -> None:
    """Helpful rate per day and the least helpful entries."""
    stats = store_at(db).votes.stats()
    if as_json:
        sys.stdout.write(json.dumps(stats, ensure_ascii=False) + "\n")
        return
    console.print(f"{stats['answers']} answers given, {stats['ratings']} rated")
    for title, key, first in (
        ("Helpful rate per day", "per_day", "day"),
        ("Least helpful entries", "least_helpful_entries", "id"),
    ):
        table = Table(title=title, title_justify="left")
        for column in (first, "ratings", "helpful rate"):
            table.add_column(column, justify="left" if column == first else "right")
        for row in stats[key]:
            table.add_row(row[first], str(row["ratings"]), f"{row['helpful_rate']:.0%}")
        console.print(table)


gaps_app = typer.Typer(
    help="The gap report: what users ask that the FAQ does not answer; resolve a gap to republish the FAQ.",
    invoke_without_command=True,
)
app.add_typer(gaps_app, name="gaps")
curation_app = typer.Typer(help="The team's curated entries, phrasings and out-of-scope questions (JSONL).")
app.add_typer(curation_app, name="curation")
log_app = typer.Typer(help="The question log: what is kept of users' questions.")
app.add_typer(log_app, name="log")


def _curator(db: Path | None, index_dir: Path | None = None):
    """The curation of the configured store and index (loaded)."""
    from rag.publishing.gap_resolution import Curator
    from rag.publishing.gaps import GapFinder

    settings = make_settings(index_dir)
    store = store_at(db)
    publisher = Publisher(QueryService(settings), store.curated.all)
    publisher.query.load()
    finder = GapFinder(publisher.query.embedder, settings.gaps, settings.index.embed_batch_size)
    return Curator(publisher, store, finder, settings.golden_path)


@gaps_app.callback()
@friendly
def gaps_cmd(
    ctx: typer.Context,
    as_json: JsonOut = False,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="also write the gaps to this CSV file")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="gaps shown")] = 20,
    db: Db = None,
    index_dir: IndexDir = None,
) -> None:
    """The gaps, those asked most first: size, reasons, example question, nearest entry."""
    if ctx.invoked_subcommand is not None:
        return
    curator = _curator(db, index_dir)
    found = curator.gaps(limit=limit)
    if csv_out:
        _write_gaps_csv(csv_out, found)
    if as_json:
        sys.stdout.write(json.dumps({"gaps": [g.model_dump() for g in found[:limit]], "count": len(found)}) + "\n")
        return
    table = Table(title=f"{len(found)} gaps, {sum(g.size for g in found)} questions", title_justify="left")
    for column in ("id", "size", "reasons", "kind", "question", "nearest entry"):
        table.add_column(column, justify="right" if column == "size" else "left", overflow="fold")
    for gap in found[:limit]:
        reasons = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in gap.reasons.items())
        near = gap.nearest_entries[0].question or gap.nearest_entries[0].id if gap.nearest_entries else ""
        kind = gap.kind.replace("_", " ")
        table.add_row(gap.id, str(gap.size), reasons, kind, escape(gap.title or gap.question), escape(near or ""))
    console.print(table)


def _write_gaps_csv(path: Path, found: list) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "size", "title", "question", "reasons", "kind", "first_seen", "last_seen", "nearest"])
        for gap in found:
            reasons = ";".join(f"{k}={n}" for k, n in gap.reasons.items())
            near = ";".join(n.id for n in gap.nearest_entries)
            row = [gap.id, gap.size, gap.title or "", gap.question, reasons, gap.kind, gap.first_seen, gap.last_seen]
            writer.writerow([*row, near])
    err.print(f"wrote {len(found)} gaps to {path}")


@gaps_app.command("resolve")
@friendly
def gaps_resolve(
    gap: Annotated[str, typer.Argument(help="the gap's id (or a logged question's answer id)")],
    action: Annotated[str, typer.Option("--action", help="new_entry, alternate, out_of_scope or dismiss")],
    question: Annotated[str | None, typer.Option("--question", help="new_entry: its question")] = None,
    answer: Annotated[str | None, typer.Option("--answer", help="new_entry: its answer")] = None,
    url: Annotated[str | None, typer.Option("--url", help="new_entry: its own page")] = None,
    entry_id: Annotated[str | None, typer.Option("--entry-id", help="alternate: the entry rephrased")] = None,
    db: Db = None,
    index_dir: IndexDir = None,
) -> None:
    """Resolve a gap and publish a new index version (a running service follows it)."""
    from pydantic import ValidationError

    from rag.publishing.gap_resolution import Resolution

    try:
        resolution = Resolution(action=action, question=question, answer=answer, url=url, entry_id=entry_id)
    except ValidationError:
        raise ConfigError("--action must be new_entry, alternate, out_of_scope or dismiss") from None
    done = _curator(db, index_dir).resolve(gap, resolution)
    sys.stdout.write(json.dumps(done, ensure_ascii=False) + "\n")


@curation_app.command("export")
@friendly
def curation_export(
    out: Annotated[Path | None, typer.Option("--out", help="JSONL file to write (default: stdout)")] = None,
    db: Db = None,
) -> None:
    """Every curated item as JSONL, for review in version control."""
    text = store_at(db).curated.all().to_jsonl()
    emit(text, out, f"{text.count(chr(10))} curated items to {out}")


@curation_app.command("import")
@friendly
def curation_import(
    path: Annotated[Path, typer.Argument(help="a JSONL export")], db: Db = None, index_dir: IndexDir = None
) -> None:
    """Keep the curated items of a JSONL export (each once) and publish a new index version with them."""
    from rag.corpus.curated import Curation

    curation = Curation.read(path)
    done = _curator(db, index_dir).import_(curation)
    sys.stdout.write(json.dumps(done, ensure_ascii=False) + "\n")


@log_app.command("erase")
@friendly
def log_erase(
    everything: Annotated[bool, typer.Option("--all", help="erase every logged question")] = False,
    before: Annotated[
        str | None, typer.Option("--before", help="erase those asked before this day (YYYY-MM-DD)")
    ] = None,
    containing: Annotated[
        str | None,
        typer.Option("--containing", help="erase these words wherever they were kept (log, spool, golden, curation)"),
    ] = None,
    db: Db = None,
    index_dir: IndexDir = None,
    as_json: JsonOut = False,
) -> None:
    """Erase users' words: logged questions and the votes on them, the spool; with --containing, every copy too
    (the golden eval file, curated questions, the index versions built with them: a new one is published)."""
    from datetime import UTC, datetime

    if not (everything or before or containing):
        raise ConfigError("say what to erase: --all, --before YYYY-MM-DD or --containing TEXT")
    if containing is not None and not containing.strip():
        raise ConfigError("--containing needs the words to erase")
    at = None
    if before:
        try:
            at = datetime.strptime(before, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise ConfigError(f"--before must be a day written YYYY-MM-DD, not {before!r}") from None
    settings = make_settings(index_dir)
    targets = {None: settings} if db is not None else every_collection(settings)
    done = {name: _erase(own, at, containing, db, alone=name is None) for name, own in targets.items()}
    if as_json:
        found = {name: d.as_dict() for name, d in done.items() if d is not None}
        sys.stdout.write(json.dumps(found.get(None, {}) if None in targets else {"collections": found}) + "\n")
        return
    for name, erased in done.items():
        if erased is None:
            err.print(f"the collection {name!r} has logged nothing yet", highlight=False)
            continue
        table = Table(title="Erased" + (f" ({name})" if name else ""), title_justify="left")
        table.add_column("where")
        table.add_column("erased", justify="right")
        for where, count in erased.as_dict().items():
            if where != "version":
                table.add_row(where.replace("_", " "), str(len(count) if isinstance(count, list) else count))
        console.print(table)
        err.print(f"erased {erased.answers} logged questions and the votes on them", highlight=False)
        if erased.version:
            err.print(f"published version {erased.version} without them", highlight=False)


def _erase(
    settings: Settings, at: float | None, containing: str | None, db: Path | None, alone: bool
) -> Erasure | None:
    """One FAQ's erasure: the FAQ served ``alone`` (its store, or the one ``db`` names, which must exist), or one
    collection of several (None when it has no store yet: it has logged nothing)."""
    from rag.publishing.erasure import Eraser

    store = store_at(db) if alone else existing_store(settings)
    if store is None:
        return None
    try:
        return Eraser(settings, store, lambda: Publisher(QueryService(settings), store.curated.all)).erase(
            at, containing
        )
    finally:
        store.close()
