"""The confidence fitted on the FAQ it serves, when its index is built.

The shipped fit was made on two FAQs; on another one its signals still rank questions well, but where
"answered" ends and "declined" begins is not the same: a FAQ of close neighbours draws questions it does not
answer much nearer to its entries. So the service asks the FAQ itself. For each entry (a sample on big FAQs),
questions about it, worded as users word theirs (:meth:`rag.publishing.probes.ProbeWriter.user`, or an LLM's
rewordings) are ranked twice: with the entry present — the FAQ answers them when the entry is among the first
three — and with the entry (and any entry that duplicates it) left out of the ranking, as if the FAQ lacked it: a
question about a topic the FAQ covers, asking for something no entry says, the question a helpdesk receives most.
Questions worded after each entry's title (part of its words left out, a word of its answer put in) are asked
both ways too: on a FAQ whose users ask as its titles do, they are nearer to users' questions than the others, so
the answer threshold is placed on each kind. Shipped unrelated questions and chit-chat are asked too. The prior
fit is then recalibrated on these questions, those worded after titles aside
(:func:`rag.indexing.calibration.recalibrate`), and its two thresholds are read on them (:func:`place`): the answer
threshold asserts few of the questions about a missing entry, the suggest threshold declines most unrelated ones.
The rates to expect — answered, suggested, declined — are measured on each half of the entries with a fit made on
the other half.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from importlib.resources import files
from pathlib import Path

import numpy as np
from scipy import sparse

from rag.config import RetrievalSettings
from rag.corpus.sources import read_jsonl
from rag.embedders import Embedder, model_of
from rag.embedders.latents import LatentEncoder, Latents
from rag.errors import ConfigError, EmbeddingsUnavailable
from rag.indexing.calibration import Calibration, recalibrate, refit
from rag.indexing.faq_index import FaqIndex
from rag.indexing.manifest import CalibrationRecord, Expected
from rag.models import ANSWER_DEPTH, Entry, SearchResult
from rag.publishing.probes import Probe, ProbeWriter
from rag.query.decision import Decision, outcome_of
from rag.query.retriever import HybridRetriever

log = logging.getLogger("rag.publishing.selfcalibration")
Progress = Callable[[int, int], None]
MIN_ENTRIES = 4  # below, too few questions to fit on: the prior fit is kept
DUPLICATE = 0.8  # entries sharing this share of their terms answer the same questions
BATCH = 16
OUT_OF_SCOPE = ("unrelated.jsonl", "chitchat.jsonl")
FACT_ENTRIES = 100  # entries asked about a fact they no longer state (each such entry's passage embedded again)
USER_QUESTIONS, USER_MAX = 120, 4  # questions asked about the entries: at least this many, at most this many each
# questions worded after an entry's title (its words partly left out): closer to users' than those made of its words
# on a FAQ whose users ask as its titles do; they place the answer threshold beside the others, not the fit
TITLED = "titled_"
HELD_OUT_ANSWERED = 0.10  # the share of questions about an entry the FAQ lacks that the answer threshold lets through
UNRELATED_DECLINED = 0.90  # the share of unrelated questions the suggest threshold declines
# an answer is asserted when more likely right than wrong, and never only above a confidence nothing reaches
ANSWER_FLOOR, ANSWER_CEILING = 0.5, 0.97


def out_of_scope_questions() -> list[str]:
    """The shipped unrelated questions and chit-chat, asked of every FAQ."""
    folder = Path(str(files("rag.assets")))
    return [
        row["query"]
        for name in OUT_OF_SCOPE
        for _, row in read_jsonl(folder / name)
        if isinstance(row, dict) and row.get("query")
    ]


def duplicates(index: FaqIndex, entries: Sequence[int]) -> dict[int, frozenset[int]]:
    """Each of ``entries`` with the entries that share at least :data:`DUPLICATE` of their terms with it
    (itself included): leaving one out while its twin stays would make a question the FAQ still answers."""
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for entry, chunk_rows in enumerate(index.entry_chunks):
        for term in frozenset().union(*(index.chunk_terms(int(r)) for r in chunk_rows)):
            rows.append(entry)
            cols.append(vocabulary.setdefault(term, len(vocabulary)))
    terms = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(index.entries), len(vocabulary)))
    sizes = np.asarray(terms.sum(axis=1)).ravel()
    shared = (terms[list(entries)] @ terms.T).toarray()
    jaccard = shared / np.maximum(sizes[list(entries)][:, None] + sizes[None, :] - shared, 1)
    return {e: frozenset(np.nonzero(jaccard[i] >= DUPLICATE)[0].tolist()) | {e} for i, e in enumerate(entries)}


def sample(index: FaqIndex, limit: int) -> list[int]:
    """Every entry, or ``limit`` of them drawn at random (the same for the same FAQ)."""
    count = len(index.entries)
    if count <= limit:
        return list(range(count))
    seed = int.from_bytes(hashlib.sha256(index.manifest.corpus_checksum.encode()).digest()[:8], "little")
    return sorted(np.random.default_rng(seed).choice(count, size=limit, replace=False).tolist())


class _Known:
    """Question vectors and latent terms computed beforehand, served as the retriever and decision ask."""

    def __init__(self, vectors: dict[str, np.ndarray], latents: dict[str, Latents]) -> None:
        self.vectors, self.latents = vectors, latents

    def latent_terms(self, text: str) -> Future[Latents]:
        done: Future[Latents] = Future()
        done.set_result(self.latents[text])
        return done

    def spare(self) -> bool:
        return False


@dataclass
class Rows:
    """The signals of every question asked, with its label (1: the FAQ answers it among the first entries),
    the entry it is about (None: out of scope) and how it was asked."""

    signals: list[dict[str, float]]
    labels: list[int]
    entries: list[int | None]
    kinds: list[str]  # present, held_out, out_of_scope

    def add(self, signals: dict[str, float], label: int, entry: int | None, kind: str) -> None:
        self.signals.append(signals)
        self.labels.append(label)
        self.entries.append(entry)
        self.kinds.append(kind)

    def part(self, keep: Callable[[int | None, int], bool]) -> Rows:
        """The rows whose (entry, position) ``keep`` accepts."""
        chosen = [i for i, e in enumerate(self.entries) if keep(e, i)]
        return Rows(
            [self.signals[i] for i in chosen],
            [self.labels[i] for i in chosen],
            [self.entries[i] for i in chosen],
            [self.kinds[i] for i in chosen],
        )


class SelfCalibration:
    """Fits the confidence on one index (see the module's text); :meth:`fit` does everything."""

    def __init__(
        self,
        embedder: Embedder,
        retrieval: RetrievalSettings,
        prior: Calibration,
        limit: int = 300,
        rewordings: Callable[[FaqIndex, list[int]], list[Probe]] | None = None,
        rebuild: Callable[[FaqIndex, list[Entry]], FaqIndex] | None = None,
    ) -> None:
        """``prior``: the fit to recalibrate, when it was made for this encoder (otherwise a fit of its own is
        made); ``rewordings``: an LLM writing the questions about given entries (None: they are made offline);
        ``rebuild``: an index of the FAQ with other entries (its unchanged passages' vectors reused), for the
        questions about a fact an entry no longer states (None: none are asked)."""
        self.embedder, self.retrieval, self.prior, self.limit = embedder, retrieval, prior, limit
        self.rewordings, self.rebuild = rewordings, rebuild
        self.prior_applies = not prior.embedder or model_of(prior.embedder) == model_of(embedder.name)

    def fit(self, index: FaqIndex, progress: Progress | None = None) -> tuple[Calibration | None, CalibrationRecord]:
        """The fitted calibration and how it was made; None with the reason when the prior must be kept."""
        started = time.monotonic()
        entries = sample(index, self.limit)
        if len(entries) < MIN_ENTRIES:
            reason = f"kept the shipped fit: {len(entries)} entries are too few to fit on (at least {MIN_ENTRIES})"
            return None, CalibrationRecord(kind="shipped", reason=reason)
        probes, source = self._probes(index, entries)
        others = out_of_scope_questions()
        titled = ProbeWriter(index).partials(entries)
        try:
            rows = self._rows(index, probes + titled, others, progress, self._facts(index, entries))
            calibration = self._fit(rows)
            expected = self._expected(rows)
        except (ConfigError, EmbeddingsUnavailable) as exc:
            return None, CalibrationRecord(kind="shipped", reason=f"kept the shipped fit: {exc}")
        record = CalibrationRecord(
            kind="fitted",
            reason=f"fitted on {len(probes)} questions about {len(entries)} of its {len(index.entries)} entries",
            entries=len(entries),
            questions=len(probes),
            out_of_scope=len(others),
            source=source,
            expected=expected,
            seconds=round(time.monotonic() - started, 1),
        )
        return calibration, record

    def _fit(self, rows: Rows) -> Calibration:
        about = "this FAQ's own questions"
        fitting = rows.part(lambda e, i: not rows.kinds[i].startswith(TITLED))  # titled ones place the thresholds
        if self.prior_applies:
            fitted = recalibrate(self.prior, fitting.signals, fitting.labels, about)
        else:
            fitted = refit(fitting.signals, fitting.labels, self.embedder.name, about)
        return place(fitted, rows)

    def _probes(self, index: FaqIndex, entries: list[int]) -> tuple[list[Probe], str]:
        if self.rewordings is not None:
            written = self.rewordings(index, entries)
            if written:
                return written, "the LLM's rewordings of the entries"
        each = min(USER_MAX, max(1, -(-USER_QUESTIONS // len(entries))))
        writer = ProbeWriter(index)
        return writer.users(entries, each), "questions made from the entries' words and everyday words"

    def _facts(self, index: FaqIndex, entries: list[int]) -> tuple[list[Probe], FaqIndex | None]:
        """Questions about one fact of some entries, and the index of the FAQ where those entries lack that fact."""
        if self.rebuild is None:
            return [], None
        chosen = entries if len(entries) <= FACT_ENTRIES else entries[:: -(-len(entries) // FACT_ENTRIES)]
        made = ProbeWriter(index).facts(chosen)
        if not made:
            return [], None
        without = {probe.entry: rest for probe, rest in made}
        edited = [
            e.model_copy(update={"answer": without[i]}) if i in without else e for i, e in enumerate(index.entries)
        ]
        return [probe for probe, _ in made], self.rebuild(index, edited)

    def _rows(
        self,
        index: FaqIndex,
        probes: list[Probe],
        others: list[str],
        progress: Progress | None,
        facts: tuple[list[Probe], FaqIndex | None] = ([], None),
    ) -> Rows:
        fact_probes, lacking = facts
        preparing = HybridRetriever(index, None, self.retrieval)
        texts = [p.text for p in probes] + [p.text for p in fact_probes] + others
        prepared = {text: preparing.prepare(text) for text in texts}
        known = self._encode(prepared, index, progress)
        twins = duplicates(index, sorted({p.entry for p in probes + fact_probes}))
        rows = Rows([], [], [], [])
        ask = self._asking(index, known, prepared)
        for probe in probes:
            answers = {index.entries[e].id for e in twins[probe.entry]}
            present = ask(probe.text)
            kind = TITLED if probe.style == "partial" else ""
            label = int(bool(answers & {h.id for h in present.results}))
            rows.add(present.signals, label, probe.entry, kind + "present")
            rows.add(ask(probe.text, twins[probe.entry]).signals, 0, probe.entry, kind + "held_out")
        if lacking is not None:
            ask_lacking = self._asking(lacking, known, prepared)
            for probe in fact_probes:  # the entry stays, without the sentence asked about; its twins are left out
                rows.add(
                    ask_lacking(probe.text, twins[probe.entry] - {probe.entry}).signals, 0, probe.entry, "held_out"
                )
        for text in others:
            rows.add(ask(text).signals, 0, None, "out")
        return rows

    def _asking(self, index: FaqIndex, known: _Known, prepared: dict) -> Callable[..., SearchResult]:
        """Ranks and decides a prepared question on ``index`` with the encodings ``known``."""
        retriever = HybridRetriever(index, known.vectors.__getitem__, self.retrieval)
        decision = Decision(self.prior, latents=known if known.latents and retriever.encodes else None)

        def ask(text: str, exclude: frozenset[int] = frozenset()) -> SearchResult:
            rank = partial(retriever.rank, exclude=exclude)
            return decision.decide(prepared[text], rank, ANSWER_DEPTH, all_signals=True)

        return ask

    def _encode(self, prepared: dict, index: FaqIndex, progress: Progress | None) -> _Known:
        """Every question's vector and latent terms, in batches shared out between the encoder's lanes."""
        dense = list(dict.fromkeys(p.dense for p in prepared.values()))
        texts = list(prepared)
        with_latents = index.latents is not None and isinstance(self.embedder, LatentEncoder)
        jobs: list[tuple[str, list[str]]] = [("vectors", dense[i : i + BATCH]) for i in range(0, len(dense), BATCH)]
        if with_latents:
            jobs += [("latents", texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
        known = _Known({}, {})

        def run(job: tuple[str, list[str]]) -> None:
            kind, part = job
            if kind == "vectors":
                known.vectors.update(zip(part, self.embedder.encode_queries(part)))
            else:
                rows = self.embedder.encode_latents(part, True)  # type: ignore[attr-defined]
                known.latents.update((text, rows.take([i])) for i, text in enumerate(part))

        with ThreadPoolExecutor(max(self.embedder.lanes, 1), thread_name_prefix="calibrate") as pool:
            for done, _ in enumerate(pool.map(run, jobs), start=1):
                if progress:
                    progress(done, len(jobs))
        return known

    def _expected(self, rows: Rows) -> Expected:
        """The share of each kind of question answered, suggested and declined, each half of the entries under a
        fit made on the other half."""
        half = [(e if e is not None else i) % 2 for i, e in enumerate(rows.entries)]
        outcome: dict[str, list[str]] = {"present": [], "held_out": [], "out": []}
        for side in (0, 1):
            train = rows.part(lambda e, i, side=side: half[i] != side)
            test = rows.part(lambda e, i, side=side: half[i] == side)
            fitted = self._fit(train)
            for values, label, titled in zip(test.signals, test.labels, test.kinds):
                model, kind = fitted.model(values), titled.removeprefix(TITLED)
                if kind != "present" or label:
                    p = model.probability(values)
                    outcome[kind].append(outcome_of(p, model.threshold, model.suggest_threshold))

        def share(kind: str, what: str, empty: float) -> float:
            found = outcome[kind]
            return round(found.count(what) / len(found), 3) if found else empty

        return Expected(
            answered=share("present", "answered", 0.0),
            shown=round(1 - share("present", "declined", 1.0), 3),
            held_out_answered=share("held_out", "answered", 0.0),
            held_out_declined=share("held_out", "declined", 1.0),
            unrelated_declined=share("out", "declined", 1.0),
        )


def place(calibration: Calibration, rows: Rows) -> Calibration:
    """The two thresholds of a fit (and of each of its variants), read on the FAQ's own questions: answer at or above
    the confidence that asserts no more than :data:`HELD_OUT_ANSWERED` of the questions about entries it lacks —
    of those made of its words, and of those worded after its titles, each (between :data:`ANSWER_FLOOR` and
    :data:`ANSWER_CEILING`); suggest at or above the one that declines :data:`UNRELATED_DECLINED` of the unrelated
    ones."""

    def placed(model: Calibration) -> Calibration:
        def quantile(kind: str, q: float) -> float:
            found = [model.probability(v) for v, k in zip(rows.signals, rows.kinds) if k == kind]
            return float(np.quantile(found, q)) if found else ANSWER_FLOOR

        out = [model.probability(v) for v, k in zip(rows.signals, rows.kinds) if k == "out"]
        answer = max(quantile(kind, 1 - HELD_OUT_ANSWERED) for kind in ("held_out", TITLED + "held_out"))
        answer = round(min(max(answer, ANSWER_FLOOR), ANSWER_CEILING), 4)
        suggest = float(np.quantile(out, UNRELATED_DECLINED)) if out else answer
        return replace(model, threshold=answer, suggest=round(min(suggest, answer), 6))

    return replace(placed(calibration), variants=tuple(placed(v) for v in calibration.variants))


REUSE_CHANGED = 0.2  # a rebuild keeps the previous version's fit while at most this share of the entries changed


def changed_share(previous: FaqIndex, index: FaqIndex) -> float:
    """The share of entries added, removed or edited between two versions."""
    before = {e.id: (e.question, e.answer) for e in previous.entries}
    after = {e.id: (e.question, e.answer) for e in index.entries}
    changed = sum(1 for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return changed / max(len(before), len(after), 1)
