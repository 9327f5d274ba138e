"""The FAQ team's loop, simulated on the CNIL benchmark through the HTTP API:

1. index the CNIL FAQ without ``--held-out`` entries that have questions in queries.jsonl (the confidence fitted
   on that FAQ, as a new team's service would be);
2. send all the benchmark's questions to ``POST /ask``; vote "not useful" on every answer to a held-out entry's
   question that was not declined (as its asker would);
3. ``GET /admin/gaps``: the share of the held-out entries' questions that land in a gap (coverage), and the
   purity of those gaps against the held-out entry each question belongs to;
4. resolve each gap with ``new_entry`` (the held-out entry's text; a second gap of the same entry as an
   ``alternate`` of it), without a restart; then ask the held-out questions again: R@1 of the new entries, and
   the golden file's lines.

    python -m bench.gaps [--held-out 20] [--seed 0]

Writes bench/gaps.json and prints a table. :func:`simulate` is also run by the slow tests, smaller.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from rag.config import Settings
from rag.corpus.entries import content_id
from rag.corpus.sources import load_corpus
from rag.http import create_app
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from tests.servers import running, wait_until

ROOT = Path(__file__).resolve().parent.parent
CNIL = ROOT.parent / "shared" / "benchmarks" / "cnil-faq"
ADMIN = {"Authorization": "Bearer bench-admin"}


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def simulate(
    folder: Path,
    held_out: int = 20,
    seed: int = 0,
    faq: Path = CNIL / "faq.jsonl",
    queries: Path = CNIL / "queries.jsonl",
) -> dict[str, Any]:
    """Run the loop in ``folder`` on the FAQ ``faq`` (any format) and its ``queries``; the measures, as a dict."""
    entries = [e.model_dump(include={"id", "question", "answer", "url"}) for e in load_corpus([faq]).entries]
    asked = [q for q in _rows(queries) if len(q.get("relevant", [])) <= 1]
    with_questions = sorted({r for q in asked for r in q["relevant"]})
    held = set(random.Random(seed).sample(with_questions, held_out))
    source = folder / "faq-without.jsonl"
    source.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries if e["id"] not in held))
    settings = Settings(
        sources=[source],
        index_dir=folder / "index",
        feedback_db=folder / "feedback.sqlite3",
        admin_token=ADMIN["Authorization"].split()[1],
        index_poll_seconds=0,
    )
    service = QueryService(settings)
    Publisher(service).build()
    by_id = {e["id"]: e for e in entries}
    owner = {q["query"]: (q["relevant"][0] if q["relevant"] and q["relevant"][0] in held else None) for q in asked}
    measures: dict[str, Any] = {"held_out_entries": held_out, "questions": len(asked)}
    with (
        running(create_app(settings, service), ready_path="/ready", timeout=300) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        declined, voted = _ask_and_vote(client, asked, owner)
        held_questions = [q for q, e in owner.items() if e is not None]
        measures.update(held_out_questions=len(held_questions), declined=declined, voted_not_useful=voted)
        report: dict[str, Any] = {}

        def logged() -> bool:
            report.update(client.get("/admin/gaps", params={"limit": 1000}, headers=ADMIN).raise_for_status().json())
            return sum(g["size"] for g in report["gaps"]) >= len(held_questions)

        wait_until(logged, timeout=60, interval=0.5)
        measures.update(_quality(report["gaps"], owner, held_questions))
        measures["report"] = [
            {"id": g["id"], "size": g["size"], "owners": dict(Counter(str(owner.get(q)) for q in g["questions"]))}
            for g in report["gaps"]
        ]
        started = time.perf_counter()
        created = _resolve(client, report["gaps"], owner, by_id)
        measures["resolve_seconds"] = round(time.perf_counter() - started, 1)
        measures["resolved_entries"] = len(created)
        hits = 0
        for question in held_questions:
            result = client.post("/search", json={"query": question}).raise_for_status().json()
            top = result["results"][0]["id"] if result["results"] else None
            hits += top is not None and top == created.get(owner[question])
        measures["r_at_1_after"] = round(hits / len(held_questions), 3)
        measures["r_at_1_full_faq"] = _baseline(held_questions, owner)
        golden = _rows(settings.golden_path)
        expected = {content_id(by_id[e]["question"], by_id[e]["answer"]) for e in created}
        measures["golden_lines"] = len(golden)
        measures["golden_held_out_questions"] = sum(
            1 for g in golden if g["query"] in owner and owner[g["query"]] and set(g["relevant"]) <= expected
        )
    service.close()
    return measures


def _ask_and_vote(client: httpx.Client, asked: list[dict[str, Any]], owner: dict[str, str | None]) -> tuple[int, int]:
    """Every question asked; an answer to a held-out entry's question voted not useful. (declined, voted)."""
    declined = voted = 0
    for row in asked:
        answer = client.post("/ask", json={"query": row["query"]}).raise_for_status().json()
        if owner[row["query"]] is None:
            continue
        if answer["abstained"]:
            declined += 1
        else:
            client.post("/feedback", json={"answer_id": answer["answer_id"], "helpful": False}).raise_for_status()
            voted += 1
    return declined, voted


