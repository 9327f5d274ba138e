"""What fitting the confidence on the FAQ costs at build time, beside what embedding it costs, on three FAQs:
10 CNIL entries, the 523 CNIL entries, and 2,000 entries made of the CNIL answers split by paragraph.

    python -m bench.calibration [--quick]

Each FAQ is built in a fresh folder with the fit (RAG_SELF_CALIBRATION=always); the build records how long
the fit took, the rest of the build is embedding. Writes bench/calibration.json and bench/CALIBRATION.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.common import CNIL, OUT, machine
from rag.config import Settings
from rag.corpus.sources import load_corpus
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService


def faqs(folder: Path, quick: bool) -> dict[str, Path]:
    """The FAQ files of the benchmark, written into ``folder``."""
    entries = load_corpus([CNIL]).entries
    paragraphs = [
        {"id": f"{e.id}-{n}", "question": e.question, "answer": part.strip()}
        for e in entries
        for n, part in enumerate(e.answer.split("\n"))
        if len(part.strip()) > 80
    ][: 300 if quick else 2000]
    sets = {
        "10 entries": [{"id": e.id, "question": e.question, "answer": e.answer} for e in entries[:10]],
        f"{len(paragraphs)} paragraphs": paragraphs,
    }
    if not quick:
        sets["523 entries"] = [{"id": e.id, "question": e.question, "answer": e.answer} for e in entries]
    paths = {}
    for name, rows in sets.items():
        path = folder / (name.replace(" ", "-") + ".jsonl")
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths[name] = path
    return paths


def measure(source: Path, folder: Path) -> dict:
    settings = Settings(sources=[source], index_dir=folder / "index", self_calibration="always")
    started = time.perf_counter()
    fitted = Publisher(QueryService(settings)).build()
    total = time.perf_counter() - started
    record = fitted.manifest.calibration
    fit = record.seconds if record and record.kind == "fitted" else 0.0
    entries = fitted.manifest.counts.entries
    return {
        "entries": entries,
        "chunks": fitted.manifest.counts.chunks,
        "build_s": round(total, 1),
        "fit_s": fit,
        "embedding_s": round(total - fit, 1),
        "fit_s_per_100_entries": round(100 * fit / entries, 2),
        "fit_share_of_embedding": round(fit / max(total - fit, 1e-9), 3),
        "calibration": record.model_dump() if record else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="300 paragraphs, no 523-entry FAQ")
    args = parser.parse_args()
    results = {"machine": machine(), "faqs": {}}
    with tempfile.TemporaryDirectory(prefix="rag-bench-calibration-") as tmp:
        for name, path in faqs(Path(tmp), args.quick).items():
            print(f"building {name} …", flush=True)
            results["faqs"][name] = measure(path, Path(tmp) / path.stem)
    (OUT / "calibration.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    lines = [
        "# The confidence fitted on the FAQ: what it costs at build time",
        "",
        f"Measured by `python -m bench.calibration` on {results['machine']['cpu']} ({results['machine']['cores']} "
        f"cores), {results['machine']['date']}. The fit asks three questions about each entry (at most "
        "300 entries), each with its entry present and left out, and 86 unrelated ones.",
        "",
        "| FAQ | entries | chunks | embedding (s) | fit (s) | fit per 100 entries (s) | fit / embedding | "
        "expected answered / held-out declined / unrelated declined |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in results["faqs"].items():
        expected = (row["calibration"] or {}).get("expected") or {}
        rates = " / ".join(f"{expected.get(k, 0):.2f}" for k in ("answered", "held_out_declined", "unrelated_declined"))
        lines.append(
            f"| {name} | {row['entries']} | {row['chunks']} | {row['embedding_s']} | {row['fit_s']} | "
            f"{row['fit_s_per_100_entries']} | {row['fit_share_of_embedding']:.0%} | {rates} |"
        )
    (OUT / "CALIBRATION.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
