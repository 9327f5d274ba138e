"""Where the shipped FAQ and prompts are, and whether a source is a web address."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# shipped as package data (see pyproject.toml): the Ségur FAQ with its titles and glossary, and the prompts
DEFAULT_SOURCE = Path(str(files("rag.assets.segur").joinpath("segur-faq.txt")))
DEFAULT_PROMPTS = Path(str(files("rag.assets.prompts")))


def is_url(source: object) -> bool:
    """Whether a source is a web address (a FAQ page or a sitemap) rather than a file."""
    return isinstance(source, str) and source.strip().lower().startswith(("http://", "https://"))
