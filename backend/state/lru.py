"""A small least-recently-used map, so that what a process keeps loaded stays bounded."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``size`` entries; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        if key in self._entries:
            self._entries.move_to_end(key)
        return self._entries.get(key)

    def put(self, key: K, value: V) -> V:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def get_or_put(self, key: K, make: Callable[[], V]) -> V:
        """The entry for ``key``, made and kept if missing; safe to call from several threads."""
        with self._lock:
            value = self.get(key)
            return value if value is not None else self.put(key, make())

    def __len__(self) -> int:
        return len(self._entries)
