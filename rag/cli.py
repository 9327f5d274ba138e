"""The ``rag`` command line: index, search, ask, serve, eval, feedback, gaps, curation, log."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rag.config import Settings, is_url, load_settings
from rag.errors import ConfigError, RagError
from rag.indexing.manifest import CalibrationRecord
from rag.models import Question
from rag.query.service import RagService

app = typer.Typer(help="Cited answers over FAQ corpora.", no_args_is_help=True, add_completion=False)
console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

IndexDir = Annotated[Path | None, typer.Option("--index-dir", help="index folder (default: RAG_INDEX_DIR)")]
K = Annotated[int | None, typer.Option("-k", "--k", min=1, help="entries per question (default: RAG_DEFAULT_K)")]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]


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


def make_settings(index_dir: Path | None = None, **extra: Any) -> Settings:
    return load_settings(index_dir=index_dir, **extra)


def _bar(stack: contextlib.ExitStack, label: str) -> Callable[[int, int], None]:
    """A progress callback whose bar appears with its first call: a source that fails to load leaves none."""
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar: list[Any] = []

    def advance(done: int, total: int) -> None:
        if not bar:
            progress = stack.enter_context(Progress(*columns, console=err, transient=False))
            bar.extend([progress, progress.add_task(label, total=total)])
        bar[0].update(bar[1], completed=done, total=total)

    return advance


def build_with_progress(service: RagService, seed: Any = None) -> None:
    """Build the index with progress bars and say what was built and how its confidence was fitted."""
    with contextlib.ExitStack() as stack:
        index = service.build(progress=_bar(stack, "embedding"), calibrating=_bar(stack, "calibrating"), seed=seed)
    for warning in index.manifest.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    counts = index.manifest.counts
    err.print(
        f"indexed {counts.entries} entries, {counts.chunks} chunks, {counts.vectors} vectors "
        f"({counts.reused} reused from the previous version) "
        f"with {index.manifest.embedder} into {service.settings.index.index_dir}",
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
            f"; expected: answers {e.answered:.0%} of the questions it answers, declines {e.held_out_declined:.0%} "
            f"of those about a topic it lacks and {e.unrelated_declined:.0%} of unrelated ones"
        )
    return line


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
    service = RagService(make_settings(index_dir, sources=source or None))
    if any(is_url(s) for s in service.sources):
        with contextlib.ExitStack() as stack:
            report = service.fetch_pages(_bar(stack, "pages"))
        _print_pages(report)
    build_with_progress(service)


def _print_pages(report: Any) -> None:
    err.print(
        f"pages: {report.pages} read ({report.unchanged} unchanged), {len(report.problems)} problems", highlight=False
    )
    for problem in report.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)


@app.command()
@friendly
def sync(index_dir: IndexDir = None, as_json: JsonOut = False) -> None:
    """Read the FAQ's web pages again; publish a new version when they changed (only changed entries embedded)."""
    service = RagService(make_settings(index_dir))
    with contextlib.ExitStack() as stack:
        done = service.sync(_bar(stack, "pages"), building=_bar(stack, "embedding"))
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
    _print_pages(done.report)
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
    findings = _load(index_dir).source_report()
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


def _load(index_dir: Path | None) -> RagService:
    service = RagService(make_settings(index_dir))
    service.load()
    return service


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
    service = _load(index_dir)
    filters = parse_filters(filter_ or [])
    for question in questions:
        result = service.search(Question(query=question, k=k, filters=filters), service.address)
        if as_json:
            payload = result.model_dump(include={"query", "abstained", "confidence", "results"})
            for hit in payload["results"]:  # the retrieval internals stay out
                hit.pop("dense_score", None)
                hit.pop("bm25_score", None)
                _unset_out(hit)
            sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
            continue
        table = Table(title=escape(question), show_lines=False, title_justify="left")
        for column in ("#", "score", "id", "passage", "link"):
            table.add_column(column, overflow="fold")
        if result.abstained:
            console.print(f"[yellow]{escape(question)}[/]: no relevant entry (confidence {result.confidence:.3f})")
            continue
        for rank, hit in enumerate(result.results, start=1):
            text = (hit.question + " — " if hit.question else "") + hit.text
            passage = text[:160] + ("…" if len(text) > 160 else "")
            table.add_row(str(rank), f"{hit.score:.3f}", escape(hit.id), escape(passage), escape(hit.url or ""))
        console.print(table)


