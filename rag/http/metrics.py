"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_requests_total", "HTTP requests", ["endpoint", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "rag_request_duration_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.abstentions = Counter(
            "rag_abstentions_total", "Questions the service asserted no answer to", ["endpoint"], registry=self.registry
        )
        self.outcomes = Counter(
            "rag_outcomes_total",
            "Questions by outcome: answered, suggested (the nearest entries, no answer asserted), declined",
            ["outcome", "channel"],
            registry=self.registry,
        )
        self.index_entries = Gauge("rag_index_entries", "FAQ entries in the loaded index", registry=self.registry)
        self.index_vectors = Gauge("rag_index_vectors", "Vectors in the loaded index", registry=self.registry)
        self.index_version = Gauge(
            "rag_index_info", "The loaded index (value 1)", ["version", "embedder"], registry=self.registry
        )
        self.citations_removed = Counter(
            "rag_llm_citations_removed_total",
            "LLM citation markers pointing outside the retrieved passages",
            registry=self.registry,
        )
        self.llm_fallbacks = Counter(
            "rag_llm_fallbacks_total",
            "LLM answers replaced by the extractive answer",
            ["reason"],
            registry=self.registry,
        )
        self.llm_judge = Counter(
            "rag_llm_judge_total",
            "LLM verdicts on whether the top passage answers (yes, no, or why there was none)",
            ["verdict"],
            registry=self.registry,
        )
        self.degraded = Counter(
            "rag_degraded_total",
            "Questions answered without a failed stage (embeddings: ranked with BM25 alone)",
            ["stage"],
            registry=self.registry,
        )
        self.feedback = Counter("rag_feedback_total", "Feedback received", ["helpful"], registry=self.registry)
        self.questions = Counter(
            "rag_questions_logged_total", "Questions put into the question log", ["channel"], registry=self.registry
        )
        self.handoffs = Counter(
            "rag_handoffs_total",
            "Handoffs to a person: offered with an answer, sent to the helpdesk's webhook, or failed",
            ["reason", "stage"],
            registry=self.registry,
        )
        self.chatwoot = Counter(
            "rag_chatwoot_messages_total",
            "Chatwoot messages: answered, handed_off, handoff_failed, skipped (not the bot's), duplicate",
            ["outcome"],
            registry=self.registry,
        )
        self.gaps = Gauge("rag_gaps_open", "Open gaps at the last gap report", registry=self.registry)
        self.dependency = Gauge(
            "rag_dependency_up",
            "Each dependency's state: 1 ok (or off), 0 away or degraded",
            ["dependency", "state"],
            registry=self.registry,
        )

    def searched(self, result: Any, where: str) -> None:
        """A retrieval: declined, the LLM's verdict, a stage done without (see :class:`rag.channels.respond.Meter`)."""
        if result.abstained:
            self.abstentions.labels(where).inc()
        if result.judge:
            self.llm_judge.labels(result.judge).inc()
        if result.degraded:
            self.degraded.labels(result.degraded).inc()

    def answered(self, answer: Any, channel: str, question: bool) -> None:
        """An answer given: a question of the log (unless small talk), a handoff offered, what the LLM did."""
        if question:
            self.questions.labels(channel).inc()
            self.outcomes.labels(answer.outcome, channel).inc()
        if answer.handoff is not None:
            self.handoffs.labels(answer.handoff.reason, "offered").inc()
        if answer.fallback:
            self.llm_fallbacks.labels(answer.fallback_reason or "unknown").inc()
        if answer.citations_removed:
            self.citations_removed.inc(answer.citations_removed)

    def watch(self, recorder: Any, limits: Any) -> None:
        """Count, from their own counters, what the recorder spooled, replayed and dropped, and the requests the
        rate limits let through or refused while their store was away."""
        self.registry.register(_Counted(recorder, limits))

    def set_dependencies(self, states: dict[str, str]) -> None:
        self.dependency.clear()
        for name, state in states.items():
            self.dependency.labels(dependency=name, state=state).set(1 if state in {"ok", "off"} else 0)

    def set_index(self, version: str, embedder: str, entries: int, vectors: int) -> None:
        self.index_version.clear()
        self.index_version.labels(version=version, embedder=embedder).set(1)
        self.index_entries.set(entries)
        self.index_vectors.set(vectors)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Counted(Collector):
    def __init__(self, recorder: Any, limits: Any) -> None:
        self.recorder, self.limits = recorder, limits

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        r = self.recorder
        for name, help_text, value in (
            ("rag_store_spooled", "Answers and votes kept in the local spool while the store was away", r.spooled),
            ("rag_store_replayed", "Spooled answers and votes written to the store once it answered", r.replayed),
            ("rag_store_dropped", "Records lost: no store nor spool took them, or their answer never came", r.dropped),
            (
                "rag_rate_limit_unavailable",
                "Requests let through (or refused) while the rate-limit store was away",
                self.limits.unavailable,
            ),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        yield GaugeMetricFamily("rag_store_pending", "Spooled records of this process not written yet", r.pending)
        pools = getattr(r.store.db, "pools_opened", None)
        if pools is not None:
            yield GaugeMetricFamily("rag_store_pools", "Database connection pools this process opened", pools)
