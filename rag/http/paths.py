"""The path of a request as the app sees it: without the prefix of the mount it is served under (a collection's
``/c/<name>``), which Starlette keeps in ``root_path``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def app_path(scope: Mapping[str, Any]) -> str:
    path = scope.get("path", "")
    return path.removeprefix(scope.get("root_path", "") or "") or "/"
