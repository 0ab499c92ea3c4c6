"""The one least-recently-used cache of the service: ``cachetools.LRUCache`` behind a lock.

Prepared references and reference embeddings (``pipeline.py``) and the CPU workers' reference
canvases (``worker/tasks.py``) are read and filled from request threads at once; cachetools'
caches are not thread-safe on their own. The render pool's per-worker context table
(``sandbox.py``) is not a cache of this kind: the parent decides there what each worker drops.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

__all__ = ["LRU"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A thread-safe LRU of at most ``maxsize`` entries; a hit makes its entry the most recent.

    >>> cache: LRU[str, int] = LRU(2)
    >>> cache.put("a", 1); cache.put("b", 2); cache.get("a"); cache.put("c", 3)
    1
    >>> cache.get("b") is None  # "b" was the least recently used
    True
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"an LRU holds at least one entry, got maxsize={maxsize}")
        self._cache: LRUCache[K, V] = LRUCache(maxsize)
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value, marked most recently used; ``None`` when absent."""
        with self._lock:
            return self._cache.get(key)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recent entry, dropping the least recent one when full."""
        with self._lock:
            self._cache[key] = value

    def __contains__(self, key: object) -> bool:  # no recency update: a membership test is not a use
        with self._lock:
            return key in self._cache

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)
