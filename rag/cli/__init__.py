"""The ``rag`` command line: index, search, ask, serve, eval, calibrate, feedback, gaps, curation, log — one module
per command group, sharing :mod:`.common`."""

from __future__ import annotations

from rag.cli import ask, calibrate, evaluate, index, serve, team  # noqa: F401 - each registers its commands
from rag.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
