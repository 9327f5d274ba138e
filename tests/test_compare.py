"""``rag eval compare``: paired bootstrap intervals, the regression gate and the flipped questions, on runs whose
outcomes are known by construction; runs written and read back; the self-contained HTML pages."""

from __future__ import annotations

import re
from pathlib import Path

from rag.evaluation.compare import columns, compare, metrics
from rag.evaluation.html import compare_page, run_page
from rag.evaluation.reports import read_results, write_outputs
from rag.evaluation.run import EvalQuery, Outcome, score


def _run(wrong: set[int], n: int = 80, declined_out: bool = True) -> tuple[list[EvalQuery], list[Outcome]]:
    """``n`` in-scope questions answered from their entry, but those in ``wrong``; ten out of scope."""
    queries = [EvalQuery(f"q{i}", f"question {i} ?", [f"e{i}"], tags={"style": "direct"}) for i in range(n)]
    queries += [EvalQuery(f"o{i}", f"hors sujet {i}", [], tags={"scope": "unrelated"}) for i in range(10)]
    outcomes = []
    for i in range(n):
        first = "x" if i in wrong else f"e{i}"
        answer = f"Réponse {i} [1]."
        outcomes.append(Outcome([first, "y"], [1.0, 0.5], False, answer, [first], [answer], 5.0, [first, "y"], 0.9))
    outcomes += [Outcome([], [], declined_out, "", [], [], 5.0, ["z"], 0.05) for _ in range(10)]
    return queries, outcomes


def test_the_columns_give_the_metrics_of_the_report() -> None:
    run = _run({1, 2, 3})
    report, summary = score(*run), metrics(columns(*run))
    for name in ("recall@1", "recall@3", "mrr@10", "answered_rate", "abstention_recall", "citation_precision"):
        assert abs(summary[name] - report[name]) < 1e-4, name
    for name in ("confidence_auroc", "confidence_ece", "aurc", "abstention_recall_unrelated", "faithfulness"):
        assert abs(summary[name] - report[name]) < 1e-4, name


def test_a_run_compared_with_itself_changes_nothing() -> None:
    run = _run({1, 2, 3})
    same = compare(run, _run({1, 2, 3}), resamples=300)
    assert same["regressed"] == [] and all(not rows for rows in same["flips"].values())
    assert all(d["verdict"] == "no significant change" for d in same["metrics"].values())


def test_a_real_regression_is_flagged_with_the_questions_that_flipped() -> None:
    worse = set(range(0, 80, 3))  # 27 of 80 answers now cite a wrong entry
    result = compare(_run(set()), _run(worse), resamples=300)
    assert {"recall@1", "citation_precision"} <= set(result["regressed"])
    low, high = result["metrics"]["recall@1"]["interval"]
    assert low < result["metrics"]["recall@1"]["difference"] < high < 0
    assert {r["id"] for r in result["flips"]["newly_wrong"]} == {f"q{i}" for i in worse}
    assert result["flips"]["newly_right"] == []
    tolerant = compare(_run(set()), _run(worse), resamples=300, tolerance=0.5)
    assert tolerant["regressed"] == []  # no interval lies 0.5 below zero


def test_one_question_that_changed_is_noise() -> None:
    result = compare(_run(set()), _run({5}), resamples=500)
    assert result["regressed"] == [] and [r["id"] for r in result["flips"]["newly_wrong"]] == ["q5"]


def test_newly_declined_and_answered_questions_are_listed() -> None:
    base, new = _run(set()), _run(set(), declined_out=False)
    result = compare(base, new, resamples=300)
    assert len(result["flips"]["newly_answered"]) == 10 and result["flips"]["newly_declined"] == []
    assert "abstention_recall" in result["regressed"]


def test_a_run_written_is_read_back_and_compared(tmp_path: Path) -> None:
    run = _run({4})
    write_outputs(tmp_path / "a", *run, score(*run))
    queries, outcomes = read_results(tmp_path / "a")
    assert [q.qid for q in queries] == [q.qid for q in run[0]] and outcomes[4].ranking == ["x", "y"]
    assert queries[-1].tags == {"scope": "unrelated"} and outcomes[0].confidence == 0.9
    assert compare(run, (queries, outcomes), resamples=200)["regressed"] == []


def test_the_pages_are_self_contained_and_list_every_question(tmp_path: Path) -> None:
    run = _run({4})
    write_outputs(tmp_path / "a", *run, score(*run))
    page = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    assert page.count('<tr class="') == 90 and "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from elsewhere
    assert run_page("t", score(*run), *run).startswith("<!doctype html>")
    other = compare_page("new against base", compare(_run(set()), run, resamples=200), _run(set()), run)
    assert other.index("q4") < other.index("q0")  # the flipped question first
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", other)
