"""The manifest of an index version: what it was built from and how. Every reader uses this type."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

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


class Expected(BaseModel):
    """Rates measured on the FAQ's own questions with a fit made without them (two halves of the entries)."""

    answered: float = Field(description="questions the FAQ answers that are answered (asserted)")
    shown: float = Field(1.0, description="questions the FAQ answers that are answered or suggested")
    held_out_answered: float = Field(0.0, description="questions about an entry the FAQ lacks that are answered")
    held_out_declined: float = Field(description="questions about an entry the FAQ lacks that are declined")
    unrelated_declined: float = Field(description="unrelated questions and chit-chat that are declined")


class CalibrationRecord(BaseModel):
    """Which confidence fit the version carries, and how it was made."""

    kind: Literal["fitted", "reused", "shipped"] = Field(
        description="fitted on this FAQ (calibration.json beside the manifest), reused from the version before, "
        "or the package's own (shipped)"
    )
    reason: str = Field("", description="why, in a sentence")
    entries: int = Field(0, description="entries whose questions it was fitted on")
    questions: int = Field(0, description="questions asked: each with its entry present and with it left out")
    out_of_scope: int = Field(0, description="unrelated questions and chit-chat asked too")
    source: str = Field("", description="who wrote the questions: offline (from the entries' text) or the LLM")
    expected: Expected | None = None
    seconds: float = 0.0
    from_version: str | None = Field(None, description="the version it was fitted on, when reused")


def stamp() -> tuple[str, str]:
    """A new version's name, which sorts by creation time (the cleaning of old versions relies on it), and
    its creation time."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:4]}", f"{now:%Y-%m-%dT%H:%M:%SZ}"


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
    curated: dict[str, int] = Field(
        default_factory=dict, description="the team's decisions built in: new entries, alternates, out of scope"
    )
