"""Reads that hold for one poll cycle: a tenant's Restricted users list, approver membership, a profile.

A cycle reads each of these at most once, however many tickets need it, and several workers of one
cycle asking at once share one read. The poller starts a new cycle (``RemediationEngine.begin_cycle``);
nothing outlives it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class _Entry:
    """One key's value, loaded once under the entry's own lock (others wait for it, not for the cache)."""

    __slots__ = ("loaded", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded = False
        self.value: Any = None


class CycleCache:
    """Values read once per cycle, by key; thread-safe. A failed read is not kept: the next caller retries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The value of ``key`` in this cycle, calling ``load`` only if no caller has loaded it yet."""
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
        with entry.lock:
            if not entry.loaded:
                entry.value = load()  # raises: nothing is kept
                entry.loaded = True
            return cast(T, entry.value)
