from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mailunblock.connectors.errors import NotFoundError, TransientError
from mailunblock.connectors.models import Ticket, TicketHead
from mailunblock.plugin.poller import CycleReport, Poller
from mailunblock.plugin.store import StateStore
from mailunblock.workflows.ports import ClaimLost
from mailunblock.workflows.state import Stage, StateSummary, TicketState

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _issue(key: str) -> Ticket:
    return Ticket(key=key, id=key[-1], summary="s", description="", status="Open", status_category="new",
                     labels=("mail-blocked",), reporter=None, created=T0, updated=T0)


def _whole(heads: Sequence[TicketHead]) -> list[Ticket]:
    return [_issue(head.key) for head in heads]


class ScriptedEngine:
    """Moves every ticket one stage on; can be told to blow up on a key."""

    def __init__(self, store: StateStore, explode: dict[str, BaseException] | None = None) -> None:
        self.store = store
        self.explode = explode or {}
        self.processed: list[str] = []
        self.cycles = 0

    def begin_cycle(self) -> None:
        self.cycles += 1

    def needs_work(self, issue: TicketHead, state: StateSummary | None) -> bool:
        return state is None or not state.is_terminal

    def lane(self, issue: Ticket, state: StateSummary | None) -> str:
        return ""

    def process(self, issue: Ticket, state: TicketState | None) -> TicketState:
        self.processed.append(issue.key)
        if issue.key in self.explode:
            raise self.explode[issue.key]
        state = state or TicketState.first_seen(issue.key, T0)
        state.enter(Stage.AWAITING_APPROVAL if state.stage is Stage.NEW else Stage.CANCELLED, T0)
        self.store.save(state)
        return state


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")


def test_cycle_advances_each_selected_ticket_and_reports_stage_changes(store: StateStore) -> None:
    engine = ScriptedEngine(store)
    poller = Poller(lambda: iter([_issue("HELP-1"), _issue("HELP-2")]), _whole, _issue, engine, store)  # type: ignore[arg-type]
    report = poller.run_cycle()
    assert report.ok and report.seen == 2
    assert report.advanced == ["HELP-1: awaiting_approval", "HELP-2: awaiting_approval"]


def test_search_failure_is_a_failed_cycle_not_a_crash(store: StateStore, caplog: pytest.LogCaptureFixture) -> None:
    def search() -> Iterator[Ticket]:
        raise TransientError("HTTP 503", service="jira")

    report = Poller(search, _whole, _issue, ScriptedEngine(store), store).run_cycle()  # type: ignore[arg-type]
    assert report.error == "Jira could not be searched: jira: HTTP 503"
    assert not report.ok
    assert "will retry next cycle" in caplog.text


def test_tickets_that_left_the_selection_are_seen_once_more(store: StateStore) -> None:
    engine = ScriptedEngine(store)
    Poller(lambda: iter([_issue("HELP-1")]), _whole, _issue, engine, store).run_cycle()  # type: ignore[arg-type]
    engine.processed.clear()
    report = Poller(lambda: iter([]), _whole, _issue, engine, store).run_cycle()  # type: ignore[arg-type]
    assert engine.processed == ["HELP-1"]
    assert report.advanced == ["HELP-1: cancelled"]
    engine.processed.clear()
    Poller(lambda: iter([]), _whole, _issue, engine, store).run_cycle()  # type: ignore[arg-type]
    assert engine.processed == []  # terminal now: left alone


def test_a_vanished_ticket_keeps_its_state(store: StateStore) -> None:
    engine = ScriptedEngine(store)
    Poller(lambda: iter([_issue("HELP-1")]), _whole, _issue, engine, store).run_cycle()  # type: ignore[arg-type]

    def gone(key: str) -> Ticket:
        raise NotFoundError("Issue does not exist", service="jira")

    report = Poller(lambda: iter([]), _whole, gone, engine, store).run_cycle()  # type: ignore[arg-type]
    assert report.ok
    assert store.load("HELP-1") is not None