def _emit(text: str, out: Path | None, wrote: str) -> None:
    """JSON lines to the file ``out`` (saying what was written), or to standard output."""
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    err.print(f"wrote {wrote}")


def _unset_out(item: dict[str, Any]) -> None:
    """Fields that only some FAQs fill (the reranker's score, the web page's check) are left out when unset."""
    for key in ("rerank_score", "checked_on", "stale"):
        if item.get(key) is None:
            item.pop(key, None)


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
    service = _load(index_dir)
    result = service.ask(Question(query=question, k=k), service.address)
    if as_json:
        payload = result.model_dump(exclude={"citations": {"__all__": {"question"}}})
        for item in payload["citations"] + payload["passages"]:
            _unset_out(item)
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return
    console.print(escape(result.answer), highlight=False)
    if result.note:
        console.print(f"[dim]{escape(result.note)}[/]", highlight=False)
    if result.citations:
        console.print("\n[bold]Sources[/]")
        for citation in result.citations:
            console.print(escape(f"  [{citation.n}] {citation.url}"), highlight=False)


@app.command()
@friendly
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    index_dir: IndexDir = None,
    workers: Annotated[int | None, typer.Option(help="server processes sharing the index (RAG_WORKERS)")] = None,
    build: Annotated[bool, typer.Option("--build/--no-build", help="build the index first if it is missing")] = True,
) -> None:
    """Run the HTTP API and web page."""
    from rag.http.server import serve as run_server
    from rag.logs import configure as configure_logging

    settings = make_settings(index_dir, host=host, port=port, workers=workers)
    configure_logging(settings)  # one JSON line per request on stderr (rag.access), and the service's own messages
    service = RagService(settings)
    if build and service.needs_build():
        build_with_progress(service)  # once, here: the workers then load it read-only
    run_server(settings, service, service.sources)


@app.command()
@friendly
def mcp(index_dir: IndexDir = None) -> None:
    """Serve the FAQ to AI assistants over the Model Context Protocol, on stdin/stdout."""
    from rag.channels.mcp import make_server
    from rag.logs import configure as configure_logging
    from rag.store.feedback import make_store
    from rag.store.recorder import make_recorder, new_answer_id

    settings = make_settings(index_dir)
    configure_logging(settings)  # stderr: stdout is the protocol
    service = RagService(settings)
    service.load_or_build()
    recorder = make_recorder(settings, make_store(settings))
    recorder.start()
    try:
        make_server(service, lambda answer: recorder.record_answer(new_answer_id(), answer, "mcp")).run("stdio")
    finally:
        recorder.close()


eval_app = typer.Typer(
    help="Score retrieval, answers and the decision to decline on an eval set; compare two runs; write a set.",
    invoke_without_command=True,
)
app.add_typer(eval_app, name="eval")


