"""What every command shares: the app, its consoles, one-line errors, settings, progress bars and the services."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rag.config import Settings, load_settings
from rag.config.collections import Collections
from rag.corpus.curated import Curation
from rag.errors import ConfigError, RagError
from rag.indexing.manifest import CalibrationRecord
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from rag.store import Store, existing_store, make_store, sqlite_store

app = typer.Typer(help="Cited answers over FAQ corpora.", no_args_is_help=True, add_completion=False)
console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

IndexDir = Annotated[Path | None, typer.Option("--index-dir", help="index folder (default: RAG_INDEX_DIR)")]
K = Annotated[int | None, typer.Option("-k", "--k", min=1, help="entries per question (default: RAG_DEFAULT_K)")]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Db = Annotated[Path | None, typer.Option("--db", help="feedback database (default: RAG_FEEDBACK_DB)")]


def friendly(fn: F) -> F:
    """Turn the project's errors into one clear line and exit code 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RagError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
        except OSError as exc:  # a folder that cannot be created or read, a full disk…
            where = f" {exc.filename}" if exc.filename else ""
            err.print(
                f"[bold red]error:[/] cannot use{escape(where)}: {escape(exc.strerror or str(exc))}", highlight=False
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


_chosen: dict[str, str | None] = {"collection": None}


@app.callback()
def _options(
    collection: Annotated[
        str | None, typer.Option("--collection", help="the collection of RAG_COLLECTIONS to work on")
    ] = None,
) -> None:
    """Cited answers over FAQ corpora."""
    _chosen["collection"] = collection


def make_settings(index_dir: Path | None = None, **extra: Any) -> Settings:
    """The settings, those of the collection ``--collection`` names when it is given."""
    settings = load_settings(index_dir=index_dir, **extra)
    name = _chosen["collection"]
    if name is None:
        return settings
    collections = Collections.load(settings)
    if collections is None:
        raise ConfigError("--collection needs RAG_COLLECTIONS, the collections file (docs/collections.md)")
    if name not in collections.settings:
        raise ConfigError(f"no collection {name!r}; {settings.http.collections} has: {', '.join(collections.settings)}")
    return collections.settings[name]


def every_collection(settings: Settings) -> dict[str | None, Settings]:
    """Each collection's settings when the service serves several FAQs and ``--collection`` names none; else the
    settings alone (under None)."""
    collections = Collections.load(settings) if _chosen["collection"] is None else None
    return dict(collections.settings) if collections is not None else {None: settings}


def bar(stack: contextlib.ExitStack, label: str) -> Callable[[int, int], None]:
    """A progress callback whose bar appears with its first call: a source that fails to load leaves none."""
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    shown: list[Any] = []

    def advance(done: int, total: int) -> None:
        if not shown:
            progress = stack.enter_context(Progress(*columns, console=err, transient=False))
            shown.extend([progress, progress.add_task(label, total=total)])
        shown[0].update(shown[1], completed=done, total=total)

    return advance


def publisher_for(settings: Settings) -> Publisher:
    """The publisher of the index the settings name, with the team's decisions from the store when there is one
    (opened only when a build reads them)."""

    def curation() -> Curation | None:
        store = existing_store(settings)
        if store is None:
            return None
        try:
            return store.curated.all()
        finally:
            store.close()

    return Publisher(QueryService(settings), curation)


def store_at(db: Path | None) -> Store:
    """The SQLite file given, else the configured store (RAG_DATABASE_URL, else the file beside the index)."""
    settings = make_settings()
    if db is None and settings.http.database_url:
        return make_store(settings).open(wait=10)
    path = db or settings.feedback_path
    if not Path(path).exists():
        raise ConfigError(f"no feedback database at {path}; it is created when the service gives its first answer")
    return sqlite_store(path).open()


def loaded(index_dir: Path | None) -> QueryService:
    """The query side over the published index."""
    service = QueryService(make_settings(index_dir))
    service.load()
    return service


def build_with_progress(publisher: Publisher, seed: Any = None) -> None:
    """Build the index with progress bars and say what was built and how its confidence was fitted."""
    with contextlib.ExitStack() as stack:
        index = publisher.build(progress=bar(stack, "embedding"), calibrating=bar(stack, "calibrating"), seed=seed)
    for warning in index.manifest.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    counts = index.manifest.counts
    err.print(
        f"indexed {counts.entries} entries, {counts.chunks} chunks, {counts.vectors} vectors "
        f"({counts.reused} reused from the previous version) "
        f"with {index.manifest.embedder} into {publisher.settings.index.index_dir}",
        highlight=False,
    )
    if index.manifest.calibration is not None:
        err.print(describe_calibration(index.manifest.calibration), highlight=False)


def describe_calibration(record: CalibrationRecord) -> str:
    """How the confidence of a built index was fitted, in a sentence or two."""
    if record.kind == "shipped":
        return f"confidence: the shipped fit ({record.reason})"
    if record.kind == "reused":
        return f"confidence: {record.reason}"
    line = (
        f"confidence fitted on this FAQ: {record.questions} questions about {record.entries} entries "
        f"({record.source}) and {record.out_of_scope} unrelated ones, in {record.seconds:.1f} s"
    )
    if record.expected is not None:
        e = record.expected
        line += (
            f"; expected: answers {e.answered:.0%} of the questions it answers (shows {e.shown:.0%}), asserts "
            f"{e.held_out_answered:.0%} of those about a fact it lacks and declines {e.unrelated_declined:.0%} of "
            "unrelated ones"
        )
    return line


def emit(text: str, out: Path | None, wrote: str) -> None:
    """JSON lines to the file ``out`` (saying what was written), or to standard output."""
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    err.print(f"wrote {wrote}")


def unset_out(item: dict[str, Any]) -> None:
    """Fields that only some FAQs fill (the reranker's score, the web page's check) are left out when unset."""
    for key in ("rerank_score", "checked_on", "stale"):
        if item.get(key) is None:
            item.pop(key, None)
