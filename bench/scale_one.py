"""One scale measurement in its own process (so its memory is its own): build an index type over N
random unit vectors, then time searches and compare with exact search.

Usage: python -m bench.scale_one N SPEC DATA [efSearch|nprobe …]   → one JSON line per search setting.
DATA is ``uniform`` (unit vectors uniformly at random: no neighbourhood structure at all, the worst case
for any approximate index) or ``lowrank`` (random unit vectors drawn from a random 24-dimensional
subspace: like embeddings of real text, whose intrinsic dimension is low, so neighbours are meaningful).
"""

from __future__ import annotations

import json
import resource
import sys
import time

import faiss
import numpy as np

DIM = 384


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def main() -> None:
    n, spec, kind, settings = int(sys.argv[1]), sys.argv[2], sys.argv[3], [int(v) for v in sys.argv[4:]]
    rng = np.random.default_rng(42)
    base_rss = rss_mb()
    data = np.empty((n, DIM), dtype=np.float32)
    basis = rng.standard_normal((24, DIM)).astype(np.float32)
    for start in range(0, n, 100_000):  # generate in slices to bound peak memory
        stop = min(n, start + 100_000)
        if kind == "lowrank":
            rows = rng.standard_normal((stop - start, 24)).astype(np.float32) @ basis
        else:
            rows = rng.standard_normal((stop - start, DIM)).astype(np.float32)
        data[start:stop] = unit(rows)
    # queries: noisy copies of stored vectors (cosine ≈ 0.8 with their source), as a real query has a
    # close passage; pure random queries have no meaningful neighbours in 384 dimensions.
    picks = rng.choice(n, 200, replace=False)
    noise = rng.standard_normal((200, 24)).astype(np.float32) @ basis if kind == "lowrank" else None
    if noise is None:
        noise = rng.standard_normal((200, DIM)).astype(np.float32)
    queries = unit(data[picks] + 0.75 * unit(noise))
    exact_index = faiss.IndexFlatIP(DIM)
    exact_index.add(data)
    _, exact = exact_index.search(queries, 10)
    del exact_index

    started = time.perf_counter()
    index = faiss.index_factory(DIM, spec, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(data[rng.choice(n, min(n, 100_000), replace=False)])
    index.add(data)
    build_s = time.perf_counter() - started
    del data
    after_free = rss_mb()
    for value in settings or [0]:
        if "HNSW" in spec:
            faiss.ParameterSpace().set_index_parameter(index, "efSearch", value)
        elif "IVF" in spec:
            faiss.ParameterSpace().set_index_parameter(index, "nprobe", value)
        times = []
        found = np.empty((len(queries), 10), dtype=np.int64)
        for i, q in enumerate(queries):
            t = time.perf_counter()
            _, rows = index.search(q.reshape(1, -1), 10)
            times.append((time.perf_counter() - t) * 1000)
            found[i] = rows[0]
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]))
        print(
            json.dumps(
                {
                    "n": n,
                    "data": kind,
                    "index": spec,
                    "param": value,
                    "build_s": round(build_s, 1),
                    "search_p50_ms": round(float(np.percentile(times, 50)), 3),
                    "search_p99_ms": round(float(np.percentile(times, 99)), 3),
                    "recall@10": round(recall, 4),
                    "rss_mb_serving": round(after_free, 0),
                    "rss_mb_peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
                    "rss_mb_start": round(base_rss, 0),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
