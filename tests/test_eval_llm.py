"""The eval's own LLM work against a scripted OpenAI-compatible server: a test set written from the FAQ
(``rag eval generate``) and answers graded (``rag eval --judge``): well-formed and malformed replies, a server that
fails mid-run, and a rerun that takes every grade from the cache."""

from __future__ import annotations

import json

import pytest

from rag.config import Settings
from rag.evaluation.generate import Generator, from_votes, write
from rag.evaluation.grading import Cache, Grader, grade_run, parse
from rag.evaluation.run import EvalQuery, Outcome
from rag.llm import ChatClient, PromptSet
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .fake_llm import ScriptedTransport

GOOD = "correcte : OUI\ncomplète : NON\nfondée : OUI"


@pytest.fixture
def llm() -> ScriptedTransport:
    return ScriptedTransport()


def _client(llm: ScriptedTransport) -> ChatClient:
    return ChatClient(Settings(llm_base_url="http://llm.test/v1", llm_retries=0).llm, llm)


def _prompts() -> PromptSet:
    return PromptSet.load(Settings().answer.prompts_dir)


def _run(n: int = 4) -> tuple[list[EvalQuery], list[Outcome]]:
    queries = [EvalQuery(f"q{i}", f"Question {i} ?", [f"e{i}"]) for i in range(n)]
    outcomes = [
        Outcome([f"e{i}"], [1.0], False, f"Réponse {i} [1].", [f"e{i}"], [f"Texte {i}."], 5.0) for i in range(n)
    ]
    outcomes.append(Outcome([], [], True, "", [], [], 5.0))  # declined: not graded
    queries.append(EvalQuery("o", "Hors sujet ?", []))
    return queries, outcomes


def test_a_reply_is_read_in_its_asked_form_only() -> None:
    assert parse(GOOD) == {"correct": True, "complete": False, "supported": True}
    assert parse("Correcte: yes\nComplete = no\nFONDEE : oui") == {
        "correct": True,
        "complete": False,
        "supported": True,
    }
    assert parse("OUI") is None and parse("correcte : OUI\ncomplète : NON") is None


def test_answers_are_graded_by_the_majority_of_votes_at_temperature_zero(llm, tmp_path) -> None:
    llm.default = GOOD
    llm.script({"text": "correcte : NON\ncomplète : NON\nfondée : OUI"})  # the first answer's first vote dissents
    grader = Grader(_client(llm), _prompts().grade, "Ségur", Cache(tmp_path / "c.jsonl"), votes=3, seed=7)
    report, grades = grade_run(grader, *_run())
    assert report["judge_graded"] == 4 and report["judge_correct"] == 1.0 and report["judge_complete"] == 0.0
    assert grades[0].agreement == pytest.approx((2 / 3 + 1 + 1) / 3) and report["judge_calls"] == 12
    assert {r["temperature"] for r in llm.requests} == {0.0} and {r["seed"] for r in llm.requests} == {7, 8, 9}
    assert "<answer>\nRéponse 0 [1].\n</answer>" in llm.requests[0]["messages"][0]["content"]
    again = Grader(_client(llm), _prompts().grade, "Ségur", Cache(tmp_path / "c.jsonl"), votes=3, seed=7)
    calls = len(llm.requests)
    assert grade_run(again, *_run())[0] == {**report, "judge_calls": 0}  # the same scores, no call
    assert len(llm.requests) == calls


def test_malformed_replies_and_a_server_that_fails_mid_run_are_said(llm, tmp_path) -> None:
    llm.default = GOOD
    llm.script(*[{"text": "je ne sais pas"}] * 3, {"text": GOOD}, *[{"status": 500}] * 9)
    grader = Grader(_client(llm), _prompts().grade, "Ségur", Cache(tmp_path / "c.jsonl"), votes=3)
    report, grades = grade_run(grader, *_run())
    assert grades[0] is None and report["judge_malformed"] == 1
    assert "judge_stopped" in report and "0 of 4 answers graded" in report["judge_stopped"]
    assert len(Cache(tmp_path / "c.jsonl").replies) == 4  # what was done is kept for the next run


def test_a_test_set_is_written_from_the_faq_in_four_styles_and_near_questions(
    llm, tmp_path, tiny_settings, hash_embedder
) -> None:
    service = QueryService(tiny_settings, hash_embedder)
    Publisher(service).build()
    llm.script(
        {
            "text": "proche : Comment se connecter à PSC ?\nquotidien : Comment je me connecte avec ma carte ?\n"
            "court : connexion carte ?\nanglais : How do I log in?"
        },
        {"text": "Voici des questions."},  # not in the asked form: counted, skipped
        {"text": "proche : Quelle messagerie ?\ncourt : connexion carte ?"},  # a duplicate is kept once
        {"text": "Combien coûte une carte CPS ?\n- Où commander un lecteur de carte ?"},
    )
    made = Generator(_client(llm), _prompts(), "Ségur").run(service.index, [0, 1, 2], near=2)
    styles = [(r["style"], r["relevant"]) for r in made.rows]
    assert styles[:4] == [("close", ["psc"]), ("everyday", ["psc"]), ("short", ["psc"]), ("english", ["psc"])]
    assert made.malformed == 1 and made.entries_done == 3 and made.stopped is None
    assert [r["query"] for r in made.rows].count("connexion carte ?") == 1
    near = [r for r in made.rows if r["style"] == "near"]
    assert [r["query"] for r in near] == ["Combien coûte une carte CPS ?", "Où commander un lecteur de carte ?"]
    assert all(r["relevant"] == [] and r["scope"] == "near" for r in near) and all(
        r["source"] == "generated" for r in made.rows
    )
    table = write(made.rows, tmp_path / "set.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "set.jsonl").read_text().splitlines()]
    assert (
        len(rows) == len(made.rows) and table.read_text().splitlines()[0] == "query,relevant,style,scope,about,source"
    )


def test_a_generator_that_loses_the_llm_keeps_what_it_wrote(llm, tmp_path, tiny_settings, hash_embedder) -> None:
    service = QueryService(tiny_settings, hash_embedder)
    Publisher(service).build()
    llm.script({"text": "proche : Quelle messagerie ?"}, *[{"status": 500}] * 3)
    kept: list[int] = []
    made = Generator(_client(llm), _prompts(), "Ségur").run(
        service.index, [0, 1, 2, 0], near=5, written=lambda g: kept.append(len(g.rows))
    )
    assert made.stopped and "3 times" in made.stopped and made.entries_done == 1 and kept == [1]


def test_questions_users_voted_on_start_a_set() -> None:
    votes = [
        {"query": "Comment demander le solde ?", "helpful": True, "abstained": False, "cited_ids": ["solde", "x"]},
        {"query": "comment demander le solde", "helpful": False, "abstained": False, "cited_ids": ["x"]},
        {"query": "Et la carte ?", "helpful": False, "abstained": False, "cited_ids": ["psc"]},
    ]
    rows = from_votes(votes)
    assert [(r["query"], r["relevant"], r["to_review"]) for r in rows] == [
        ("Comment demander le solde ?", ["solde"], False),
        ("Et la carte ?", [], True),
    ]
