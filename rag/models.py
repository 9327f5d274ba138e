"""Data passed between stages: entries, chunks, questions, hits, answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StrictStr, model_validator


def _encodable(text: str) -> str:
    """Refuse lone surrogates (``"\\ud800"``): valid JSON, but no text can be made of them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the text holds a lone surrogate (an invalid \\uXXXX escape); send valid Unicode") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_encodable)]

ANSWER_DEPTH = 3  # a question counts as answered when an entry that answers it is among this many first (the
# extractive answer draws from them; the self-calibration, the eval and the calibration label by it)
SUGGESTED = 3  # entries a suggestion shows, at most
# answered: the answer is asserted with its citations; suggested: the FAQ may answer it, the nearest entries are
# shown without asserting an answer (and a person is offered); declined: the FAQ does not answer it
Outcome = Literal["answered", "suggested", "declined"]
Reason = Literal["declined", "asked", "unsure"]


class Handoff(BaseModel):
    """Offered with an answer when a person should take over."""

    reason: Reason = Field(
        description="declined: the FAQ does not answer; unsure: entries were suggested, not asserted; asked: the user "
        "asked for a person"
    )
    support_url: str | None = Field(None, description="where to reach the helpdesk (RAG_SUPPORT_URL)")
    form: bool = Field(False, description="POST /handoff can send the conversation to the helpdesk")


class Entry(BaseModel):
    """One FAQ entry, as loaded from a source."""

    id: str
    question: str | None = None
    answer: str
    url: str | None = None
    links: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: str = ""
    alternates: list[str] = Field(default_factory=list, description="other phrasings of the question (curated)")
    checked_on: str | None = Field(None, description="the day its web page was last read (ISO date; web sources)")


class Chunk(BaseModel):
    """A piece of an entry's answer; what gets embedded and indexed."""

    entry_id: str
    position: int
    text: str
    question: str | None = None
    url: str | None = None

    @property
    def embed_text(self) -> str:
        """The text given to the encoder and to BM25: the question first, when there is one."""
        return f"{self.question}\n{self.text}" if self.question else self.text


class Question(BaseModel):
    """What is asked, by any interface (HTTP, chat, MCP, the CLI, the eval): the service fills in what is
    left out (``k``: ``RAG_DEFAULT_K``)."""

    query: str
    k: int | None = Field(None, description="how many FAQ entries to return; default: RAG_DEFAULT_K")
    filters: dict[str, Any] = Field(default_factory=dict, description="entry metadata to match (facets)")
    history: list[str] = Field(default_factory=list, description="the user's earlier questions, oldest first")


class Hit(BaseModel):
    """One retrieved FAQ entry."""

    id: str = Field(examples=["a1b2c3d4e5"])
    question: str | None = Field(None, examples=["Comment déposer une demande de solde ?"])
    text: str = Field(description="the entry's best-matching passage")
    score: float = Field(description="fused relevance score (higher is better)")
    url: str | None = Field(None, description="the entry's own URL, or its page in this service")
    metadata: dict[str, Any] = Field(default_factory=dict, description="the entry's other fields (facets)")
    dense_score: float | None = Field(None, description="cosine similarity of the best dense match")
    bm25_score: float | None = Field(None, description="BM25 score of the best lexical match")
    rerank_score: float | None = Field(None, description="the reranker's score, when one is configured")
    checked_on: str | None = Field(None, description="the day the entry's web page was last checked (web sources)")
    stale: bool | None = Field(None, description="its web page has not been checked for RAG_STALE_AFTER_DAYS")


def _outcome_from_abstained(data: Any) -> Any:
    """``outcome`` when only ``abstained`` is given: declined when abstained, answered otherwise."""
    if isinstance(data, dict) and "outcome" not in data and "abstained" in data:
        return {**data, "outcome": "declined" if data["abstained"] else "answered"}
    return data


class SearchResult(BaseModel):
    """What the retriever returns for one query: the ranking, and whether to answer, suggest or decline."""

    query: str
    abstained: bool = Field(description="no answer is asserted (the outcome is suggested or declined)")
    outcome: Outcome = Field(
        "answered",
        description="answered (asserted with citations), suggested (the nearest entries, no answer "
        "asserted) or declined",
    )
    results: list[Hit]
    confidence: float = Field(0.0, description="calibrated probability that the top entry answers the question")
    judge: str | None = Field(
        None, description="the LLM's verdict on the top passage (yes, no, or why none), when asked"
    )
    resolved: str | None = Field(
        None, description="the question answered, when a follow-up was read with the one before"
    )
    degraded: str | None = Field(
        None, description="a stage that failed and was done without: embeddings (BM25 ranked alone)"
    )
    smalltalk: bool = Field(False, exclude=True)  # a greeting or thanks, not a question
    person: bool = Field(False, exclude=True)  # the user asks for a person, not the FAQ
    latent: bool = Field(False, exclude=True)  # the confidence read the question's latent terms
    terms: list[str] = Field(default_factory=list, exclude=True)  # the searched terms, for picking sentences
    own_terms: list[str] = Field(default_factory=list, exclude=True)  # those of the question itself
    signals: dict[str, float] = Field(default_factory=dict, exclude=True)  # what the confidence was computed from

    _outcome = model_validator(mode="before")(_outcome_from_abstained)

    def served(self) -> SearchResult:
        """What a user is shown: no entries when the service declines, the nearest few when it suggests."""
        if self.outcome == "declined" and self.results:
            return self.model_copy(update={"results": []})
        if self.outcome == "suggested" and len(self.results) > SUGGESTED:
            return self.model_copy(update={"results": self.results[:SUGGESTED]})
        return self


class Citation(BaseModel):
    n: int = Field(description="the marker number, as in [n]")
    id: str
    url: str | None = None
    question: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="the entry's other fields (facets)")
    checked_on: str | None = Field(None, description="the day the entry's web page was last checked (web sources)")
    stale: bool | None = Field(None, description="its web page has not been checked for RAG_STALE_AFTER_DAYS")


class Answer(BaseModel):
    """A short answer with numbered citations to retrieved entries (a suggestion: the entries, no answer)."""

    query: str
    answer: str
    abstained: bool = Field(description="no answer is asserted (the outcome is suggested or declined)")
    outcome: Outcome = Field("answered", description="answered, suggested or declined")
    citations: list[Citation]
    passages: list[Hit]
    confidence: float = Field(0.0, description="calibrated probability that the top entry answers the question")
    note: str | None = Field(None, description="a word to the reader, e.g. that the quoted sources are in French")
    resolved: str | None = Field(
        None, description="the question answered, when a follow-up was read with the one before"
    )
    degraded: str | None = Field(
        None, description="a stage that failed and was done without: embeddings (BM25 ranked alone)"
    )
    fallback: bool = Field(False, description="the LLM draft was replaced by the extractive answer")
    fallback_reason: str | None = Field(None, description="why: timeout, http_500, stream_cut, malformed, …")
    citations_removed: int = Field(0, description="LLM citation markers dropped: they pointed outside the passages")
    handoff: Handoff | None = Field(
        None, description="offered when a person should take over (declined, suggested, or asked)"
    )

    _outcome = model_validator(mode="before")(_outcome_from_abstained)

    @classmethod
    def shown(cls, result: SearchResult) -> Answer:
        """What a search showed, as an answer without text: how a search is put into the question log."""
        return cls(
            query=result.query,
            answer="",
            abstained=result.abstained,
            outcome=result.outcome,
            citations=[],
            passages=result.results,
            confidence=result.confidence,
        )
