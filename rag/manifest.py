"""The manifest of an index version: what it was built from and how. Every reader uses this type."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 6


class Counts(BaseModel):
    entries: int
    chunks: int
    vectors: int
    reused: int = Field(0, description="vectors taken from the previous version instead of embedded again")


class SourceRecord(BaseModel):
    path: str
    sha256: str


class CalibrationRecord(BaseModel):
    """Which confidence fit the version carries, and how it was made."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="fitted: on this FAQ (calibration.json beside it); shipped: the package's own")
    reason: str = ""


class Manifest(BaseModel):
    """Written last into a version's folder: a folder without a valid one is never taken for an index."""

    model_config = ConfigDict(extra="forbid")

    format_version: int
    version: str = Field(description="sorts by creation time: the cleaning of old versions relies on it")
    embedder: str
    dim: int
    options: dict[str, Any] = Field(description="every build option (IndexSettings); any change means a rebuild")
    vector_index: str
    corpus_checksum: str
    glossary_checksum: str
    counts: Counts
    latent_terms: bool = False
    sources: list[SourceRecord] = Field(default_factory=list)
    created_at: str
    warnings: list[str] = Field(default_factory=list)
    calibration: CalibrationRecord | None = None
