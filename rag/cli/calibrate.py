"""``rag calibrate``: fit the confidence on the FAQ in service, or on the calibration questions of a plan."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from rag.cli.common import (
    IndexDir,
    app,
    bar,
    build_with_progress,
    console,
    describe_calibration,
    err,
    friendly,
    make_settings,
    publisher_for,
)
from rag.evaluation.policy import eval_index_dir
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService


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
        publisher = publisher_for(settings.replace(self_calibration="always"))
        publisher.query.load()
        with contextlib.ExitStack() as stack:
            fitted = publisher.recalibrate(bar(stack, "calibrating"))
        err.print(f"published version {fitted.version}", highlight=False)
        err.print(describe_calibration(fitted.manifest.calibration), highlight=False)
        return
    sets = read_plan(plan)

    def build(publisher: Publisher) -> None:
        if publisher.needs_build():
            build_with_progress(publisher)
        publisher.query.load()

    rows, labels, in_scope = collect(sets, settings, lambda corpus: eval_index_dir(settings, corpus), build)
    embedder = QueryService(settings).embedder.name
    calibration, report = fit_calibration(
        rows, labels, in_scope, embedder, f"{plan.name}: {', '.join(s.name for s in sets)}"
    )
    calibration.save(out)
    err.print(
        f"fitted on {report['questions']} questions ({report['in_scope']} in scope), "
        f"AUROC {report['auroc']}, threshold {report['threshold']}; wrote {out}"
    )
    console.print_json(data=report)
