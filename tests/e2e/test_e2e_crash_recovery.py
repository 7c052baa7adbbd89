"""Acceptance: kill the poller between every pair of steps, restart it, and nothing happens twice.

The state store's N-th save raises ``SimulatedCrash`` — either before the state is written (the side effect
just made is not recorded) or right after (the intent is recorded, the call not made). The process then
"restarts": new connectors, engine and store on the same database file. For every N up to the number of
saves of a clean run, the account must be reset, signed out and unblocked once, each comment posted once,
and the ticket resolved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from e2e_world import World
from mailunblock.plugin.store import StateStore
from mailunblock.workflows.state import Stage, TicketState

TENANT = "contoso"
ACCOUNT = "adele.vance@contoso.com"
STEP = timedelta(hours=2)
HORIZON = timedelta(hours=30)
RESOLVED_MARKERS = ["ack", "plan", "summary", "eta", "resolved"]


class SimulatedCrash(BaseException):
    """The process dies here (a BaseException, so no ``except Exception`` can swallow it)."""


CrashWhen = Callable[[int, TicketState], bool]  # (number of this save, state being saved) -> crash?


def at_save(number: int) -> CrashWhen:
    """Crash at the ``number``-th save."""
    return lambda count, _state: count == number


def never(_count: int, _state: TicketState) -> bool:
    """Never crash."""
    return False


@dataclass
class CrashingSaves:
    """Replaces ``StateStore.save``: counts saves and crashes (once) at the chosen one."""

    store: StateStore
    crash_when: CrashWhen
    after_write: bool
    count: int = 0
    crashed_in: str = ""

    def __call__(self, state: TicketState) -> None:
        """Save, crashing before or after the write when this is the chosen save."""
        self.count += 1
        crash = not self.crashed_in and self.crash_when(self.count, state)
        if crash:
            self.crashed_in = (f"save {self.count}: stage={state.stage} pending={list(state.pending)} "
                               f"closing={list(state.closing[:1])}")
        if crash and not self.after_write:
            raise SimulatedCrash
        StateStore.save(self.store, state)
        if crash:
            raise SimulatedCrash


@dataclass
class Run:
    """What one remediation with a crash left behind."""

    key: str
    final: TicketState
    effects: Counter[tuple[str, str, str]]
    markers: Counter[str]
    saves: int
    crashed_in: str


def remediate(world: World, monkeypatch: pytest.MonkeyPatch, crash_when: CrashWhen, after_write: bool) -> Run:
    """One ticket for the account, from a fresh block to its end, with at most one crash on the way."""
    # Past the re-block window (7 days): each run is a fresh block, not "blocked again", and a new UTC day
    # for Exchange's daily unblock limit.
    world.advance(timedelta(days=8))
    world.sandbox.microsoft.block(TENANT, ACCOUNT)
    world.restart()
    before = world.effects()
    key = world.new_ticket(ACCOUNT)
    saves = CrashingSaves(world.runtime.store, crash_when, after_write)
    monkeypatch.setattr(world.runtime.store, "save", saves)
    approved = False
    end = world.now() + HORIZON
    try:
        while world.now() < end:
            try:
                world.poller.run_cycle()
            except SimulatedCrash:
                world.restart()  # a new process: fresh objects, no crash injection
            state = world.runtime.store.load(key)
            if state is not None and state.is_terminal:
                break
            if not approved and "plan" in world.markers(key):
                world.approve(key)
                approved = True
            world.advance(STEP)
        final = world.state(key)
    finally:
        if not world.state(key).is_terminal:  # leave the account free for the next run
            world.runtime.store.forget(key)
            world.jira.set_labels(key, [])
    return Run(key, final, world.effects() - before, Counter(world.markers(key)), saves.count, saves.crashed_in)


def problems_of(world: World, run: Run) -> list[str]:
    """Everything wrong with one run (empty when the acceptance criteria hold)."""
    found: list[str] = []
    if run.final.stage is not Stage.RESOLVED:
        found.append(f"ended {run.final.stage} ({run.final.refusal}: {run.final.refusal_detail})")
    expected = world.remediated(TENANT, ACCOUNT)
    if run.effects != expected:
        found.append(f"effects {dict(run.effects)}")
    if run.markers != Counter(RESOLVED_MARKERS):
        found.append(f"comments {dict(run.markers)}")
    if run.final.stage is Stage.RESOLVED and (
        world.labels(run.key) != ["mail-unblocked"] or world.status_category(run.key) != "done"
    ):
        found.append(f"ticket labels {world.labels(run.key)}, status {world.jira.issue(run.key).status}")
    return found


@pytest.fixture(scope="module")
def clean_run_saves(shared_world: World) -> int:
    """How many saves a remediation makes when nothing crashes."""
    with pytest.MonkeyPatch.context() as patch:
        run = remediate(shared_world, patch, never, False)
    assert problems_of(shared_world, run) == []
    assert run.saves > 10  # at least one before each side effect: comments, reset, revocation, unblock, closing
    return run.saves


def sessions_revoked(_count: int, state: TicketState) -> bool:
    """The first save recording that the sessions were revoked."""
    return state.sessions_revoked_at is not None


def unblock_intended(_count: int, state: TicketState) -> bool:
    """The save recording the intent to unblock, before Exchange is called."""
    return bool(state.unblock_intents) and not state.unblocked_addresses


@pytest.mark.parametrize("after_write", [False, True], ids=["before-the-save", "after-the-save"])
def test_a_crash_at_any_save_never_repeats_or_loses_a_step(
    shared_world: World, clean_run_saves: int, monkeypatch: pytest.MonkeyPatch, after_write: bool
) -> None:
    failures: dict[str, list[str]] = {}
    crashes = 0
    for number in range(1, clean_run_saves + 2):  # + 1: a crash that never comes changes nothing
        run = remediate(shared_world, monkeypatch, at_save(number), after_write)
        monkeypatch.undo()
        crashes += bool(run.crashed_in)
        found = problems_of(shared_world, run)
        if found:
            failures[run.crashed_in or f"save {number} (no crash)"] = found
    assert failures == {}, "\n".join(f"{where}: {what}" for where, what in failures.items())
    assert crashes == clean_run_saves, "every save must have crashed once"


def test_sessions_revoked_but_not_recorded_are_not_revoked_again(
    shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph's signInSessionsValidFromDateTime, read before the call, tells whether it went through."""
    run = remediate(shared_world, monkeypatch, sessions_revoked, after_write=False)
    assert run.crashed_in
    assert problems_of(shared_world, run) == []


def test_an_unblock_recorded_but_not_sent_still_ends_resolved(
    shared_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = remediate(shared_world, monkeypatch, unblock_intended, after_write=True)
    assert run.crashed_in
    assert problems_of(shared_world, run) == []
