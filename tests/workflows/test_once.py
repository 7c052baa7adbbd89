"""``once``: a value built by one thread, shared by all."""

from __future__ import annotations

import threading
import time

import pytest
from mailunblock.workflows.once import once


def test_threads_asking_at_the_same_moment_share_one_build() -> None:
    builds: list[object] = []

    @once
    def value() -> object:
        time.sleep(0.05)  # long enough for every thread to arrive while it is being built
        built = object()
        builds.append(built)
        return built

    barrier = threading.Barrier(16)
    seen: list[object] = []

    def ask() -> None:
        barrier.wait()
        seen.append(value())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert seen == builds * 16
    assert value() is builds[0]


def test_a_failed_build_is_tried_again_by_the_next_caller() -> None:
    attempts: list[int] = []

    @once
    def value() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("not yet")
        return 7

    with pytest.raises(OSError, match="not yet"):
        value()
    assert value() == 7
    assert len(attempts) == 2
