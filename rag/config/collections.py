"""Several FAQs in one deployment: ``RAG_COLLECTIONS`` names a TOML file whose ``[collections.<name>]`` tables give
each FAQ its title, its sources and any setting of its own (flat names, as ``RAG_…`` without the prefix), and whose
``[[keys]]`` tables give API keys the collections they may use::

    [collections.segur]
    title = "FAQ Ségur du numérique en santé"
    sources = ["segur-faq.txt"]
    [collections.cnil]
    title = "FAQ de la CNIL"
    sources = ["cnil/faq.jsonl"]
    [[keys]]
    key = "a-long-random-key"
    collections = ["segur"]
    [[keys]]
    key = "another-long-random-key"
    collections = ["cnil"]
    admin = true         # an admin token of that collection only

Each collection keeps its index versions, its question log, its golden file and its spool in a folder of its own
(``collections/<name>/`` beside the index folder); paths in the file are relative to the file. The first collection
is the default one, served by the routes without ``/c/<name>``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import Settings, is_url
from rag.errors import ConfigError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# what one collection does not inherit from the deployment unless its table sets it: a bot answers for one FAQ
NOT_INHERITED = {
    "chatwoot_url": "",
    "chatwoot_bot_token": None,
    "matrix_homeserver": "",
    "matrix_access_token": None,
    "handoff_webhook": "",
}


@dataclass(frozen=True)
class ScopedKey:
    key: str
    collections: tuple[str, ...]
    admin: bool = False  # an admin token of those collections (else an API key)


@dataclass(frozen=True)
class Collections:
    settings: dict[str, Settings]  # by name, the default first
    keys: tuple[ScopedKey, ...]

    @property
    def default(self) -> str:
        return next(iter(self.settings))

    def allowed(self, key: str) -> tuple[str, ...] | None:
        """The collections a scoped key may use (None: not a scoped key)."""
        return next((k.collections for k in self.keys if k.key == key), None)

    @classmethod
    def load(cls, base: Settings) -> Collections | None:
        """The deployment's collections (None without ``RAG_COLLECTIONS``); a file that cannot be used is a
        :class:`ConfigError` saying what to fix."""
        path = base.http.collections
        if path is None:
            return None
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read RAG_COLLECTIONS {path}: {exc}") from None
        tables = data.get("collections")
        if not isinstance(tables, dict) or not tables:
            raise ConfigError(f"{path} has no [collections.<name>] table; add one per FAQ")
        keys = tuple(_key(row, set(tables), path) for row in data.get("keys", []))
        found = {name: _settings(base, name, table, Path(path).parent) for name, table in tables.items()}
        for name, settings in found.items():
            scoped = [k for k in keys if name in k.collections]
            api_keys = [*settings.http.api_keys, *(k.key for k in scoped if not k.admin)]
            admin = [*settings.http.admin_tokens, *(k.key for k in scoped if k.admin)]
            found[name] = settings.replace(api_keys=api_keys, admin_tokens=admin) if scoped else settings
        return cls(found, keys)


def _key(row: Any, names: set[str], path: Path) -> ScopedKey:
    if not isinstance(row, dict) or not isinstance(row.get("key"), str) or len(row["key"]) < 16:
        raise ConfigError(f"{path}: each [[keys]] needs a key of 16 characters or more")
    allowed = row.get("collections")
    if not isinstance(allowed, list) or not allowed or not set(allowed) <= names:
        raise ConfigError(f"{path}: a key's collections must name collections of the file ({', '.join(names)})")
    return ScopedKey(row["key"], tuple(allowed), row.get("admin") is True)


def _settings(base: Settings, name: str, table: Any, folder: Path) -> Settings:
    if not NAME.match(name) or not isinstance(table, dict):
        raise ConfigError(f"collection {name!r}: a name of lower-case letters, digits, - and _, and a table")
    own = dict(table)
    title, sources = own.pop("title", name), own.pop("sources", None)
    if not isinstance(sources, list) or not sources:
        raise ConfigError(f"collection {name!r} has no sources; list its FAQ files or pages in sources = [...]")
    resolved = [s if is_url(s) else str((folder / s).resolve()) for s in map(str, sources)]
    home = base.index.index_dir.parent / "collections" / name
    changes = {**NOT_INHERITED, "faq_name": str(title), "sources": resolved, "index_dir": home / "built"}
    changes |= {"collections": None, "feedback_db": None}  # its own store, beside its own index
    if base.http.database_url and not {"database_url", "database_schema"} & set(own):
        changes["database_schema"] = f"{base.http.database_schema or 'rag'}_{name}"  # its own tables in a shared one
    try:
        return base.replace(**(changes | own))
    except Exception as exc:  # a setting the collection names that does not exist or does not fit
        raise ConfigError(f"collection {name!r}: {exc}") from None
