"""Where and how the kernel runs ``mailunblock run`` (``[poller] cpus``, ``[poller] batch_scheduling``).

The poller is many threads waiting on I/O in one interpreter: only one of them runs Python at a time, so
the process needs about one core whatever the machine has. Left to run on every core, each hand-off of the
interpreter lock wakes a thread on another core, which then waits for the lock: on a 2-core machine, a
1000-ticket burst spent about a sixth more CPU that way, with twice the context switches. On the CPUs
named, the threads hand the lock to each other where it already is.

On one core, what remains is the kernel's habit of running a woken thread at once: a thread that hands
over a write's result, or a reply that arrives, puts the thread holding the interpreter lock aside for one
that can only wait for it. Batch scheduling (``SCHED_BATCH``) tells the kernel the process is throughput
work: woken threads wait for the running one's time slice instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailunblock.plugin.config import PollerConfig

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


def batch_schedule() -> None:
    """Schedule every thread of this process, and those it starts later, as batch work (Linux).

    Raises AffinityError when the system has no batch scheduling or refuses it; the threads set before the
    refusal get their previous policy back.
    """
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None or not hasattr(os, "sched_setscheduler") or not _TASKS.is_dir():
        raise AffinityError("poller.batch_scheduling: this system has no batch scheduling (Linux only); "
                            "leave it off")
    done: list[tuple[int, int, os.sched_param]] = []
    # A thread started later inherits the policy of the thread that starts it: the ones running now are set.
    for task in _TASKS.iterdir():
        tid = int(task.name)
        try:
            before = os.sched_getscheduler(tid), os.sched_getparam(tid)
            os.sched_setscheduler(tid, batch, os.sched_param(0))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
        except OSError as exc:
            for tid_set, policy, param in done:
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(tid_set, policy, param)
            raise AffinityError(f"poller.batch_scheduling: the system refuses batch scheduling "
                                f"({exc.strerror or exc}); leave it off") from None
        done.append((tid, *before))


def place(poller: PollerConfig) -> None:
    """Apply ``[poller] cpus`` and ``[poller] batch_scheduling`` (AffinityError: one of them cannot be)."""
    if poller.cpus is not None:
        pin_process(poller.cpus)
    if poller.batch_scheduling:
        batch_schedule()