def test_one_broken_ticket_does_not_stop_the_others_and_logs_no_traceback(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine = ScriptedEngine(store, {"HELP-1": ValueError("bad data"), "HELP-2": TransientError("503", service="graph")})
    search = lambda: iter([_issue("HELP-1"), _issue("HELP-2"), _issue("HELP-3")])  # noqa: E731
    report = Poller(search, _whole, _issue, engine, store).run_cycle()  # type: ignore[arg-type]
    assert engine.processed == ["HELP-1", "HELP-2", "HELP-3"]
    assert report.failed == {"HELP-1": "ValueError: bad data", "HELP-2": "graph: 503"}
    assert report.advanced == ["HELP-3: awaiting_approval"]
    assert "Traceback" not in caplog.text


def test_a_stop_signal_during_the_first_cycle_lets_it_finish_and_stops_cleanly() -> None:
    import os
    import signal

    from mailunblock.plugin.poller import CycleReport, run_forever

    class SignalledPoller:
        def __init__(self) -> None:
            self.cycles = 0
            self.finished = 0

        def close(self) -> None:
            pass

        def start_cycle(self, on_done: Callable[[CycleReport], None]) -> None:
            self.cycles += 1
            os.kill(os.getpid(), signal.SIGTERM)  # delivered while the cycle is still working
            self.finished += 1
            on_done(CycleReport())

    poller = SignalledPoller()
    reports: list[CycleReport] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        run_forever(poller, 3600, reports.append)  # type: ignore[arg-type]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert (poller.cycles, poller.finished, len(reports)) == (1, 1, 1)


def test_a_ticket_another_replica_holds_is_left_to_it_until_its_claim_ends(store: StateStore) -> None:
    from mailunblock.plugin.store import ticket_claim

    other = StateStore.from_url(store.engine.url.render_as_string(hide_password=False))
    assert other.claim(ticket_claim("HELP-1"))
    engine = ScriptedEngine(store)
    poller = Poller(lambda: iter([_issue("HELP-1"), _issue("HELP-2")]), _whole, _issue, engine, store)  # type: ignore[arg-type]
    report = poller.run_cycle()
    assert engine.processed == ["HELP-2"] and report.elsewhere == {"HELP-1"} and report.ok
    other.release(ticket_claim("HELP-1"))
    assert poller.run_cycle().advanced == ["HELP-1: awaiting_approval", "HELP-2: cancelled"]


def test_a_dead_replicas_claim_is_taken_over_after_its_lease(tmp_path: Path) -> None:
    from mailunblock.plugin.store import ticket_claim

    url = f"sqlite:///{tmp_path / 'leases.db'}"
    dead, alive = StateStore.from_url(url, lease_seconds=0.5), StateStore.from_url(url, lease_seconds=0.5)
    assert dead.claim(ticket_claim("HELP-1"))  # ... and the replica is killed: nobody renews it
    assert not alive.claim(ticket_claim("HELP-1"))
    time.sleep(0.6)
    assert alive.claim(ticket_claim("HELP-1"))
    with pytest.raises(ClaimLost):  # the dead replica, had it only stalled, can no longer save (no side effect)
        dead.save(TicketState.first_seen("HELP-1", T0))
    alive.save(TicketState.first_seen("HELP-1", T0))


def test_a_state_store_outage_is_a_failed_cycle_not_a_crash(store: StateStore) -> None:
    from sqlalchemy.exc import OperationalError

    class DownStore(StateStore):
        def summaries(self, selected: Collection[str]) -> dict[str, StateSummary]:
            raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))

    down = DownStore(store.engine)
    engine = ScriptedEngine(down)
    report = Poller(lambda: iter([_issue("HELP-1")]), _whole, _issue, engine, down).run_cycle()  # type: ignore[arg-type]
    assert report.error is not None and report.error.startswith("state store unavailable:")
    assert "server closed the connection unexpectedly" in report.error


def test_a_key_returned_twice_in_one_cycle_is_processed_once(store: StateStore) -> None:
    engine = ScriptedEngine(store)
    pages = [_issue("HELP-1"), _issue("HELP-2"), _issue("HELP-1")]  # the pages shifted while we commented
    report = Poller(lambda: iter(pages), _whole, _issue, engine, store).run_cycle()  # type: ignore[arg-type]
    assert report.ok and engine.processed == ["HELP-1", "HELP-2"]


