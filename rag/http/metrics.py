"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
            "rag_abstentions_total", "Questions the service declined", ["endpoint"], registry=self.registry
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
        self.store_errors = Counter(
            "rag_store_errors_total", "Answers or feedback the store could not record", registry=self.registry
        )
        self.feedback = Counter("rag_feedback_total", "Feedback received", ["helpful"], registry=self.registry)

    def set_index(self, version: str, embedder: str, entries: int, vectors: int) -> None:
        self.index_version.clear()
        self.index_version.labels(version=version, embedder=embedder).set(1)
        self.index_entries.set(entries)
        self.index_vectors.set(vectors)

    def render(self) -> bytes:
        return generate_latest(self.registry)