@eval_app.callback()
@friendly
def eval_cmd(
    ctx: typer.Context,
    queries: Annotated[
        Path | None, typer.Option("--queries", help="JSONL: {query, relevant: [ids]}; [] = out of scope")
    ] = None,
    corpus: Annotated[list[Path] | None, typer.Option("--corpus", help="FAQ file(s) to index for this eval")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1)] = 10,
    out: Annotated[Path | None, typer.Option("--out", help="folder for run, qrels and reports")] = None,
    url: Annotated[str | None, typer.Option("--url", help="evaluate a running service instead")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="RAG_EVAL_API_KEY")] = None,
    gate: Annotated[Path | None, typer.Option("--gate", help="JSON thresholds; exit 2 when a metric is below")] = None,
    holdout: Annotated[
        int | None,
        typer.Option("--holdout", min=1, help="remove N entries asked about; their questions must be declined"),
    ] = None,
    folds: Annotated[
        int, typer.Option("--folds", min=1, help="with --holdout: remove that many sets of N in turn")
    ] = 1,
    judgements: Annotated[
        Path | None,
        typer.Option("--judgements", help='with --holdout: JSONL {"query", "entry", "answers"} a person wrote'),
    ] = None,
    judge: Annotated[
        bool, typer.Option("--judge", help="the configured LLM grades every answer (cached: a rerun makes no call)")
    ] = False,
    judge_votes: Annotated[int, typer.Option("--judge-votes", min=1, help="votes per answer")] = 3,
    index_dir: IndexDir = None,
    as_json: JsonOut = False,
) -> None:
    """Score retrieval and answers on an eval set (with --holdout: how the service declines what the FAQ lacks)."""
    from rag.evaluation.reports import write_outputs
    from rag.evaluation.run import HttpBackend, InProcessBackend, load_queries, score

    if ctx.invoked_subcommand is not None:
        return
    if queries is None:
        raise ConfigError("give the questions with --queries FILE, or a command: rag eval compare, rag eval generate")
    items, extra = load_queries(queries), {}
    if url and holdout:
        raise ConfigError("--holdout builds indexes of the FAQ without some entries: run it in process, without --url")
    if url:
        outcomes = _eval_run(items, HttpBackend(url, api_key), k)
    else:
        service = _eval_service(index_dir, corpus)
        if holdout:
            items, outcomes, extra = _eval_holdout(service, items, holdout, folds, judgements, k)
        else:
            outcomes = _eval_run(items, InProcessBackend(service), k)
    report = {**score(items, outcomes), **extra}
    if judge:
        report.update(_eval_judge(make_settings(index_dir), items, outcomes, judge_votes))
    if report["degraded"]:
        err.print(
            f"[yellow]warning:[/] {report['degraded']} questions were ranked with BM25 alone (the embeddings "
            "server failed): these metrics are not those of the full service",
            highlight=False,
        )
    if out:
        write_outputs(out, items, outcomes, report)
    if as_json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        print_report(report, str(queries))
    if gate:
        _gate(report, gate)


def _llm_client(settings: Settings) -> tuple[Any, Any]:
    """The configured LLM's client and prompts; a clear line when there is none."""
    from rag.llm import ChatClient, PromptSet

    if not settings.llm.base_url:
        raise ConfigError("this needs an LLM: set RAG_LLM_BASE_URL (and RAG_LLM_MODEL) to an OpenAI-compatible server")
    return ChatClient(settings.llm), PromptSet.load(settings.answer.prompts_dir)