class WaitingEngine(ScriptedEngine):
    """Every open ticket waits for someone (an approval): worked on every cycle, left as it is."""

    def __init__(self, store: StateStore) -> None:
        super().__init__(store)
        self.given: list[Ticket] = []

    def process(self, issue: Ticket, state: TicketState | None) -> TicketState:
        self.given.append(issue)
        return state or TicketState.first_seen(issue.key, T0)


def _heads(*keys: str) -> list[TicketHead]:
    """The selection's answer for tickets unchanged since it last gave them whole."""
    return [TicketHead(key=key, id=key[-1], status="Open", status_category="new", labels=("mail-blocked",),
                       updated=T0) for key in keys]


def _saved(store: StateStore, key: str, stage: Stage) -> None:
    state = TicketState.first_seen(key, T0)
    state.enter(stage, T0)
    store.save(state)


def test_an_unchanged_ticket_is_read_whole_only_when_it_needs_work_and_then_kept(store: StateStore) -> None:
    _saved(store, "HELP-1", Stage.AWAITING_APPROVAL)
    _saved(store, "HELP-2", Stage.CANCELLED)
    reads: list[list[str]] = []

    def read_whole(heads: Sequence[TicketHead]) -> list[Ticket]:
        reads.append([head.key for head in heads])
        return _whole(heads)

    engine = WaitingEngine(store)
    poller = Poller(lambda: iter(_heads("HELP-1", "HELP-2")), read_whole, _issue, engine, store)  # type: ignore[arg-type]
    assert poller.run_cycle().ok and reads == [["HELP-1"]]  # HELP-2 needs nothing: its head is enough
    assert engine.given == [_issue("HELP-1")]  # the engine works on the whole ticket, never on a head
    assert poller.run_cycle().ok and reads == [["HELP-1"]]  # still waiting, unchanged: worked on as kept
    assert engine.given == [_issue("HELP-1")] * 2