def _resolve(
    client: httpx.Client, gaps: list[dict[str, Any]], owner: dict[str, str | None], by_id: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """Each gap resolved with the held-out entry most of its questions belong to: a new entry the first time, an
    alternate question of it after. Held-out entry id -> the new entry's id."""
    created: dict[str, str] = {}
    for gap in gaps:
        owners = Counter(owner.get(q) for q in gap["questions"] if owner.get(q))
        if not owners:
            continue
        entry = by_id[owners.most_common(1)[0][0]]
        if entry["id"] in created:
            body = {"action": "alternate", "entry_id": created[entry["id"]]}
        else:
            body = {
                "action": "new_entry",
                "question": entry["question"],
                "answer": entry["answer"],
                "url": entry.get("url"),
            }
        done = client.post(f"/admin/gaps/{gap['id']}/resolve", json=body, headers=ADMIN).raise_for_status().json()
        created.setdefault(entry["id"], done["entry_id"])
    return created


def _baseline(questions: list[str], owner: dict[str, str | None]) -> float | None:
    """R@1 of the same questions on the whole FAQ, their entries present (the committed CNIL eval report)."""
    path = ROOT / "eval" / "reports" / "cnil" / "results.jsonl"
    if not path.exists():
        return None
    ranked = {r["query"]: r["raw_ranking"][:1] for r in _rows(path)}
    found = [q for q in questions if q in ranked]
    return round(sum(ranked[q] == [owner[q]] for q in found) / len(found), 3) if found else None


def _quality(gaps: list[dict[str, Any]], owner: dict[str, str | None], held: list[str]) -> dict[str, Any]:
    """Coverage: the held-out questions in a gap (of any size, and of two questions or more). Purity: in each gap
    holding held-out questions, the share of its questions that belong to its most frequent held-out entry,
    weighted by size — among all its questions (``purity``: the other declined or disliked questions count as
    impure) and among its held-out questions (``purity_held_out``)."""
    out: dict[str, Any] = {"gaps": len(gaps)}
    for label, least in (("", 1), ("_2plus", 2)):
        chosen = [g for g in gaps if g["size"] >= least]
        inside = {q for g in chosen for q in g["questions"]}
        out[f"coverage{label}"] = round(sum(q in inside for q in held) / len(held), 3)
        theirs = [g for g in chosen if any(owner.get(q) for q in g["questions"])]
        pure = sum(Counter(owner.get(q) for q in g["questions"] if owner.get(q)).most_common(1)[0][1] for g in theirs)
        total = sum(len(g["questions"]) for g in theirs)
        out[f"purity{label}"] = round(pure / total, 3) if total else None
        theirs_only = sum(sum(1 for q in g["questions"] if owner.get(q)) for g in theirs)
        out[f"purity_held_out{label}"] = round(pure / theirs_only, 3) if theirs_only else None
        out[f"gaps_with_held_out{label}"] = len(theirs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        measures = simulate(Path(folder), args.held_out, args.seed)
    (ROOT / "bench" / "gaps.json").write_text(json.dumps(measures, indent=1, ensure_ascii=False) + "\n")
    for key, value in measures.items():
        if key != "report":
            print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