def _eval_judge(settings: Settings, items: list, outcomes: list, votes: int) -> dict[str, Any]:
    from rag.evaluation.grading import Cache, Grader, grade_run

    client, prompts = _llm_client(settings)
    cache = Cache(settings.index.index_dir.parent / "eval-cache" / "judge.jsonl")
    grader = Grader(client, prompts.grade, settings.answer.faq_name, cache, votes, timeout=settings.llm.total_timeout)
    columns = (TextColumn("[bold]grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("grade", total=None)
            found, _ = grade_run(grader, items, outcomes, lambda d, t: progress.update(task, completed=d, total=t))
    finally:
        client.close()
    if "judge_stopped" in found:
        err.print(f"[yellow]warning:[/] {found['judge_stopped']}", highlight=False)
    err.print(f"graded {found['judge_graded']} answers with {found['judge_calls']} LLM calls", highlight=False)
    return found


@eval_app.command("generate")
@friendly
def eval_generate(
    out: Annotated[Path, typer.Option("--out", help="JSONL to write (a CSV beside it)")] = Path("eval/generated.jsonl"),
    entries: Annotated[int | None, typer.Option("--entries", min=1, help="at most this many entries")] = None,
    near: Annotated[int, typer.Option("--near", min=0, help="questions the FAQ does not answer")] = 20,
    from_votes: Annotated[
        bool, typer.Option("--from-votes", help="questions users voted on, from the store, instead of the LLM")
    ] = False,
    index_dir: IndexDir = None,
) -> None:
    """A test set drawn from the FAQ, for a person to review (JSONL for rag eval, CSV to edit)."""
    from rag.evaluation import generate as gen

    settings = make_settings(index_dir)
    if from_votes:
        rows = gen.from_votes(_store(None).feedback())
        table = gen.write(rows, out)
        err.print(f"wrote {len(rows)} questions users voted on to {out} and {table}; review them", highlight=False)
        return
    service = _load(index_dir)
    client, prompts = _llm_client(settings)
    chosen = list(range(len(service.index.entries)))[: entries or None]
    generator = gen.Generator(client, prompts, settings.answer.faq_name, settings.llm.total_timeout)
    try:
        with contextlib.ExitStack() as stack:
            bar = _bar(stack, "writing")
            made = generator.run(
                service.index, chosen, near, lambda d: bar(d, len(chosen)), lambda g: gen.write(g.rows, out)
            )
    finally:
        client.close()
    err.print(
        f"wrote {len(made.rows)} generated questions about {made.entries_done} entries to {out} and "
        f"{out.with_suffix('.csv')} ({made.malformed} replies not in the asked form); review them before use",
        highlight=False,
    )
    if made.stopped:
        err.print(f"[bold red]stopped:[/] {made.stopped}; what was written is kept", highlight=False)
        raise typer.Exit(1)


@eval_app.command("compare")
@friendly
def eval_compare(
    base: Annotated[Path, typer.Argument(help="the --out folder of the run to compare against")],
    new: Annotated[Path, typer.Argument(help="the --out folder of the new run")],
    out: Annotated[Path | None, typer.Option("--out", help="folder for compare.json, .md and .html")] = None,
    fail_on_regression: Annotated[
        bool, typer.Option("--fail-on-regression", help="exit 3 when a metric's interval lies below zero")
    ] = False,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, help="how far below zero before it counts")] = 0.0,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="bootstrap draws")] = 2000,
    as_json: JsonOut = False,
) -> None:
    """Each metric's difference with a paired bootstrap 95 % interval, and the questions that flipped."""
    from rag.evaluation.compare import compare, markdown
    from rag.evaluation.html import compare_page
    from rag.evaluation.reports import read_results

    runs = read_results(base), read_results(new)
    comparison = compare(*runs, resamples=resamples, tolerance=tolerance)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(comparison, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / "compare.md").write_text(markdown(comparison, base.name, new.name) + "\n", encoding="utf-8")
        page = compare_page(f"{new.name} against {base.name}", comparison, *runs)
        (out / "compare.html").write_text(page, encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(comparison, ensure_ascii=False) + "\n")
    else:
        _print_comparison(comparison, base.name, new.name)
    if fail_on_regression and comparison["regressed"]:
        err.print(f"[bold red]regressed:[/] {', '.join(comparison['regressed'])}", highlight=False)
        raise typer.Exit(3)


def _print_comparison(comparison: dict[str, Any], base: str, new: str) -> None:
    table = Table(title=f"{new} against {base} ({comparison['questions']} questions)", title_justify="left")
    for column in ("metric", "base", "new", "difference", "95 % interval", "verdict"):
        table.add_column(column, justify="left" if column in {"metric", "verdict"} else "right")
    colours = {"regressed": "red", "improved": "green"}
    for name, d in comparison["metrics"].items():
        low, high = d["interval"]
        colour = colours.get(d["verdict"], "default")
        verdict = f"[{colour}]{d['verdict']}[/]"
        table.add_row(
            name,
            f"{d['base']:.3f}",
            f"{d['new']:.3f}",
            f"{d['difference']:+.3f}",
            f"[{low:+.3f}, {high:+.3f}]",
            verdict,
        )
    console.print(table)
    for kind, rows in comparison["flips"].items():
        if rows:
            console.print(
                f"[bold]{kind.replace('_', ' ')}[/] ({len(rows)}): " + "; ".join(escape(r["query"]) for r in rows[:8])
            )


def _eval_service(index_dir: Path | None, corpus: list[Path] | None) -> RagService:
    settings = make_settings(index_dir)
    if corpus:
        settings = settings.replace(sources=corpus, index_dir=eval_index_dir(settings, corpus))
    service = RagService(settings)
    if service.needs_build():
        build_with_progress(service)
    service.load()
    return service


