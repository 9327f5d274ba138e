"""``rag eval``: score retrieval, answers and the decision to decline on an eval set; compare two runs; write a
set. The policy (folds, caches, grading, the gate) is :mod:`rag.evaluation.policy`'s; here, what is shown."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
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
    loaded,
    make_settings,
    store_at,
)
from rag.errors import ConfigError
from rag.evaluation import policy
from rag.publishing.publisher import Publisher

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
        outcomes = _run(items, HttpBackend(url, api_key), k)
    else:
        publisher = policy.eval_publisher(make_settings(index_dir), corpus)
        _build(publisher, None)
        if holdout:
            items, outcomes, extra = policy.holdout(publisher, items, holdout, folds, judgements, k, _build)
        else:
            outcomes = _run(items, InProcessBackend(publisher.query), k)
    report = {**score(items, outcomes), **extra}
    if judge:
        report.update(_judge(make_settings(index_dir), items, outcomes, judge_votes))
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
        failures = policy.gate_failures(report, gate)
        if failures:
            err.print("[bold red]gate failed:[/] " + "; ".join(failures), highlight=False)
            raise typer.Exit(2)
        err.print("[green]gate passed[/]")


def _build(publisher: Publisher, seed: Any) -> None:
    if publisher.needs_build():
        build_with_progress(publisher, seed)
    publisher.query.load()


def _run(items: list, backend: Any, k: int) -> list:
    from rag.evaluation.run import run_eval

    columns = (TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("eval", total=len(items))
        return run_eval(items, backend, k, lambda done, _: progress.update(task, completed=done))


def _judge(settings: Any, items: list, outcomes: list, votes: int) -> dict[str, Any]:
    columns = (TextColumn("[bold]grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("grade", total=None)
        found = policy.judge(settings, items, outcomes, votes, lambda d, t: progress.update(task, completed=d, total=t))
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
        rows = gen.from_votes(store_at(None).votes.all())
        table = gen.write(rows, out)
        err.print(f"wrote {len(rows)} questions users voted on to {out} and {table}; review them", highlight=False)
        return
    service = loaded(index_dir)
    client, prompts = policy.llm_client(settings)
    chosen = list(range(len(service.index.entries)))[: entries or None]
    generator = gen.Generator(client, prompts, settings.answer.faq_name, settings.llm.total_timeout)
    try:
        with contextlib.ExitStack() as stack:
            advance = bar(stack, "writing")
            made = generator.run(
                service.index, chosen, near, lambda d: advance(d, len(chosen)), lambda g: gen.write(g.rows, out)
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
        print_comparison(comparison, base.name, new.name)
    if fail_on_regression and comparison["regressed"]:
        err.print(f"[bold red]regressed:[/] {', '.join(comparison['regressed'])}", highlight=False)
        raise typer.Exit(3)


def print_comparison(comparison: dict[str, Any], base: str, new: str) -> None:
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
