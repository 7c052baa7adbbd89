"""``[poller] cpus``, ``batch_scheduling`` and ``malloc_arena_max``: the process runs as configured, or says why not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from mailunblock.plugin import affinity
from mailunblock.plugin.affinity import AffinityError, batch_schedule, pin_process
from mailunblock.plugin.cli import main
from mailunblock.plugin.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux only")
batch_only = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="batch scheduling is Linux only")

# Run in a child process: pinning the test process would pin every later test with it.
PINNED = """
import json, os, sys, threading
from mailunblock.plugin.affinity import pin_process
cpu = int(sys.argv[1])
release = threading.Event()
before = threading.Thread(target=release.wait)
before.start()
pin_process([cpu])
after = threading.Thread(target=release.wait)
after.start()
masks = {task: sorted(os.sched_getaffinity(int(task))) for task in os.listdir("/proc/self/task")}
release.set()
print(json.dumps({"threads": len(masks), "masks": sorted(set(map(tuple, masks.values())))}))
"""


@linux_only
def test_every_thread_runs_on_the_cpu_named_those_started_before_too() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1]
    done = subprocess.run([sys.executable, "-c", PINNED, str(cpu)], capture_output=True, text=True, timeout=60,
                          check=True)
    result = json.loads(done.stdout)
    assert result["threads"] == 3  # the main thread, one started before pinning, one after
    assert result["masks"] == [[cpu]]


@linux_only
def test_a_cpu_this_process_may_not_use_is_refused_and_nothing_changes() -> None:
    before = os.sched_getaffinity(0)
    absent = max(before) + 1
    with pytest.raises(AffinityError, match=rf"poller.cpus: CPU {absent} is not available to this process "
                                            rf"\(available: {', '.join(map(str, sorted(before)))}\)"):
        pin_process([min(before), absent])
    assert os.sched_getaffinity(0) == before


def test_a_system_that_cannot_pin_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    with pytest.raises(AffinityError, match="cannot pin a process to CPUs"):
        pin_process([0])


def _example(**poller: object) -> dict[str, object]:
    import tomllib

    data = tomllib.loads((ROOT / "config" / "example.toml").read_text(encoding="utf-8"))
    data["poller"] = {**data.get("poller", {}), **poller}
    return data


@pytest.mark.parametrize(("cpus", "message"), [([], "at least 1"), ([-1], "greater than or equal to 0"),
                                               ([0, 0], "each CPU once")])
def test_cpus_must_name_distinct_cpus(cpus: list[int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_example(cpus=cpus))


def test_cpus_default_to_wherever_the_system_puts_the_process() -> None:
    assert parse_config(_example()).poller.cpus is None
    assert parse_config(_example(cpus=[1, 0])).poller.cpus == [1, 0]


@linux_only
def test_run_refuses_cpus_it_cannot_use_in_one_line(tmp_path: Path) -> None:
    absent = max(os.sched_getaffinity(0)) + 1
    text = (ROOT / "config" / "example.toml").read_text(encoding="utf-8")
    config = tmp_path / "mailunblock.toml"
    config.write_text(text.replace("[poller]\n", f"[poller]\ncpus = [{absent}]\n"), encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--once", "--config", str(config)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip() == f"Error: poller.cpus: CPU {absent} is not available to this process " \
                                    f"(available: {', '.join(map(str, sorted(os.sched_getaffinity(0))))})"


# In a child process too: the policy of the test process would carry over to every later test.
BATCH = """
import json, os, threading
from mailunblock.plugin.affinity import batch_schedule
release = threading.Event()
before = threading.Thread(target=release.wait)
before.start()
batch_schedule()
after = threading.Thread(target=release.wait)
after.start()
policies = {task: os.sched_getscheduler(int(task)) for task in os.listdir("/proc/self/task")}
release.set()
print(json.dumps({"threads": len(policies), "policies": sorted(set(policies.values()))}))
"""


@batch_only
def test_batch_scheduling_covers_every_thread_those_started_before_too() -> None:
    done = subprocess.run([sys.executable, "-c", BATCH], capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(done.stdout)
    assert result["threads"] == 3  # the main thread, one started before, one after
    assert result["policies"] == [os.SCHED_BATCH]


@batch_only
def test_a_refused_batch_policy_puts_back_the_threads_already_set(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    for tid in ("11", "12", "13"):
        (tmp_path / tid).mkdir()
    policies = {11: os.SCHED_OTHER, 12: os.SCHED_OTHER, 13: os.SCHED_OTHER}
    order = sorted(int(task.name) for task in tmp_path.iterdir())
    refused = order[1]  # the second thread the loop meets

    def setscheduler(tid: int, policy: int, _param: os.sched_param) -> None:
        if tid == refused and policy == os.SCHED_BATCH:
            raise PermissionError(1, "Operation not permitted")
        policies[tid] = policy

    monkeypatch.setattr(affinity, "_TASKS", tmp_path)
    monkeypatch.setattr(os, "sched_getscheduler", lambda tid: policies[tid])
    monkeypatch.setattr(os, "sched_getparam", lambda _tid: os.sched_param(0))
    monkeypatch.setattr(os, "sched_setscheduler", setscheduler)
    with pytest.raises(AffinityError) as raised:
        batch_schedule()
    assert str(raised.value) == ("poller.batch_scheduling: the system refuses batch scheduling "
                                 "(Operation not permitted); leave it off")
    assert policies == {11: os.SCHED_OTHER, 12: os.SCHED_OTHER, 13: os.SCHED_OTHER}


def test_a_system_without_batch_scheduling_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "SCHED_BATCH", raising=False)
    with pytest.raises(AffinityError, match=r"^poller.batch_scheduling: this system has no batch scheduling "
                                            r"\(Linux only\); leave it off$"):
        batch_schedule()


def test_batch_scheduling_is_off_unless_asked() -> None:
    assert parse_config(_example()).poller.batch_scheduling is False
    assert parse_config(_example(batch_scheduling=True)).poller.batch_scheduling is True
    with pytest.raises(ConfigError, match="valid boolean"):
        parse_config(_example(batch_scheduling="yes"))


def test_run_refuses_batch_scheduling_it_cannot_have_in_one_line(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "SCHED_BATCH", raising=False)
    text = (ROOT / "config" / "example.toml").read_text(encoding="utf-8")
    config = tmp_path / "mailunblock.toml"
    config.write_text(text.replace("[poller]\n", "[poller]\nbatch_scheduling = true\n"), encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--once", "--config", str(config)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip() == ("Error: poller.batch_scheduling: this system has no batch scheduling "
                                     "(Linux only); leave it off")


# In a child process: the allocator's settings last for the process's life.
ARENAS = """
import ctypes, sys, threading
from mailunblock.plugin.affinity import limit_malloc_arenas
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
limit_malloc_arenas(int(sys.argv[1]))
allocated = threading.Barrier(7)
def allocate():
    block = libc.malloc(1000)  # a thread's first allocation gets it an arena
    allocated.wait()
    libc.free(block)
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
allocated.wait()
libc.malloc_stats()  # one "Arena N:" paragraph per arena, on stderr
for thread in threads:
    thread.join()
