"""Errors that carry a message a user can act on, and the HTTP status they map to."""

from __future__ import annotations


class RagError(Exception):
    """Base class: the message says what was wrong and what to do.

    ``status`` is the HTTP status; ``public`` says whether the message may be shown to an HTTP client
    (server-side faults are logged and answered with a generic message).
    """

    code = "error"
    status = 500
    public = False

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers


class ApiError(RagError):
    """A request the service refuses, with its status and code."""

    public = True

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status, self.code = status, code


class SourceError(RagError):
    """A corpus source could not be read or parsed."""

    code = "bad_source"

    def __init__(self, path: object, message: str, *, where: str | None = None) -> None:
        self.path = str(path)
        self.where = where
        loc = f"{self.path}, {where}" if where else self.path
        super().__init__(f"{loc}: {message}")


class IndexNotReady(RagError):
    """The index is missing, corrupt, or was built with other settings."""

    code = "index_not_ready"
    status = 503
    public = True

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "5"})


class ConfigError(RagError):
    """A setting has a value that cannot work."""

    code = "bad_config"


class ParentChanged(RagError):
    """Another version was published while this one was being built from the one before: publishing it would
    undo that one. Build again (a scheduled sync does, at its next turn)."""

    code = "version_conflict"
    status = 409
    public = True

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}; nothing was published, build again to include it")


class EmbeddingsUnavailable(RagError):
    """The embeddings server could not give vectors (down, too slow, refusing, or answering nonsense)."""

    code = "embeddings_unavailable"
    status = 503


class PromptError(RagError):
    """A prompt template is missing or lacks a variable."""

    code = "bad_prompt"


class UnknownFilter(RagError):
    """A filter names a field no entry has."""

    code = "unknown_filter"
    status = 422
    public = True


class UnknownAnswer(RagError):
    """Feedback for an answer id this service never gave."""

    code = "unknown_answer"
    status = 404
    public = True

    def __init__(self, answer_id: str) -> None:
        super().__init__(f"no answer has the id '{answer_id}'")


class StoreUnavailable(RagError):
    """The answers and feedback store cannot be read or written (read-only folder, full disk, database away…);
    retryable: answered with ``Retry-After``."""

    code = "store_unavailable"
    status = 503
    public = True

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers or {"Retry-After": "5"})


class LLMError(RagError):
    """The LLM call failed; ``reason`` is a short machine-readable word. Always answered by a fallback."""

    code = "llm_error"
    status = 502

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
