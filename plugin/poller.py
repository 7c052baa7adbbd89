"""The poller: one cycle reads the tickets that need work and advances each one.

Modelled on Home Assistant's update coordinator: one object, one update method, connector errors mapped
to "this cycle failed" (logged, retried next cycle). Progress lives in the state store, never only here.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Protocol, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from mailunblock.connectors.errors import ConnectorError, NotFoundError
from mailunblock.connectors.models import Ticket, TicketHead
from mailunblock.plugin.logs import ticket_scope
from mailunblock.plugin.store import StateStore, store_error, ticket_claim
from mailunblock.workflows.failures import MICROSOFT_SERVICES
from mailunblock.workflows.ports import AccountBusy, ClaimLost
from mailunblock.workflows.state import StateSummary, TicketState
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

J = TypeVar("J")

# Memory must not follow the backlog: a cycle dispatches the heads of its tickets (a few hundred bytes
# each) and the workers are handed them a batch at a time, read whole (a few KB each) just before:
# this many beyond one per worker, one search page.
_READ_BATCH = 50
# How many whole tickets are kept between cycles for the tickets worked on again while unchanged (waiting
# for someone: an approval, a choice of account); one not kept is read again when it is worked on.
_KEPT_TICKETS = 256


@dataclass
class CycleReport:
    """What one polling cycle did."""

    seen: int = 0
    advanced: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # unexpected errors that escaped the engine
    step_failures: dict[str, str] = field(default_factory=dict)  # steps that failed (retried or escalated)
    unreachable: set[str] = field(default_factory=set)  # tenants (or services) a ticket could not reach
    error: str | None = None
    elsewhere: set[str] = field(default_factory=set)  # tickets another mailunblock was working on

    @property
    def ok(self) -> bool:
        """True when the cycle reached Jira and no ticket failed unexpectedly."""
        return self.error is None and not self.failed

    @property
    def healthy(self) -> bool:
        """True when nothing failed at all: Jira searched, every tenant reached, every step succeeded."""
        return self.ok and not self.step_failures and not self.unreachable

    def summary(self) -> str:
        """One line saying whether the cycle went well, and if not, what failed."""
        problems = [self.error] if self.error else []
        tickets = sorted({*self.failed, *self.step_failures})
        if tickets:
            problems.append(f"{len(tickets)} ticket(s) failed: {', '.join(tickets)}")
        if self.unreachable:
            problems.append(f"tenant(s) not reached: {', '.join(sorted(self.unreachable))}")
        return f"cycle FAILED: {'; '.join(problems)}" if problems else f"cycle OK: {self.seen} ticket(s) selected"


# A selected ticket (whole, or its head: read whole when a worker is about to take it; None: it left the
# selection) and the summary of its stored state.
Candidate = tuple[TicketHead | None, StateSummary | None]


@dataclass(frozen=True)
class _Job:
    """A ticket dispatched by a cycle, waiting for a worker (``done``: counts it through in its cycle)."""

    issue: TicketHead | None
    state: StateSummary | None
    report: CycleReport
    done: Callable[[BaseException | None], None]


class Engine(Protocol):
    """What the poller needs of the remediation engine."""

    def begin_cycle(self) -> None:
        """A new cycle: reads its tickets share are made again, once each."""
        ...

    def process(self, issue: Ticket, state: TicketState | None) -> TicketState:
        """Advance one ticket as far as it goes now; return its saved state."""
        ...

    def needs_work(self, issue: TicketHead, state: StateSummary | None) -> bool:
        """Whether ``process`` would do anything now (a ticket waiting for its check time does not)."""
        ...

    def lane(self, issue: Ticket, state: StateSummary | None) -> str:
        """The tenant the ticket's work goes to ("" while it is not known)."""
        ...


@dataclass(frozen=True)
class Concurrency:
    """How much one process does at once: worker threads, and tickets in flight per tenant."""

    workers: int = 1
    per_tenant: int | None = None  # None: as many as there are workers
    lease_renewal_seconds: float = 20.0  # the claim heartbeat (a third of the lease)


