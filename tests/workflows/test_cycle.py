"""Reads shared by the tickets of one poll cycle: once per cycle, never across cycles."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from mailunblock.connectors.errors import TransientError
from mailunblock.workflows.cycle import CycleCache
from mailunblock.workflows.state import Stage


def test_a_key_is_loaded_once_and_a_failed_load_is_not_kept() -> None:
    cache = CycleCache()
    loads: list[str] = []

    def failing() -> str:
        loads.append("fail")
        raise TransientError("HTTP 502", service="exchange")

    with pytest.raises(TransientError):
        cache.get("list", failing)
    assert cache.get("list", lambda: loads.append("ok") or "value") == "value"
    assert cache.get("list", lambda: loads.append("again") or "other") == "value"
    assert cache.get("other", lambda: "second key") == "second key"
    assert loads == ["fail", "ok"]


def test_concurrent_callers_share_one_load() -> None:
    cache = CycleCache()
    started, release = threading.Event(), threading.Event()
    loads: list[int] = []

    def slow() -> int:
        loads.append(1)
        started.set()
        release.wait(10)
        return 42

    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(cache.get("k", slow)))
    first.start()
    started.wait(10)
    others = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(3)]
    for thread in others:
        thread.start()
    time.sleep(0.05)  # let the others reach the entry's lock (the result is the same if they come later)
    release.set()
    for thread in (first, *others):
        thread.join(10)
    assert results == [42] * 4 and loads == [1]


def _second_ticket(world):
    world.directory.users["u-lidia"] = replace(world.user(), id="u-lidia", user_principal_name="lidia@contoso.com",
                                               mail="lidia@contoso.com", proxy_addresses=("SMTP:lidia@contoso.com",),
                                               display_name="Lidia")
    world.restricted.block("lidia@contoso.com")
    return replace(world.tickets.issue(), key="HELP-102", id="20002", affected_account="lidia@contoso.com")


def test_one_cycle_reads_the_tenant_list_and_the_reporter_profile_once_for_every_ticket(world):
    world.tickets.reporter = replace(world.alice, locale=None)  # the issue does not show it: Jira is asked
    other = _second_ticket(world)
    engine = world.engine()
    engine.begin_cycle()
    first = engine.process(world.tickets.issue(), None)
    second = engine.process(other, None)
    assert first.listed_at_triage == ("alice@contoso.com",) and second.listed_at_triage == ("lidia@contoso.com",)
    assert (world.restricted.reads, world.tickets.profile_reads) == (1, 1)
    engine.begin_cycle()  # the next cycle reads again
    world.tickets.add_comment(world.bob, "/approve")
    assert engine.process(world.tickets.issue(), world.repository.load(first.issue_key)).stage is \
        Stage.WAITING_FOR_SEND
    assert world.restricted.reads == 2  # the pre-unblock check: this cycle's read, not triage's


def test_without_a_cycle_each_pass_reads_afresh(world):
    world.tickets.reporter = replace(world.alice, locale=None)
    other = _second_ticket(world)
    engine = world.engine()
    engine.process(world.tickets.issue(), None)
    engine.process(other, None)
    assert (world.restricted.reads, world.tickets.profile_reads) == (2, 2)


def test_approver_membership_is_read_once_per_person_per_cycle(world):
    other = _second_ticket(world)
    engine = world.engine()
    engine.begin_cycle()
    engine.process(world.tickets.issue(), None)
    engine.process(other, None)
    world.tickets.add_comment(world.bob, "/approve")  # the fake's tickets share their comments
    comments = world.tickets.issue().comments
    engine.begin_cycle()
    states = [engine.process(replace(issue, comments=comments), world.repository.load(issue.key))
              for issue in (world.tickets.issue(), other)]
    assert [s.approved_by for s in states] == ["Bob Agent", "Bob Agent"]
    assert world.tickets.group_reads == 1


def test_a_new_cycle_reads_membership_again(world):
    other = _second_ticket(world)
    engine = world.engine()
    engine.begin_cycle()
    engine.process(world.tickets.issue(), None)
    engine.process(other, None)
    world.tickets.add_comment(world.bob, "/approve")
    comments = world.tickets.issue().comments
    engine.begin_cycle()
    assert engine.process(world.tickets.issue(), world.repository.load(world.key)).approved_by == "Bob Agent"
    world.tickets.approvers.discard(world.bob.ref)  # removed from the group before the next cycle
    engine.begin_cycle()
    state = engine.process(replace(other, comments=comments), world.repository.load(other.key))
    assert state.stage is Stage.AWAITING_APPROVAL and state.approved_by is None
    assert world.tickets.group_reads == 2


def test_workers_of_one_cycle_triaging_one_tenant_at_once_share_one_read_of_its_list(world, monkeypatch):
    issues = []
    for n in range(4):
        name = f"user{n}"
        world.directory.users[f"u-{name}"] = replace(
            world.user(), id=f"u-{name}", user_principal_name=f"{name}@contoso.com", mail=f"{name}@contoso.com",
            proxy_addresses=(f"SMTP:{name}@contoso.com",), display_name=name)
        world.restricted.block(f"{name}@contoso.com")
        issues.append(replace(world.tickets.issue(), key=f"HELP-{200 + n}", id=f"{300 + n}",
                              affected_account=f"{name}@contoso.com"))
    whole_list = world.restricted.list_blocked
    world.restricted.reads = 0
    arrived = threading.Barrier(4)

    def slow_list() -> list:
        time.sleep(0.05)  # the others ask while this read is under way
        return whole_list()

    monkeypatch.setattr(world.restricted, "list_blocked", slow_list)
    engine = world.engine()
    engine.begin_cycle()

    def triage(issue):
        arrived.wait(10)
        return engine.process(issue, None)

    with ThreadPoolExecutor(max_workers=4) as pool:
        states = list(pool.map(triage, issues))
    assert [s.listed_at_triage for s in states] == [(f"user{n}@contoso.com",) for n in range(4)]
    assert world.restricted.reads == 1
