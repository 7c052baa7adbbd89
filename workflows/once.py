"""Values built on first use, once per process, however many threads ask at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


def once(build: Callable[[], T]) -> Callable[[], T]:
    """``build()``, called by the first caller only; the others wait for it, then share its result.

    ``functools.cache`` lets each thread that misses build its own: the first poll cycle's 64 workers built
    the state schema (about 20 ms each) 35 times over. Once built, a call takes no lock.
    """
    lock = threading.Lock()
    built: list[T] = []

    @wraps(build)
    def get() -> T:
        if not built:
            with lock:
                if not built:
                    built.append(build())
        return built[0]

    return get
