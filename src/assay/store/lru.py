"""A small thread-safe LRU with hit statistics, bounded by entries and by bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable

_MISSING = object()


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    max_size: int
    bytes: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __getitem__(self, key: str) -> Any:  # loader-style access: info["hit_rate"]
        return getattr(self, key)


class LRUCache:
    def __init__(self, max_size: int = 256, max_bytes: int = 512 * 1024 * 1024) -> None:
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_size = max_size
        self.max_bytes = max_bytes
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any:
        with self._lock:
            entry = self._data.get(key, _MISSING)
            if entry is _MISSING:
                self.misses += 1
                return _MISSING
            self._data.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int = 0) -> None:
        if self.max_size <= 0 or nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._data[key] = (value, nbytes)
            self._bytes += nbytes
            self._evict()

    def _evict(self) -> None:
        while self._data and (len(self._data) > self.max_size or self._bytes > self.max_bytes):
            _, (_, nbytes) = self._data.popitem(last=False)
            self._bytes -= nbytes

    def discard(self, predicate) -> None:
        with self._lock:
            for key in [k for k in self._data if predicate(k)]:
                self._bytes -= self._data.pop(key)[1]

    def resize(self, max_size: int) -> None:
        if max_size < 0:
            raise ValueError("cache size must be >= 0")
        with self._lock:
            self.max_size = max_size
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0
            self.hits = 0
            self.misses = 0

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self.hits, self.misses, len(self._data), self.max_size, self._bytes)


MISSING = _MISSING
