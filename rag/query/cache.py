"""A small thread-safe LRU cache, and the normalisation of queries used as cache keys."""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


def normalise_query(query: str) -> str:
    """Case, spacing and final punctuation do not change what a question asks."""
    return re.sub(r"\s+", " ", query.casefold()).strip().rstrip(" ?!.")


def cache_key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)


class LRUCache(Generic[V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        if self.size <= 0:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