class Poller:
    """Reads the selected tickets and hands each one to a pool of workers running the remediation engine.

    A ticket is worked on by one worker of one replica at a time: the worker claims it in the state store
    (a lease, renewed by a heartbeat and by saves once it runs low), reads its state afresh, advances it, releases it.
    Tickets are handed to the workers round-robin over tenants, at most ``per_tenant`` of one tenant at once,
    a batch at a time, read whole just before (``_feed``: a new ticket's tenant is in its text, so new
    tickets are interleaved once their batch is read); the per-service request limits
    live in the HTTP layer. Two tickets for one account are kept apart by the
    account hold (``StateStore.hold_account``). Cycles may overlap: a ticket still in flight from an
    earlier cycle is left to it.
    """

    def __init__(
        self,
        search: Callable[[], Iterable[TicketHead]],
        read_whole: Callable[[Sequence[TicketHead]], Iterable[Ticket]],
        get_issue: Callable[[str], Ticket],
        engine: Engine,
        store: StateStore,
        concurrency: Concurrency = Concurrency(),
    ) -> None:
        self._search = search
        self._read_whole = read_whole
        self._get_issue = get_issue
        self._engine = engine
        self._store = store
        self._concurrency = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency.workers, thread_name_prefix="mailunblock")
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._kept: OrderedDict[str, Ticket] = OrderedDict()  # key -> the whole ticket, as last worked on
        # Dispatched, not handed to a worker yet: tickets already known (an approval arrived, a retry or a
        # check is due) go before the ones seen for the first time, so a wave's triage does not hold back
        # the remediation of the tickets approved meanwhile.
        self._queued: deque[_Job] = deque()
        self._queued_new: deque[_Job] = deque()
        self._taken = 0  # jobs taken from the queue (being read whole, waiting in the pool, worked on)
        self._feeding = False  # one thread at a time reads a batch whole and hands it over
        self._idle = threading.Condition(self._lock)  # notified when nothing is queued or taken
        self._lanes: dict[str, threading.BoundedSemaphore] = {}
        self._heartbeat: threading.Thread | None = None
        self._closed = threading.Event()
        self.observer: Callable[[CycleReport, float], None] | None = None  # (report, seconds): the metrics

    def run_cycle(self) -> CycleReport:
        """One cycle, waiting until each of its tickets is through; never raises for a ticket or Jira failure.

        (A worker's ``BaseException`` — an interpreter exit, a test's simulated crash — is raised here.)
        """
        done = threading.Event()
        reports: list[CycleReport] = []
        escaped: list[BaseException] = []

        def finished(report: CycleReport) -> None:
            reports.append(report)
            done.set()

        self.start_cycle(finished, escaped.append)
        done.wait()
        if escaped:
            raise escaped[0]
        return reports[0]

    def start_cycle(
        self, on_done: Callable[[CycleReport], None], on_escape: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Search, hand the tickets to the workers and return; ``on_done(report)`` once they are all through.

        Tickets still in flight from an earlier cycle are left to it, so cycles overlap safely: a ticket whose
        approval arrived is taken up by the next cycle even while a slow tenant's tickets of this one run.
        """
        started = time.monotonic()
        self._start_heartbeat()

        def finish(report: CycleReport) -> None:
            report.advanced.sort()
            if self.observer is not None:
                self.observer(report, time.monotonic() - started)
            on_done(report)

        try:
            report, items = self._dispatchable()
        except SQLAlchemyError as exc:
            report = CycleReport(error=f"state store unavailable: {store_error(exc)}")
            log.warning("cycle failed, will retry next cycle: %s", report.error)
            finish(report)
            return
        if not items:
            finish(report)
            return
        remaining = [len(items)]

        def one_done(error: BaseException | None) -> None:
            if error is not None:  # _work catches every Exception: this is a bug or the process ending
                log.error("a worker stopped: %s", type(error).__name__)
                if on_escape is not None:
                    on_escape(error)
            with self._lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                finish(report)

        with self._lock:
            for issue, state in items:
                (self._queued if state is not None else self._queued_new).append(_Job(issue, state, report, one_done))
        self._feed()

    def close(self) -> None:
        """Let the workers finish every ticket handed to them, stop the heartbeat, give back every claim."""
        with self._idle:
            while self._queued or self._queued_new or self._taken:
                self._idle.wait()
        self._closed.set()
        self._pool.shutdown(wait=True)
        self._store.release_all()

    def _dispatchable(self) -> tuple[CycleReport, list[Candidate]]:
        """The cycle's report so far and the tickets to hand to workers, interleaved over tenants.

        They are reserved (in flight) from now on, until their worker is through.
        """
        report = CycleReport()
        self._engine.begin_cycle()  # the reads this cycle's tickets share (a tenant's list, approvers) afresh
        try:
            selected = self._selected()
            report.seen = len(selected)
            candidates = self._candidates(selected)
        except ConnectorError as exc:
            report.error = f"Jira could not be searched: {exc}"
            log.warning("cycle failed, will retry next cycle: %s", report.error)
            return report, []
        items: list[Candidate] = []
        with self._lock:
            for item in candidates:
                if _key_of(*item) not in self._in_flight:  # else an earlier cycle's worker has it, or will
                    self._in_flight.add(_key_of(*item))
                    items.append(item)
        return report, self._by_lane(items)

    def _selected(self) -> dict[str, TicketHead]:
        """The selection by key, each ticket once; what is kept whole of it is what it shows unchanged."""
        # Read every page before acting. The default selection is in order of creation, which our own
        # comments do not change (an ORDER BY updated search shifts under them while it is walked: about
        # a fifth of the tickets were missed per cycle in the burst); a configured JQL may still shift.
        issues = list(self._search())
        selected: dict[str, TicketHead] = {}
        ids: set[str] = set()
        for issue in issues:
            # Pages can shift while we comment (a key can come back on a later page): once per cycle.
            if issue.key in selected or (issue.id and issue.id in ids):
                continue
            selected[issue.key] = issue
            ids.add(issue.id)
        with self._lock:
            self._kept = OrderedDict((key, ticket) for key, ticket in self._kept.items()
                                     if key in selected and selected[key].updated == ticket.updated)
        return selected

    def _candidates(self, selected: dict[str, TicketHead]) -> list[Candidate]:
        """The tickets that need work now, as their heads (read whole a batch at a time as workers take them)."""
        known = self._store.summaries(selected)
        work: list[Candidate] = []
        fresh: list[TicketHead] = []
        # A ticket new to us may be one we knew under another key (moved): one read tells, for all of them.
        elsewhere = self._store.open_keys_by_issue_id([i.id for k, i in selected.items() if k not in known and i.id])
        for key, issue in selected.items():
            state = known.get(key)
            if state is None and elsewhere.get(issue.id, key) != key:
                state = self._moved(issue)
            if state is None:
                fresh.append(issue)
            elif self._engine.needs_work(issue, state):
                work.append((issue, state))
        # New tickets are not read whole here: the first cycle of a wave would read every one of them before
        # any worker starts (and hold them all), where a batch at a time keeps Jira and the workers busy.
        new: list[Candidate] = [(issue, None) for issue in fresh]
        # Tickets we were working on that left the selection (closed, label removed): let the engine
        # see them once more so it can stop cleanly and say what was and was not done.
        ids = {issue.id for issue in selected.values()}
        left: list[Candidate] = [(None, s) for key, s in known.items() if key not in selected and s.issue_id not in ids]
        return new + work + left

    def _feed(self) -> None:
        """Hand queued tickets to the workers, a batch whenever no more than one per worker is left to them.

        A batch's tickets are read whole just before (those not kept: one search per page), so that however
        many tickets the cycles dispatch, only a batch or two of them are held whole at a time.
        """
        while True:
            with self._lock:
                queued = len(self._queued) + len(self._queued_new)
                if self._feeding or not queued or self._taken > self._concurrency.workers:
                    return
                self._feeding = True
                size = min(queued, self._concurrency.workers + _READ_BATCH - self._taken)
                batch = [(self._queued or self._queued_new).popleft() for _ in range(size)]
                self._taken += size
            try:
                self._hand_over(batch)
            finally:
                with self._lock:
                    self._feeding = False

    def _hand_over(self, batch: list[_Job]) -> None:
        """Read the batch's heads whole and give each ticket to a worker (one Jira no longer shows: to none)."""
        failure = ""
        heads = [job.issue for job in batch if job.issue is not None]
        try:
            whole = self._whole(heads)
        except ConnectorError as exc:
            whole, failure = {}, str(exc)
            log.warning("%d ticket(s) could not be read, will retry next cycle: %s", len(heads), exc)
        except Exception as exc:  # a bug: the batch is still through, so that nothing waits for it forever
            whole, failure = {}, f"{type(exc).__name__}: {exc}"
            log.error("reading %d ticket(s) failed unexpectedly (%s); see debug log", len(heads), failure)
            log.debug("details", exc_info=True)
        ready: list[tuple[_Job, Ticket | None]] = []
        for job in batch:
            issue = job.issue if job.issue is None or isinstance(job.issue, Ticket) else whole.get(job.issue.key)
            if job.issue is not None and issue is None:
                if failure:
                    with self._lock:
                        job.report.failed[job.issue.key] = failure
                self._end(job, None)
                continue
            ready.append((job, issue))
        # Known tickets first, as queued; within each group, round-robin over the tenants now known.
        for group in ([r for r in ready if r[0].state is not None], [r for r in ready if r[0].state is None]):
            for job, issue in _round_robin(group, lambda r: self._lane_name(r[1], r[0].state)):
                future = self._pool.submit(self._work, issue, job.state, job.report)
                future.add_done_callback(partial(self._worked, job))

    def _worked(self, job: _Job, future: Future[None]) -> None:
        self._end(job, future.exception())

    def _end(self, job: _Job, error: BaseException | None) -> None:
        """A handed-over ticket is through: free it for later cycles, count it in its own, feed the workers."""
        with self._idle:
            self._in_flight.discard(_key_of(job.issue, job.state))
            self._taken -= 1
            idle = not self._queued and not self._queued_new and not self._taken
            if idle:
                self._idle.notify_all()
        try:
            if idle:  # no claim of ours is coming soon: give the claims back now, not at the next heartbeat
                self._give_back()
            job.done(error)
        finally:
            self._feed()

    def _give_back(self) -> None:
        try:
            self._store.give_back()
        except SQLAlchemyError as exc:  # they lapse with their lease
            log.warning("could not give the claims back: %s", store_error(exc))

    def _whole(self, issues: Sequence[TicketHead]) -> dict[str, Ticket]:
        """By key, the whole tickets of ``issues``: as given, or kept from their last work, else read now.

        The heads not kept are read in one search per page. One that Jira no longer shows under its key is
        left out: the next cycle sees it leave the selection, or move.
        """
        whole = {i.key: i for i in issues if isinstance(i, Ticket)}
        heads = {i.key: i for i in issues if not isinstance(i, Ticket)}
        with self._lock:
            whole.update((key, self._kept[key]) for key, head in heads.items()
                         if key in self._kept and self._kept[key].updated == head.updated)
        unread = [head for key, head in heads.items() if key not in whole]
        if unread:
            read = {t.id: t for t in self._read_whole(unread)}
            whole.update((h.key, read[h.id]) for h in unread if h.id in read and read[h.id].key == h.key)
        return whole

    def _keep(self, issue: Ticket, after: TicketState) -> None:
        """Keep the ticket whole if it will be worked on again as it is (it waits for someone)."""
        again = self._engine.needs_work(issue, after.summary())
        with self._lock:
            self._kept.pop(issue.key, None)
            if again:
                self._kept[issue.key] = issue
                while len(self._kept) > _KEPT_TICKETS:
                    self._kept.popitem(last=False)

    def _by_lane(self, jobs: Sequence[Candidate]) -> list[Candidate]:
        """The jobs interleaved round-robin over tenants, so that one tenant's burst does not starve the others."""
        return _round_robin(jobs, lambda job: self._lane_name(*job))

    def _work(self, issue: Ticket | None, state: StateSummary | None, report: CycleReport) -> None:
        """One ticket, in a worker: claim it, read its state afresh, advance it, give it back."""
        key = _key_of(issue, state)
        lane = self._lane(issue, state)
        try:
            with lane:
                # The state is read afresh with the claim: another replica may have advanced it since the search.
                claimed, stored = self._store.claim_ticket(key)
                if not claimed:
                    log.info("%s: another mailunblock is working on it", key)
                    with self._lock:
                        report.elsewhere.add(key)
                    return
                try:
                    self._claimed(key, issue, stored, report)
                except BaseException:
                    self._store.release(ticket_claim(key))  # at once: this worker or process is going down
                    raise
                self._store.release_soon(ticket_claim(key))  # with this store's next claim: one commit less
        except SQLAlchemyError as exc:
            with self._lock:
                report.failed[key] = f"state store unavailable: {store_error(exc)}"
            log.warning("%s: state store unavailable, will retry next cycle: %s", key, store_error(exc))

    def _claimed(self, key: str, issue: Ticket | None, state: TicketState | None, report: CycleReport) -> None:
        if issue is None:
            if state is None or state.is_terminal:
                return
            try:
                issue = self._get_issue(key)
            except NotFoundError:
                log.warning("%s no longer exists or is not visible; keeping its state", key)
                return
            except ConnectorError as exc:
                with self._lock:
                    report.failed[key] = str(exc)
                return
            if issue.key != key:  # moved out of the selection: Jira answers under the new key
                self._store.rename(key, issue.key)
                state.issue_key = issue.key
        self._advance(issue, state, report)

    def _lane_name(self, issue: TicketHead | None, state: StateSummary | None) -> str:
        if not isinstance(issue, Ticket):  # left the selection, or not read whole yet: the tenant once triaged
            return state.tenant or "" if state is not None else ""
        return self._engine.lane(issue, state)

    def _lane(self, issue: Ticket | None, state: StateSummary | None) -> threading.BoundedSemaphore:
        name = self._lane_name(issue, state)
        limit = self._concurrency.per_tenant or self._concurrency.workers
        with self._lock:
            return self._lanes.setdefault(name, threading.BoundedSemaphore(limit))

    def _moved(self, issue: TicketHead) -> StateSummary | None:
        """The state of a ticket we knew under another key (moved to another project): same issue id."""
        state = self._store.open_state_by_issue_id(issue.id) if issue.id else None
        if state is None or state.issue_key == issue.key:
            return None
        log.warning("%s moved to %s: its remediation continues under the new key", state.issue_key, issue.key)
        self._store.rename(state.issue_key, issue.key)
        state.issue_key = issue.key
        return state.summary()

    def _start_heartbeat(self) -> None:
        """Renew this process's claims while it runs (a save renews one running low; a long wait does not)."""
        with self._lock:
            if self._heartbeat is not None:
                return
            # The thread holds the store, not the poller: a poller dropped without ``close`` (an embedding
            # program, a test's simulated crash) is collected, its idle workers end, and so does the beat.
            self._heartbeat = threading.Thread(
                target=_beat, args=(weakref.ref(self), self._store, self._closed,
                                    self._concurrency.lease_renewal_seconds),
                name="mailunblock-heartbeat", daemon=True)
            self._heartbeat.start()

    def _advance(self, issue: Ticket, state: TicketState | None, report: CycleReport) -> None:
        before = state.stage if state is not None else None
        failures_before = state.failure_count if state is not None else 0
        try:
            with ticket_scope(issue.key, state.tenant if state else None, str(before) if before else None):
                after = self._engine.process(issue, state)
        except ClaimLost as exc:
            log.warning("%s (it continues there)", exc)
            return
        except AccountBusy as exc:
            log.info("%s: %s; next cycle", issue.key, exc)
            return
        except ConnectorError as exc:
            with self._lock:
                report.failed[issue.key] = str(exc)
            log.warning("%s: %s (will retry next cycle)", issue.key, exc)
            return
        except SQLAlchemyError:
            raise
        except Exception as exc:
            with self._lock:
                report.failed[issue.key] = f"{type(exc).__name__}: {exc}"
            log.error("%s: unexpected %s; see debug log", issue.key, type(exc).__name__)
            log.debug("details", exc_info=True)
            return
        self._keep(issue, after)
        with self._lock:
            if after.stage != before:
                report.advanced.append(f"{issue.key}: {after.stage}")
            if after.failure_count > failures_before:
                report.step_failures[issue.key] = after.failures[-1] if after.failures else after.refusal_detail
                if after.failed_service in MICROSOFT_SERVICES and not after.is_terminal:
                    # In triage the tenant is only known once the directory answered: name the service then.
                    report.unreachable.add(after.tenant or f"{after.failed_service} (tenant not known yet)")


def _beat(poller: weakref.ref[Poller], store: StateStore, closed: threading.Event, every: float) -> None:
    """Renew the store's claims every ``every`` seconds while the poller is open and still exists."""
    while not closed.wait(every) and poller() is not None:
        try:
            store.renew_claims()
        except SQLAlchemyError as exc:  # the next beat or save tries again; a lost claim stops its saves
            log.warning("could not renew the claims: %s", store_error(exc))


def _round_robin(items: Iterable[J], lane: Callable[[J], str]) -> list[J]:
    """``items`` interleaved over their lanes (first-seen order), each lane's items in their order."""
    lanes: dict[str, list[J]] = {}
    for item in items:
        lanes.setdefault(lane(item), []).append(item)
    queues = list(lanes.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def _key_of(issue: TicketHead | None, state: StateSummary | None) -> str:
    return issue.key if issue is not None else state.issue_key if state is not None else ""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_quiet_scheduler_log = logging.getLogger("mailunblock.scheduler")
_quiet_scheduler_log.setLevel(logging.ERROR)


@dataclass(frozen=True)
class Job:
    """Housekeeping run by the scheduler beside the polling cycle (e.g. wiping expired passwords)."""

    name: str
    run: Callable[[], object]
    every_seconds: float


def run_forever(
    poller: Poller,
    interval_seconds: float,
    on_cycle: Callable[[CycleReport], None],
    jobs: Sequence[Job] = (),
    until: Callable[[], bool] = lambda: False,
) -> None:
    """Run a cycle now and every ``interval_seconds`` until SIGTERM/SIGINT (or ``until()``); running work finishes.

    A cycle still running when the next one is due (a slow tenant) does not hold it back: the next one
    starts beside it and leaves the tickets still in flight to it. ``jobs`` run on their own schedule in
    the same scheduler; a failing job is logged and tried again.

    The signal handler only appends to a list: a handler that takes a lock (an Event, the scheduler,
    logging) deadlocks when the signal lands while the main thread holds that lock. The main thread
    notices within a fraction of a second and stops the scheduler, which waits for the running cycle.
    """
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in STOP_SIGNALS}
    # A search that takes longer than the interval skips a tick: expected under load, not worth a warning.
    scheduler = BackgroundScheduler(timezone="UTC", logger=_quiet_scheduler_log)
    try:
        scheduler.add_job(
            lambda: poller.start_cycle(on_cycle),
            IntervalTrigger(seconds=interval_seconds),
            id="poll",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),
        )
        for job in jobs:
            scheduler.add_job(_logged(job), IntervalTrigger(seconds=job.every_seconds), id=job.name,
                              max_instances=1, coalesce=True, next_run_time=datetime.now(UTC))
        scheduler.start()
        while not received and not until():
            time.sleep(0.2)
        if received:
            log.warning("received %s: finishing the current cycle, then stopping", signal.Signals(received[0]).name)
        scheduler.shutdown(wait=True)
        poller.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _logged(job: Job) -> Callable[[], None]:
    def run() -> None:
        try:
            job.run()
        except Exception:  # a housekeeping failure must not stop the scheduler; it runs again next time
            log.exception("%s failed; it runs again on schedule", job.name)

    return run