"""
glibc_only = pytest.mark.skipif(not affinity._on_glibc(), reason="allocator arenas are glibc's")


@glibc_only
@pytest.mark.parametrize(("arenas", "expected"), [(2, 2), (0, 7)])
def test_threads_share_no_more_arenas_than_allowed(arenas: int, expected: int) -> None:
    done = subprocess.run([sys.executable, "-c", ARENAS, str(arenas)], capture_output=True, text=True, timeout=60,
                          check=True, env={k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"})
    assert len(re.findall(r"^Arena \d+:", done.stderr, re.MULTILINE)) == expected  # 0: one per thread


def test_unset_the_arenas_are_two_on_glibc_unless_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    limits: list[int] = []
    monkeypatch.setattr(affinity, "limit_malloc_arenas", limits.append)
    monkeypatch.setattr(affinity, "_on_glibc", lambda: True)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    config = parse_config(_example()).poller
    assert config.malloc_arena_max is None
    affinity.place(config)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    affinity.place(config)  # glibc read it at start-up
    affinity.place(parse_config(_example(malloc_arena_max=0)).poller)
    monkeypatch.setattr(affinity, "_on_glibc", lambda: False)
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    affinity.place(config)  # another C library: nothing to set
    assert limits == [2, 0]


def test_arenas_asked_of_another_c_library_are_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(affinity, "_on_glibc", lambda: False)
    with pytest.raises(AffinityError, match=r"^poller.malloc_arena_max: only glibc's allocator has arenas "
                                            r"\(Linux\); leave it unset$"):
        affinity.place(parse_config(_example(malloc_arena_max=2)).poller)
    with pytest.raises(ConfigError, match="greater than or equal to 0"):
        parse_config(_example(malloc_arena_max=-1))
