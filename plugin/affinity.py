"""Where and how ``mailunblock run`` runs: ``[poller] cpus``, ``batch_scheduling``, ``malloc_arena_max``.

The poller is many threads waiting on I/O in one interpreter: only one of them runs Python at a time, so
the process needs about one core whatever the machine has. Left to run on every core, each hand-off of the
interpreter lock wakes a thread on another core, which then waits for the lock: on a 2-core machine, a
1000-ticket burst spent about a sixth more CPU that way, with twice the context switches. On the CPUs
named, the threads hand the lock to each other where it already is.

On one core, what remains is the kernel's habit of running a woken thread at once: a thread that hands
over a write's result, or a reply that arrives, puts the thread holding the interpreter lock aside for one
that can only wait for it. Batch scheduling (``SCHED_BATCH``) tells the kernel the process is throughput
work: woken threads wait for the running one's time slice instead.

Memory (``[poller] malloc_arena_max``): glibc's allocator gives threads separate arenas, up to eight per
core, and memory freed in one arena is reused by its own threads only. With dozens of workers allocating
response bodies and state documents, the freed space scatters over many arenas and the process's resident
memory creeps up for as long as it runs, though what Python holds stays flat (about 13 MB in the burst
benchmark, traced): 5000 tickets peaked at 159 to 167 MB against 133 MB for 1000. With two arenas: 142 MB
against 123 to 128 MB, for the same CPU within the benchmark's noise. ``MALLOC_ARENA_MAX`` does the same from
the environment; it is left alone when set.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailunblock.plugin.config import PollerConfig

_TASKS = Path("/proc/self/task")  # one entry per thread of this process (Linux)
_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
DEFAULT_ARENAS = 2  # where glibc allocates and neither the configuration nor the environment says otherwise


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


def _on_glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):  # no confstr, or a C library that does not know the name
        return False


def limit_malloc_arenas(arenas: int) -> None:
    """Let the C allocator use at most ``arenas`` arenas from now on (glibc; 0: its own default, 8 per core).

    Takes effect for the threads that allocate for the first time afterwards: call it before the workers
    start. Raises AffinityError where the C library is not glibc.
    """
    if not _on_glibc():
        raise AffinityError("poller.malloc_arena_max: only glibc's allocator has arenas (Linux); leave it unset")
    if not ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas):
        raise AffinityError(f"poller.malloc_arena_max: the C library refuses {arenas} arenas")


def place(poller: PollerConfig) -> None:
    """Apply ``[poller] cpus``, ``batch_scheduling`` and ``malloc_arena_max`` (AffinityError: one cannot be).

    ``malloc_arena_max`` unset: two arenas where the C library is glibc and ``MALLOC_ARENA_MAX`` is not set,
    else nothing changes.
    """
    if poller.cpus is not None:
        pin_process(poller.cpus)
    if poller.batch_scheduling:
        batch_schedule()
    if poller.malloc_arena_max is not None:
        limit_malloc_arenas(poller.malloc_arena_max)
    elif _on_glibc() and "MALLOC_ARENA_MAX" not in os.environ:
        limit_malloc_arenas(DEFAULT_ARENAS)
