"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from rag.models import Answer, Entry, Question, SearchResult, Text

FilterValue = Union[Text, StrictInt, StrictBool, list[Union[Text, StrictInt]]]  # noqa: UP007


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "Comment déposer une demande de solde ?", "k": 3},
                {"query": "How do I log in with Pro Santé Connect?", "k": 5, "filters": {}},
            ]
        },
    )

    query: Text = Field(description="the question, in French or English")
    k: StrictInt | None = Field(None, description="how many FAQ entries to return; default: RAG_DEFAULT_K")
    filters: dict[Text, FilterValue] = Field(
        default_factory=dict, description='entry metadata to match, e.g. {"theme": "Internet"}'
    )

    def question(self, query: str) -> Question:
        """The question as the service takes it (``query``: the text once checked)."""
        return Question(query=query, k=self.k, filters=self.filters, history=getattr(self, "history", []))


class AskRequest(SearchRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"query": "Que faire si la VA n'est pas signée par le client ?", "stream": False}]
        },
    )

    stream: StrictBool = Field(False, description="answer as Server-Sent Events: passages, pieces, then citations")
    history: list[Text] = Field(
        default_factory=list,
        max_length=50,
        description="the user's earlier questions in this conversation, oldest first: a follow-up is read with them",
    )


class SearchResponse(SearchResult):
    took_ms: float


class AskResponse(Answer):
    took_ms: float
    answer_id: str = Field(description="give it back to POST /feedback")


class EntryResponse(Entry):
    url: str = Field(description="the entry's own URL, or its page in this service")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"answer_id": "3f9c…", "helpful": False, "comment": "Incomplet"}]},
    )

    answer_id: Text
    helpful: StrictBool
    comment: Text | None = None


class ErrorBody(BaseModel):
    code: str = Field(examples=["empty_query"])
    message: str = Field(examples=["the query is empty; write a question"])


class ErrorResponse(BaseModel):
    error: ErrorBody
