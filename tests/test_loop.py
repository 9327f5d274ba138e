"""The FAQ team's loop end to end with the real encoder, over HTTP (bench/gaps.py and bench/out_of_scope.py,
smaller): held-out entries' questions land in gaps, resolving the gaps republishes the FAQ without a restart
and grows the golden file; questions marked out of scope decline other wordings of their topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.gaps import simulate
from bench.out_of_scope import measure
from rag.config import DEFAULT_SOURCE

from .conftest import ROOT

pytestmark = pytest.mark.slow


def test_held_out_entries_become_gaps_and_resolving_them_answers_their_questions(tmp_path: Path) -> None:
    found = simulate(tmp_path, held_out=5, seed=0, faq=DEFAULT_SOURCE, queries=ROOT / "eval" / "segur.jsonl")
    assert found["held_out_questions"] == found["declined"] + found["voted_not_useful"] > 0
    assert found["coverage"] == 1.0  # every declined or disliked question is in the report
    assert found["purity_held_out"] >= 0.7
    assert found["resolved_entries"] == 5
    assert found["r_at_1_after"] >= 0.8  # answered from the new entries, the service never restarted
    assert found["golden_held_out_questions"] == found["held_out_questions"]


def test_marking_questions_out_of_scope_declines_other_wordings_not_the_faq(tmp_path: Path) -> None:
    found = measure(tmp_path)
    before, after = found["before"], found["after"]
    assert after["marked_declined"] >= 0.9
    assert after["other_wordings_declined"] >= before["other_wordings_declined"] + 0.1
    assert after["other_wordings_answered"] <= before["other_wordings_answered"]
    assert after["in_scope_answered"] >= before["in_scope_answered"] - 0.04