def test_the_poller_keeps_a_bounded_number_of_whole_tickets(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailunblock.plugin import poller as poller_module

    monkeypatch.setattr(poller_module, "_KEPT_TICKETS", 2)
    for key in ("HELP-1", "HELP-2", "HELP-3"):
        _saved(store, key, Stage.AWAITING_APPROVAL)
    reads: list[list[str]] = []

    def read_whole(heads: Sequence[TicketHead]) -> list[Ticket]:
        reads.append([head.key for head in heads])
        return _whole(heads)

    poller = Poller(lambda: iter(_heads("HELP-1", "HELP-2", "HELP-3")), read_whole, _issue,  # type: ignore[arg-type]
                    WaitingEngine(store), store)
    poller.run_cycle()
    assert reads == [["HELP-1", "HELP-2", "HELP-3"]]  # one read for all of them, not one per ticket
    poller.run_cycle()
    assert len(reads) == 2 and len(reads[1]) == 1  # two were kept; the one beyond the bound is read again


@pytest.mark.parametrize("known", [True, False], ids=["known", "new"])
def test_tickets_are_read_whole_a_batch_at_a_time_as_the_workers_take_them(
    store: StateStore, monkeypatch: pytest.MonkeyPatch, known: bool
) -> None:
    """New tickets too: a wave's first cycle does not read every ticket whole before the first is worked on."""
    from mailunblock.plugin import poller as poller_module

    monkeypatch.setattr(poller_module, "_READ_BATCH", 2)
    keys = [f"HELP-{n}" for n in range(1, 10)]
    for key in keys if known else ():
        _saved(store, key, Stage.AWAITING_APPROVAL)
    reads: list[int] = []
    held = [0, 0]  # read whole and not worked on yet; the most at any time

    def read_whole(heads: Sequence[TicketHead]) -> list[Ticket]:
        reads.append(len(heads))
        held[0] += len(heads)
        held[1] = max(held)
        return _whole(heads)

    class Counting(WaitingEngine):
        def process(self, issue: Ticket, state: TicketState | None) -> TicketState:
            held[0] -= 1
            return super().process(issue, state)

    engine = Counting(store)
    report = Poller(lambda: iter(_heads(*keys)), read_whole, _issue, engine, store).run_cycle()  # type: ignore[arg-type]
    assert report.ok and sorted(t.key for t in engine.given) == sorted(keys)
    assert sum(reads) == 9 and len(reads) > 1  # not all at dispatch: a batch whenever the worker needs more
    assert held[1] <= 1 + 2  # one per worker and a batch: however many tickets the cycle dispatched


@pytest.mark.parametrize("error", [TransientError("HTTP 503", service="jira"), ValueError("a bug")])
def test_a_ticket_that_cannot_be_read_whole_fails_its_cycle_and_nothing_waits_for_it(
    store: StateStore, error: Exception
) -> None:
    _saved(store, "HELP-1", Stage.AWAITING_APPROVAL)

    def read_whole(heads: Sequence[TicketHead]) -> list[Ticket]:
        raise error

    poller = Poller(lambda: iter(_heads("HELP-1")), read_whole, _issue, WaitingEngine(store), store)  # type: ignore[arg-type]
    report = poller.run_cycle()
    assert list(report.failed) == ["HELP-1"] and not report.ok
    poller.close()  # returns: the ticket is through, not lost in between


def test_a_moved_ticket_keeps_its_state_under_the_new_key(store: StateStore) -> None:
    state = TicketState.first_seen("HELP-1", T0)
    state.issue_id = "1"
    state.enter(Stage.AWAITING_APPROVAL, T0)
    store.save(state)
    moved = Ticket(key="OPS-7", id="1", summary="s", description="", status="Open", status_category="new",
                      labels=("mail-blocked",), reporter=None, created=T0, updated=T0)
    seen: list[tuple[str, Stage | None]] = []

    class Recorder(ScriptedEngine):
        def process(self, issue: Ticket, state: TicketState | None) -> TicketState:
            seen.append((issue.key, state.stage if state else None))
            return super().process(issue, state)

    Poller(lambda: iter([moved]), _whole, _issue, Recorder(store), store).run_cycle()  # type: ignore[arg-type]
    assert seen == [("OPS-7", Stage.AWAITING_APPROVAL)], "the state followed the issue id, not a new triage"
    assert store.load("HELP-1") is None
    after = store.load("OPS-7")
    assert after is not None and after.issue_key == "OPS-7" and after.stage is Stage.CANCELLED
    assert [k for k, _, _ in store.stage_events()] == ["OPS-7"] * 3


class FailingEngine(ScriptedEngine):
    """An engine whose step for each ticket fails (handled: retried later), as the real engine records it."""

    def __init__(self, store: StateStore, service: str, terminal: bool = False) -> None:
        super().__init__(store)
        self.service, self.terminal = service, terminal

    def process(self, issue: Ticket, state: TicketState | None) -> TicketState:
        state = state or TicketState.first_seen(issue.key, T0)
        state.tenant = "contoso"
        state.failure_count += 1
        state.failures = (f"triage (transient): {self.service}: HTTP 503",)
        state.failed_service = self.service
        if self.terminal:
            state.enter(Stage.ESCALATED, T0)
        self.store.save(state)
        return state


def test_a_failed_step_and_an_unreachable_tenant_make_an_unhealthy_cycle(store: StateStore) -> None:
    poller = Poller(lambda: iter([_issue("HELP-1")]), _whole, _issue, FailingEngine(store, "graph"), store)  # type: ignore[arg-type]
    report = poller.run_cycle()
    assert report.ok and not report.healthy  # nothing escaped the engine, yet a step failed
    assert report.step_failures == {"HELP-1": "triage (transient): graph: HTTP 503"}
    assert report.unreachable == {"contoso"}
    assert report.summary() == "cycle FAILED: 1 ticket(s) failed: HELP-1; tenant(s) not reached: contoso"


def test_a_permanent_failure_fails_the_ticket_not_the_tenant(store: StateStore) -> None:
    engine = FailingEngine(store, "graph", terminal=True)
    report = Poller(lambda: iter([_issue("HELP-2")]), _whole, _issue, engine, store).run_cycle()  # type: ignore[arg-type]
    assert report.summary() == "cycle FAILED: 1 ticket(s) failed: HELP-2"


def test_a_quiet_cycle_is_healthy(store: StateStore) -> None:
    report = Poller(lambda: iter([_issue("HELP-1")]), _whole, _issue, ScriptedEngine(store), store).run_cycle()  # type: ignore[arg-type]
    assert report.healthy and report.summary() == "cycle OK: 1 ticket(s) selected"


def test_housekeeping_jobs_run_in_the_scheduler_beside_the_cycle() -> None:
    import os
    import signal
    import threading

    from mailunblock.plugin.poller import CycleReport, Job, run_forever

    ran = threading.Event()

    def housekeeping() -> None:
        ran.set()
        os.kill(os.getpid(), signal.SIGTERM)  # stop once the job has run

    class IdlePoller:
        def start_cycle(self, on_done: Callable[[CycleReport], None]) -> None:
            on_done(CycleReport())

        def close(self) -> None:
            pass

    def broken() -> None:
        raise RuntimeError("a failing job is logged, it does not stop the scheduler")

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        run_forever(IdlePoller(), 3600, lambda _: None,  # type: ignore[arg-type]
                    [Job("broken", broken, 3600), Job("vault-expiry", housekeeping, 3600)])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert ran.is_set()


class ConcurrentEngine(ScriptedEngine):
    """Records how many tickets of each tenant (the key's project) it works on at once; can hold one back."""

    def __init__(self, store: StateStore, hold: str | None = None) -> None:
        super().__init__(store)
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_total = 0
        self.hold, self.release = hold, threading.Event()
        self.started: list[str] = []

    def lane(self, issue: Ticket, state: StateSummary | None) -> str:
        return issue.key.partition("-")[0]

    def process(self, issue: Ticket, state: TicketState | None) -> TicketState:
        lane = self.lane(issue, state)
        with self.lock:
            self.started.append(issue.key)
            self.running[lane] = self.running.get(lane, 0) + 1
            self.peak[lane] = max(self.peak.get(lane, 0), self.running[lane])
            self.peak_total = max(self.peak_total, sum(self.running.values()))
        try:
            if issue.key == self.hold:
                self.release.wait(10)
            else:
                time.sleep(0.05)
            return super().process(issue, state)
        finally:
            with self.lock:
                self.running[lane] -= 1


def test_tickets_of_one_tenant_are_limited_while_tenants_go_in_parallel(store: StateStore) -> None:
    from mailunblock.plugin.poller import Concurrency

    engine = ConcurrentEngine(store)
    issues = [replace(_issue(f"{tenant}-{n}"), id=f"{tenant}{n}")
              for n in range(1, 5) for tenant in ("CONTOSO", "FABRIKAM", "NWIND")]
    poller = Poller(lambda: iter(issues), _whole, _issue, engine, store,  # type: ignore[arg-type]
                    Concurrency(workers=6, per_tenant=2))
    report = poller.run_cycle()
    poller.close()
    assert report.ok and len(report.advanced) == 12
    assert max(engine.peak.values()) == 2  # never more than per_tenant of one tenant
    assert engine.peak_total > 2  # several tenants at once


def test_new_tickets_are_interleaved_over_tenants_once_read_whole(store: StateStore) -> None:
    from mailunblock.plugin.poller import Concurrency

    engine = ConcurrentEngine(store)
    heads = [TicketHead(key=f"{tenant}-{n}", id=f"{tenant}{n}", status="Open", status_category="new",
                        labels=("mail-blocked",), updated=T0) for tenant in ("CONTOSO", "NWIND") for n in (1, 2, 3)]

    def read_whole(wanted: Sequence[TicketHead]) -> list[Ticket]:
        return [replace(_issue(head.key), id=head.id) for head in wanted]

    poller = Poller(lambda: iter(heads), read_whole, _issue, engine, store,  # type: ignore[arg-type]
                    Concurrency(workers=1))
    assert poller.run_cycle().ok
    poller.close()
    assert engine.started == ["CONTOSO-1", "NWIND-1", "CONTOSO-2", "NWIND-2", "CONTOSO-3", "NWIND-3"]


def test_an_overlapping_cycle_leaves_a_ticket_in_flight_to_its_worker(store: StateStore) -> None:
    from mailunblock.plugin.poller import Concurrency

    engine = ConcurrentEngine(store, hold="HELP-1")
    poller = Poller(lambda: iter([_issue("HELP-1"), _issue("HELP-2")]), _whole, _issue, engine, store,  # type: ignore[arg-type]
                    Concurrency(workers=4))
    slow: list[CycleReport] = []
    poller.start_cycle(slow.append)  # HELP-1 is still being worked on when the next cycle starts
    while "HELP-2" not in engine.processed or "HELP-1" not in engine.started:
        time.sleep(0.01)
    overlapping = poller.run_cycle()
    # It returned while HELP-1 is still held (it did not wait for it) and did not start it a second time.
    assert overlapping.ok and engine.started.count("HELP-1") == 1 and not slow
    engine.release.set()
    poller.close()
    assert slow and slow[0].advanced == ["HELP-1: awaiting_approval", "HELP-2: awaiting_approval"]


def test_each_cycle_begins_a_cycle_of_shared_reads_before_the_first_ticket(store: StateStore) -> None:
    engine = ScriptedEngine(store)
    poller = Poller(lambda: iter([_issue("HELP-1")]), _whole, _issue, engine, store)  # type: ignore[arg-type]
    poller.run_cycle()
    poller.run_cycle()
    assert engine.cycles == 2


def test_a_known_ticket_due_for_work_goes_before_the_first_sight_of_a_wave(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailunblock.plugin import poller as poller_module
    from mailunblock.plugin.poller import Concurrency

    monkeypatch.setattr(poller_module, "_READ_BATCH", 1)
    wave = [_issue(f"NEW-{n}") for n in range(1, 6)]
    selection = list(wave)
    engine = ConcurrentEngine(store, hold="NEW-1")
    poller = Poller(lambda: iter(selection), _whole, _issue, engine, store,  # type: ignore[arg-type]
                    Concurrency(workers=1))
    first: list[CycleReport] = []
    poller.start_cycle(first.append)  # the wave: NEW-1 is worked on (held), NEW-2 handed over, 3 to 5 queued
    while "NEW-1" not in engine.started:
        time.sleep(0.01)
    _saved(store, "HELP-9", Stage.AWAITING_APPROVAL)  # e.g. its approval just arrived
    selection.append(_issue("HELP-9"))
    second: list[CycleReport] = []
    poller.start_cycle(second.append)
    engine.release.set()
    poller.close()
    assert first and second
    assert engine.started == ["NEW-1", "NEW-2", "HELP-9", "NEW-3", "NEW-4", "NEW-5"]


def test_claims_are_given_back_once_the_workers_are_idle(store: StateStore) -> None:
    other = StateStore.from_url(store.engine.url.render_as_string(hide_password=False))
    poller = Poller(lambda: iter([_issue("HELP-1"), _issue("HELP-2")]), _whole, _issue,  # type: ignore[arg-type]
                    ScriptedEngine(store), store)
    assert poller.run_cycle().ok
    # Nothing else to claim: another replica (or this one restarted after a kill) can take them at once.
    assert other.claim("ticket:HELP-1") and other.claim("ticket:HELP-2")


def test_a_poller_dropped_without_close_is_collected_and_its_threads_end(store: StateStore) -> None:
    import gc
    import weakref

    from mailunblock.plugin.poller import Concurrency

    before = set(threading.enumerate())
    poller = Poller(lambda: iter([_issue("HELP-1")]), _whole, _issue, ScriptedEngine(store), store,  # type: ignore[arg-type]
                    Concurrency(workers=2, lease_renewal_seconds=0.05))
    assert poller.run_cycle().ok
    started = set(threading.enumerate()) - before
    assert any(t.name == "mailunblock-heartbeat" for t in started)
    dropped = weakref.ref(poller)
    del poller  # a simulated crash: nothing is closed and the claims stay (they lapse with their lease)
    gc.collect()
    assert dropped() is None, "the heartbeat or the workers kept the poller alive"
    for thread in started:
        thread.join(5)
    assert not [t.name for t in started if t.is_alive()]
