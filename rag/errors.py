"""Errors that carry a message a user can act on."""

from __future__ import annotations


class RagError(Exception):
    """Base class: the message says what was wrong and what to do."""

    code = "error"


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


class ConfigError(RagError):
    """A setting has a value that cannot work."""

    code = "bad_config"


class PromptError(RagError):
    """A prompt template is missing or lacks a variable."""

    code = "bad_prompt"
