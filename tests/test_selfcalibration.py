"""The confidence fitted on the FAQ it serves: questions made from its entries, rankings with an entry left out,
the recalibration, its place in the index, its reuse, and ``rag eval --holdout``'s folds and judgements."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ConfigError, SourceError
from rag.evaluation.holdout import Judgements, as_asked, choose_folds, run_holdout
from rag.evaluation.run import EvalQuery, score
from rag.indexing.calibration import Calibration, log_odds, recalibrate
from rag.indexing.versions import CALIBRATION, version_dir
from rag.publishing.probes import STYLES, ProbeWriter
from rag.publishing.publisher import Publisher
from rag.publishing.selfcalibration import SelfCalibration, duplicates, out_of_scope_questions
from rag.query.service import QueryService

from .conftest import Q

TOPICS = [
    (
        "solde",
        "Comment demander le paiement du solde ?",
        "La demande de solde se dépose auprès de l'ASP avec la "
        "vérification d'aptitude signée par le client. Le versement intervient sous deux mois.",
    ),
    (
        "psc",
        "Comment se connecter avec Pro Santé Connect ?",
        "La connexion passe par Pro Santé Connect avec une "
        "carte CPS ou une e-CPS. Le logiciel redirige vers le navigateur du poste.",
    ),
    (
        "mss",
        "Quelle messagerie sécurisée utiliser ?",
        "Toute messagerie MSSanté référencée convient. L'opérateur "
        "fournit une boîte aux lettres nominative ou organisationnelle.",
    ),
    (
        "ins",
        "Comment qualifier l'identité nationale de santé ?",
        "L'INS est qualifiée après appel au téléservice INSi et vérification d'une pièce d'identité du patient.",
    ),
    (
        "dmp",
        "Comment alimenter le dossier médical partagé ?",
        "Les documents de santé sont envoyés au DMP au "
        "format CDA avec le consentement du patient et son matricule INS.",
    ),
    (
        "vague",
        "Quand se termine la vague 1 du référencement ?",
        "Les dépôts de dossiers de la vague 1 sont clos "
        "depuis septembre. La vague 2 ouvre les candidatures au printemps.",
    ),
    (
        "preuves",
        "Peut-on déposer plusieurs preuves dans un fichier ?",
        "Chaque exigence a son propre champ de "
        "dépôt : les preuves se déposent séparément, une par exigence, au format PDF.",
    ),
    (
        "devis",
        "Quel numéro indiquer sur les devis ?",
        "Le numéro de dossier attribué par l'ANS figure sur chaque "
        "devis et chaque bon de commande signé avec l'établissement.",
    ),
]


@pytest.fixture
def faq8(tmp_path: Path) -> Path:
    path = tmp_path / "faq8.jsonl"
    rows = [{"id": i, "question": q, "answer": a, "theme": i[:2]} for i, q, a in TOPICS]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def service8(faq8: Path, tiny_settings, hash_embedder) -> QueryService:
    service = QueryService(tiny_settings.replace(sources=[faq8], min_confidence=None), hash_embedder)
    Publisher(service).build()
    return service


def test_questions_are_made_from_each_entry_the_same_way_every_time(service8) -> None:
    index = service8.index
    first, again = ProbeWriter(index).write([0, 1, 2]), ProbeWriter(index).write([0, 1, 2])
    assert first == again and {p.style for p in first} == set(STYLES)
    titles = {e.question.lower() for e in index.entries}
    assert all(p.text.lower() not in titles and p.text for p in first)
    assert ProbeWriter(index, seed=1).write([0, 1, 2]) != first


def test_an_entry_left_out_is_ranked_and_read_as_if_the_faq_lacked_it(service8) -> None:
    retriever, index = service8.stages.retriever, service8.index
    question = service8.stages.retriever.prepare("Quand le versement du solde intervient-il ?")
    solde = index.by_id["solde"]
    present, lacking = retriever.rank(question), retriever.rank(question, exclude={solde})
    assert present.order[0] == solde and solde not in lacking.order
    decided = service8.stages.decision.decide(
        question, lambda p: retriever.rank(p, exclude={solde}), 3, all_signals=True
    )
    full = service8.stages.decision.decide(question, retriever.rank, 3, all_signals=True)
    # "versement" is a word of that entry only: without it, the FAQ does not know it
    assert decided.signals["vocab_cover"] < full.signals["vocab_cover"]
    assert index.known(frozenset({solde}))("vers") is False and index.known()("vers") is True


def test_entries_with_the_same_answer_are_left_out_together(service8, tmp_path) -> None:
    rows = [{"id": i, "question": q, "answer": a} for i, q, a in TOPICS] + [
        {"id": "solde-bis", "question": "Paiement du solde : comment faire ?", "answer": TOPICS[0][2]}
    ]
    path = tmp_path / "twins.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    twin = QueryService(service8.settings.replace(sources=[path], index_dir=tmp_path / "twins"), service8.embedder)
    Publisher(twin).build()
    index = twin.index
    found = duplicates(index, [index.by_id["solde"], index.by_id["psc"]])
    assert found[index.by_id["solde"]] == {index.by_id["solde"], index.by_id["solde-bis"]}
    assert found[index.by_id["psc"]] == {index.by_id["psc"]}


def test_recalibration_keeps_the_order_and_makes_the_probability_fit_the_faq() -> None:
    prior = Calibration.load()
    rng = np.random.default_rng(0)
    rows = [
        {f: float(rng.normal(m, s)) for f, m, s in zip(prior.features, prior.mean, prior.scale)} for _ in range(400)
    ]
    odds = np.array([log_odds(prior.probability(r)) for r in rows])
    # on this FAQ the prior is too sure: the truth is a flatter, shifted curve of the same score
    truth = 1 / (1 + np.exp(-(0.5 * odds - 1.0)))
    labels = [int(rng.random() < p) for p in truth]
    fitted = recalibrate(prior, rows, labels, "synthetic")
    new = np.array([fitted.probability(r) for r in rows])
    assert np.all(np.diff(new[np.argsort(odds)]) >= -1e-12)  # the same order as the prior
    slope = (log_odds(fitted.probability(rows[1])) - log_odds(fitted.probability(rows[0]))) / (odds[1] - odds[0])
    assert 0.3 < slope < 0.7 and fitted.threshold == 0.5
    assert [v.features for v in fitted.variants] == [v.features for v in prior.variants]
    assert all(v.threshold == 0.5 for v in fitted.variants) and fitted.latent_band != prior.latent_band
    with pytest.raises(ConfigError):
        recalibrate(prior, rows, [1] * len(rows), "one kind")


def test_a_faq_gets_a_confidence_fitted_on_its_own_questions(service8) -> None:
    index = service8.index
    record = index.manifest.calibration
    # four user-like questions about each of its 8 entries
    assert record.kind == "fitted" and record.entries == 8 and record.questions == 32
    assert record.out_of_scope == len(out_of_scope_questions()) and record.expected is not None
    assert (version_dir(service8.settings.index.index_dir) / CALIBRATION).exists()
    assert (
        service8.stages.decision.calibration == index.calibration
        and service8.stages.decision.threshold(index.calibration) == 0.5
    )
    reloaded = QueryService(service8.settings, service8.embedder)
    reloaded.load()
    assert reloaded.index.calibration == index.calibration
    asked = service8.retrieve(Q("Comment demander le paiement du solde ?"))
    unrelated = service8.retrieve(Q("Quelle est la recette de la tarte tatin aux pommes ?"))
    assert not asked.abstained and unrelated.abstained and asked.confidence > unrelated.confidence


def test_too_few_entries_keep_the_shipped_fit_and_say_why(make_service) -> None:
    record = make_service(min_confidence=None).index.manifest.calibration
    assert record.kind == "shipped" and "too few" in record.reason


def test_the_setting_and_the_shipped_faq_keep_the_shipped_fit(service8, segur_source, hash_embedder, tmp_path) -> None:
    never = QueryService(service8.settings.replace(self_calibration="never"), hash_embedder)
    assert "RAG_SELF_CALIBRATION" in (Publisher(never).needs_build() or "")
    Publisher(never).build()
    assert never.index.calibration is None and never.index.manifest.calibration.kind == "shipped"
    assert never.stages.decision.calibration == Calibration.load()
    shipped = QueryService(service8.settings.replace(sources=[segur_source], index_dir=tmp_path / "s"), hash_embedder)
    record = Publisher(shipped).build().manifest.calibration
    assert record.kind == "shipped" and record.reason == "the shipped FAQ keeps the fit made on its questions"


def test_a_rebuild_keeps_the_fit_while_little_of_the_faq_changed(service8, faq8) -> None:
    fitted = service8.index.calibration
    rows = [json.loads(line) for line in faq8.read_text(encoding="utf-8").splitlines()]
    rows[0]["answer"] += " Un justificatif de paiement est demandé."
    faq8.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    kept = Publisher(service8).build()
    # one entry of eight is 12 %, under the 20 % that calls for a new fit
    assert kept.manifest.calibration.kind == "reused" and kept.calibration == fitted
    for row in rows[1:3]:
        row["answer"] += " Précision ajoutée."
    faq8.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert Publisher(service8).build().manifest.calibration.kind == "fitted"


def test_recalibrating_publishes_a_new_version(service8) -> None:
    before = service8.index.version
    after = Publisher(service8).recalibrate()
    assert after.version != before and version_dir(service8.settings.index.index_dir).name == after.version
    assert after.manifest.calibration.kind == "fitted" and service8.index is after


def test_a_prior_for_another_encoder_gives_a_fit_of_its_own(service8) -> None:
    calibration = SelfCalibration(service8.embedder, service8.settings.retrieval, Calibration.load())
    assert not calibration.prior_applies  # the shipped fit is for multilingual-e5-small, not the hash embedder
    own = replace(Calibration.load(), embedder=service8.embedder.name)
    assert SelfCalibration(service8.embedder, service8.settings.retrieval, own).prior_applies


def _queries() -> list[EvalQuery]:
    rows = [
        ("Quand le solde est-il versé ?", ["solde"]),
        ("Quelle carte pour Pro Santé Connect ?", ["psc"]),
        ("Quel opérateur pour la messagerie MSSanté ?", ["mss"]),
        ("Comment vérifier l'INS d'un patient ?", ["ins"]),
        ("Quel format pour envoyer au DMP ?", ["dmp"]),
        ("Quelle recette de crêpes ?", []),
    ]
    return [EvalQuery(f"q{i}", q, r, tags={"scope": "unrelated"} if not r else {}) for i, (q, r) in enumerate(rows)]


def test_folds_are_disjoint_and_the_same_every_time() -> None:
    ids = {t[0] for t in TOPICS}
    folds = choose_folds(_queries(), ids, 2, 2)
    assert folds == choose_folds(_queries(), ids, 2, 2) and not set(folds[0]) & set(folds[1])
    assert all(set(f) <= {"solde", "psc", "mss", "ins", "dmp"} for f in folds)
    with pytest.raises(ConfigError, match="needs 6"):
        choose_folds(_queries(), ids, 3, 2)


def test_held_out_questions_are_out_of_scope_unless_a_person_judged_a_remaining_entry(tmp_path) -> None:
    path = tmp_path / "judged.jsonl"
    path.write_text(
        json.dumps({"query": "Quand le solde est-il versé ?", "entry": "devis", "answers": True})
        + "\n"
        + json.dumps({"query": "Quelle carte pour Pro Santé Connect ?", "entry": "ins", "answers": False})
        + "\n",
        encoding="utf-8",
    )
    judged = Judgements.load(path)
    asked = {q.query: q for q in as_asked(_queries(), {"solde", "psc"}, {"mss", "ins", "dmp", "devis"}, judged)}
    assert asked["Quand le solde est-il versé ?"].relevant == ["devis"]
    assert asked["Quand le solde est-il versé ?"].tags["scope"] == "held_out_sibling"
    assert asked["Quelle carte pour Pro Santé Connect ?"].relevant == []
    assert asked["Quelle carte pour Pro Santé Connect ?"].tags["scope"] == "held_out"
    assert asked["Quel opérateur pour la messagerie MSSanté ?"].relevant == ["mss"]
    path.write_text('{"query": "x", "answers": "maybe"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match="line 1"):
        Judgements.load(path)


def test_a_holdout_run_builds_each_fold_without_its_entries(service8, tmp_path) -> None:
    folds = choose_folds(_queries(), {e.id for e in service8.index.entries}, 2, 2)
    done = run_holdout(Publisher(service8), _queries(), folds, Judgements(), tmp_path / "holdout")
    for fold in done:
        held_out = [q for q in fold.queries if q.tags.get("scope") == "held_out"]
        assert len(held_out) == 2 and fold.calibration["kind"] == "fitted"
        assert all(not set(fold.held) & set(o.raw_ranking or []) for o in fold.outcomes)
    report = score([q for f in done for q in f.queries], [o for f in done for o in f.outcomes])
    assert "abstention_recall_held_out" in report and report["out_of_scope"] == 2 * (2 + 1)