def _eval_run(items: list, backend: Any, k: int) -> list:
    from rag.evaluation.run import run_eval

    columns = (TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("eval", total=len(items))
        return run_eval(items, backend, k, lambda done, _: progress.update(task, completed=done))


def _eval_holdout(
    service: RagService, items: list, size: int, count: int, judgements: Path | None, k: int
) -> tuple[list, list, dict[str, Any]]:
    """Every fold's questions and outcomes, one after the other (ids prefixed by the fold), and what to report."""
    from rag.evaluation.holdout import Judgements, choose_folds, held_out_answers, run_holdout

    judged = Judgements.load(judgements)
    chosen = choose_folds(items, {e.id for e in service.index.entries}, size, count)
    cache = service.settings.index.index_dir.parent / f"{service.settings.index.index_dir.name}-holdout"

    def build(fold: RagService, seed: Any) -> None:
        if fold.needs_build():
            build_with_progress(fold, seed)
        fold.load()

    done = run_holdout(service, items, chosen, judged, cache, k, build)
    asked = [dataclasses.replace(q, qid=f"f{n}-{q.qid}") for n, fold in enumerate(done, 1) for q in fold.queries]
    outcomes = [o for fold in done for o in fold.outcomes]
    held = [q for q in asked if q.tags.get("scope", "").startswith("held_out")]
    extra = {
        "holdout": {
            "entries_per_fold": size,
            "folds": count,
            "held_out_questions": len(held),
            "answered_by_a_remaining_entry": sum(1 for q in held if q.relevant),
            "calibration": [fold.calibration for fold in done],
        },
        "held_out_answers": held_out_answers(done, judged),
    }
    return asked, outcomes, extra


def _gate(report: dict[str, Any], gate: Path) -> None:
    from rag.evaluation.run import check_gate

    failures = check_gate(report, json.loads(Path(gate).read_text(encoding="utf-8")))
    if failures:
        err.print("[bold red]gate failed:[/] " + "; ".join(failures), highlight=False)
        raise typer.Exit(2)
    err.print("[green]gate passed[/]")


def eval_index_dir(settings: Settings, corpus: list[Path]) -> Path:
    """A cached index per eval corpus and embedder, beside the default index."""
    import hashlib

    key = hashlib.sha1(json.dumps(sorted(str(p.resolve()) for p in corpus)).encode()).hexdigest()[:12]
    return Path(settings.index.index_dir).parent / "eval-cache" / key


def print_report(report: dict[str, Any], title: str) -> None:
    from rag.evaluation.run import MAIN_METRICS, TABLES, holdout_line

    table = Table(
        title=f"{title}: {report['in_scope']} in scope, {report['out_of_scope']} out of scope", title_justify="left"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for metric in [*MAIN_METRICS, *(m for m in report if m.startswith("abstention_recall_"))]:
        if metric in report:
            value = report[metric]
            table.add_row(metric, f"{value:.1f}" if metric.startswith("latency") else f"{value:.3f}")
    console.print(table)
    for key, groups in report.items():
        if key in TABLES or key.startswith("by_"):
            sub = Table(title=key.replace("by_", "by "), title_justify="left")
            columns = list(next(iter(groups.values())))
            sub.add_column("group")
            for column in columns:
                sub.add_column(column, justify="right")
            for name, values in groups.items():
                sub.add_row(name, *(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values.values()))
            console.print(sub)
    if "holdout" in report:
        console.print(holdout_line(report), highlight=False)


@app.command()
@friendly
def calibrate(
    plan: Annotated[Path, typer.Option("--plan", help="calibration plan (JSON)")] = Path("eval/calibration/plan.json"),
    out: Annotated[Path, typer.Option("--out", help="where to write the fitted coefficients")] = Path(
        "rag/assets/calibration.json"
    ),
    auto: Annotated[
        bool, typer.Option("--auto", help="fit it on the FAQ in service, from its own entries, and publish it")
    ] = False,
    index_dir: IndexDir = None,
) -> None:
    """Fit the confidence (the probability that the FAQ answers): on the FAQ in service (--auto), or on the
    calibration questions of a plan."""
    from rag.evaluation.calibrate import calibrate as fit_calibration
    from rag.evaluation.calibrate import collect, read_plan

    settings = make_settings(index_dir)
    if auto:
        service = RagService(settings.replace(self_calibration="always"))
        service.load()
        with contextlib.ExitStack() as stack:
            fitted = service.recalibrate(_bar(stack, "calibrating"))
        err.print(f"published version {fitted.version}", highlight=False)
        err.print(describe_calibration(fitted.manifest.calibration), highlight=False)
        return
    sets = read_plan(plan)

    def build(service: RagService) -> None:
        if service.needs_build():
            build_with_progress(service)
        service.load()

    rows, labels, in_scope = collect(sets, settings, lambda corpus: eval_index_dir(settings, corpus), build)
    embedder = RagService(settings).embedder.name
    calibration, report = fit_calibration(
        rows, labels, in_scope, embedder, f"{plan.name}: {', '.join(s.name for s in sets)}"
    )
    calibration.save(out)
    err.print(
        f"fitted on {report['questions']} questions ({report['in_scope']} in scope), "
        f"AUROC {report['auroc']}, threshold {report['threshold']}; wrote {out}"
    )
    console.print_json(data=report)


feedback_app = typer.Typer(help="Feedback given on the web page and the API.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


def _store(db: Path | None):
    """The SQLite file given, else the configured store (RAG_DATABASE_URL, else the file beside the index)."""
    from rag.store.feedback import SqliteStore, make_store

    settings = make_settings()
    if db is None and settings.http.database_url:
        return make_store(settings).open(wait=10)
    path = db or settings.feedback_path
    if not Path(path).exists():
        raise ConfigError(f"no feedback database at {path}; it is created when the service gives its first answer")
    return SqliteStore(path).open()


@feedback_app.command("export")
@friendly
def feedback_export(
    out: Annotated[Path | None, typer.Option("--out", help="queries file to write (default: stdout)")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="feedback database (default: RAG_FEEDBACK_DB)")] = None,
) -> None:
    """Unhelpful and unanswered questions as an eval queries file, for a person to label."""
    rows = _store(db).export_queries()
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    _emit(text, out, f"{len(rows)} questions to {out}; fill in 'relevant' with the right entry ids")


@feedback_app.command("stats")
@friendly
def feedback_stats(
    db: Annotated[Path | None, typer.Option("--db", help="feedback database (default: RAG_FEEDBACK_DB)")] = None,
    as_json: JsonOut = False,
) -> None:
    """Helpful rate per day and the least helpful entries."""
    stats = _store(db).stats()
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
Db = Annotated[Path | None, typer.Option("--db", help="feedback database (default: RAG_FEEDBACK_DB)")]


def _curator(db: Path | None, index_dir: Path | None = None):
    """The curation of the configured store and index (loaded)."""
    from rag.publishing.gap_resolution import Curator
    from rag.publishing.gaps import GapFinder

    settings = make_settings(index_dir)
    service = RagService(settings)
    service.load()
    finder = GapFinder(service.embedder, settings.gaps, settings.index.embed_batch_size)
    return Curator(service, _store(db), finder, settings.golden_path)


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
    found = curator.gaps(curator.service.address)
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
    text = _store(db).curation().to_jsonl()
    _emit(text, out, f"{text.count(chr(10))} curated items to {out}")


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
        str | None, typer.Option("--containing", help="erase those whose question contains this text")
    ] = None,
    db: Db = None,
) -> None:
    """Erase logged questions and the votes on them (a person's request under the GDPR, or a clean slate)."""
    from datetime import UTC, datetime

    if not (everything or before or containing):
        raise ConfigError("say what to erase: --all, --before YYYY-MM-DD or --containing TEXT")
    at = None
    if before:
        try:
            at = datetime.strptime(before, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise ConfigError(f"--before must be a day written YYYY-MM-DD, not {before!r}") from None
    erased = _store(db).erase(before=at, containing=containing)
    err.print(f"erased {erased} logged questions and the votes on them")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
