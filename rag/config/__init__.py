"""All configuration in one place: environment variables prefixed ``RAG_`` and an optional ``.env``.

Settings are grouped (``settings.index``, ``settings.retrieval``, ``settings.answer``, ``settings.llm``,
``settings.embeddings``, ``settings.http``) and each group is handed as it is to the stage that uses it.
The environment keeps flat names: ``RAG_FUSION`` sets ``settings.retrieval.fusion``,
``RAG_LLM_MODEL`` sets ``settings.llm.model``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rag.config.groups import (
    AnswerSettings,
    ChannelSettings,
    EgressSettings,
    EmbeddingsSettings,
    GapSettings,
    HttpSettings,
    IndexSettings,
    LLMSettings,
    RetrievalSettings,
    WebSettings,
    _Group,
)
from rag.config.paths import DEFAULT_PROMPTS, DEFAULT_SOURCE, is_url
from rag.errors import ConfigError

__all__ = [
    "DEFAULT_PROMPTS",
    "DEFAULT_SOURCE",
    "AnswerSettings",
    "ChannelSettings",
    "EgressSettings",
    "EmbeddingsSettings",
    "GapSettings",
    "HttpSettings",
    "IndexSettings",
    "LLMSettings",
    "RetrievalSettings",
    "Settings",
    "WebSettings",
    "is_url",
    "load_settings",
]

# group name -> (prefix of its variables after RAG_, model)
GROUPS: dict[str, tuple[str, type[_Group]]] = {
    "index": ("", IndexSettings),
    "retrieval": ("", RetrievalSettings),
    "answer": ("", AnswerSettings),
    "llm": ("llm_", LLMSettings),
    "embeddings": ("embeddings_", EmbeddingsSettings),
    "http": ("", HttpSettings),
    "gaps": ("gap_", GapSettings),
    "channels": ("", ChannelSettings),
    "web": ("", WebSettings),
    "egress": ("egress_", EgressSettings),
}
# flat name (RAG_ variable without the prefix, lower case) -> (group, field)
FLAT: dict[str, tuple[str, str]] = {
    f"{prefix}{name}": (group, name) for group, (prefix, model) in GROUPS.items() for name in model.model_fields
}


# settings that were renamed with another meaning: naming them is an error that says what replaced them
RETIRED = {
    "min_score": "set RAG_MIN_CONFIDENCE instead, a probability in [0, 1] (unset: the calibration's threshold)",
}


def nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"fusion": "bm25"}`` → ``{"retrieval": {"fusion": "bm25"}}``; unknown names are a :class:`ConfigError`."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        if key not in FLAT:
            raise ConfigError(f"unknown setting RAG_{key.upper()}; see the README's configuration table")
        group, name = FLAT[key]
        out.setdefault(group, {})[name] = value
    return out


class _FlatEnv(PydanticBaseSettingsSource):
    """``RAG_<NAME>`` from the environment, then from ``.env``, put into their groups."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # unused: __call__ does it all
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        env_file = Path(".env")
        if env_file.is_file():
            found.update({k.lower(): v for k, v in dotenv_values(env_file).items() if v is not None})
        found.update({k.lower(): v for k, v in os.environ.items()})
        for name, advice in RETIRED.items():
            if f"rag_{name}" in found:
                raise ConfigError(f"RAG_{name.upper()} is no longer read: {advice}")
        return nest({k[4:]: v for k, v in found.items() if k.startswith("rag_") and k[4:] in FLAT})


class Settings(BaseSettings):
    """Every setting of the service, grouped by the stage that uses it."""

    model_config = SettingsConfigDict(extra="forbid")

    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    embeddings: EmbeddingsSettings = Field(default_factory=EmbeddingsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    gaps: GapSettings = Field(default_factory=GapSettings)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    egress: EgressSettings = Field(default_factory=EgressSettings)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _FlatEnv(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _flat_keywords(cls, data: Any) -> Any:
        """``Settings(index_dir=…)`` is ``Settings(index={"index_dir": …})``; flat keywords win over the environment."""
        if not isinstance(data, dict):
            return data
        flat = {k: v for k, v in data.items() if k not in GROUPS}
        merged = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items() if k in GROUPS}
        for group, values in nest(flat).items():
            current = merged.get(group)
            merged[group] = {**current, **values} if isinstance(current, dict) else {**_dump(current), **values}
        return merged

    @property
    def feedback_path(self) -> Path:
        return self.http.feedback_db or self.index.index_dir.parent / "feedback.sqlite3"

    @property
    def golden_path(self) -> Path:
        return self.gaps.golden_file or self.index.index_dir.parent / "golden.jsonl"

    @property
    def spool_path(self) -> Path:
        return self.http.spool_dir or self.index.index_dir.parent / "spool"

    def replace(self, **flat: Any) -> Settings:
        """A copy with some settings changed (flat names), validated, without reading the environment again."""
        data = self.model_dump()
        for group, values in nest(flat).items():
            data[group].update(values)
        return type(self).model_validate(data)


def _dump(value: Any) -> dict[str, Any]:
    return value.model_dump() if isinstance(value, BaseModel) else {}


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value becomes a :class:`ConfigError` naming the variable to fix."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(_variable(e["loc"]) + f": {e['msg']} (got {e.get('input')!r})" for e in exc.errors())
        raise ConfigError(f"invalid setting: {problems}") from None


def _variable(loc: tuple[Any, ...]) -> str:
    if len(loc) >= 2 and loc[0] in GROUPS:
        return f"RAG_{GROUPS[loc[0]][0]}{loc[1]}".upper()
    return "RAG_" + "_".join(str(p) for p in loc).upper()
