"""The poller: one cycle reads the tickets that need work and advances each one.

Modelled on Home Assistant's update coordinator: one object, one update method, connector errors mapped
to "this cycle failed" (logged, retried next cycle). Progress lives in the state store, never only here.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from mailunblock.connectors.errors import ConnectorError, NotFoundError
from mailunblock.connectors.models import Ticket
from mailunblock.plugin.logs import ticket_scope
from mailunblock.plugin.store import StateStore
from mailunblock.workflows.engine import RemediationEngine
from mailunblock.workflows.failures import MICROSOFT_SERVICES
from mailunblock.workflows.state import TicketState
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)




@dataclass
class CycleReport:
    """What one polling cycle did."""

    seen: int = 0
    advanced: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # unexpected errors that escaped the engine
    step_failures: dict[str, str] = field(default_factory=dict)  # steps that failed (retried or escalated)
    unreachable: set[str] = field(default_factory=set)  # tenants (or services) a ticket could not reach
    error: str | None = None
    skipped: bool = False  # another mailunblock was working on the same store

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
        if self.skipped:
            return "cycle skipped: another mailunblock is working on the same state store"
        problems = [self.error] if self.error else []
        tickets = sorted({*self.failed, *self.step_failures})
        if tickets:
            problems.append(f"{len(tickets)} ticket(s) failed: {', '.join(tickets)}")
        if self.unreachable:
            problems.append(f"tenant(s) not reached: {', '.join(sorted(self.unreachable))}")
        return f"cycle FAILED: {'; '.join(problems)}" if problems else f"cycle OK: {self.seen} ticket(s) selected"


class Poller:
    """Reads the selected tickets and hands each to the remediation engine."""

    def __init__(
        self,
        search: Callable[[], Iterable[Ticket]],
        get_issue: Callable[[str], Ticket],
        engine: RemediationEngine,
        store: StateStore,
    ) -> None:
        self._search = search
        self._get_issue = get_issue
        self._engine = engine
        self._store = store
        self.observer: Callable[[CycleReport, float], None] | None = None  # (report, seconds): the metrics

    def run_cycle(self) -> CycleReport:
        """Advance every ticket that needs work; never raises for a per-ticket or Jira failure."""
        started = time.monotonic()
        report = self._run_cycle()
        if self.observer is not None:
            self.observer(report, time.monotonic() - started)
        return report

    def _run_cycle(self) -> CycleReport:
        try:
            with self._store.runner_lock() as held:
                if not held:
                    log.warning("another mailunblock is working on this state store; cycle skipped")
                    return CycleReport(skipped=True)
                return self._cycle()
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            log.warning("cycle failed, will retry next cycle: state store unavailable: %s", reason)
            return CycleReport(error=f"state store unavailable: {reason}")

    def _cycle(self) -> CycleReport:
        report = CycleReport()
        self._engine.begin_cycle()
        seen: set[str] = set()
        try:
            # Read every page before acting: our own comments bump `updated`, which would shift the
            # pages of an ORDER BY updated search while we walk them.
            issues = list(self._search())
        except ConnectorError as exc:
            report.error = f"Jira could not be searched: {exc}"
            log.warning("cycle failed, will retry next cycle: %s", report.error)
            return report
        ids: set[str] = set()
        for issue in issues:
            # Pages can shift while we comment (a key can come back on a later page): once per cycle.
            if issue.key in seen or (issue.id and issue.id in ids):
                continue
            seen.add(issue.key)
            ids.add(issue.id)
            report.seen += 1
            self._advance(issue, self._store.load(issue.key) or self._moved(issue), report)
        # Tickets we were working on that left the selection (closed, label removed): let the engine
        # see them once more so it can stop cleanly and say what was and was not done.
        for state in self._store.open_states():
            if state.issue_key in seen:
                continue
            try:
                issue = self._get_issue(state.issue_key)
            except NotFoundError:
                log.warning("%s no longer exists or is not visible; keeping its state", state.issue_key)
                continue
            except ConnectorError as exc:
                report.failed[state.issue_key] = str(exc)
                continue
            if issue.key != state.issue_key:  # moved out of the selection: Jira answers under the new key
                if issue.key in seen:
                    continue
                self._store.rename(state.issue_key, issue.key)
                state.issue_key = issue.key
            self._advance(issue, state, report)
        return report

    def _moved(self, issue: Ticket) -> TicketState | None:
        """The state of a ticket we knew under another key (moved to another project): same issue id."""
        if not issue.id:
            return None
        for state in self._store.open_states():
            if state.issue_id == issue.id and state.issue_key != issue.key:
                log.warning("%s moved to %s: its remediation continues under the new key",
                            state.issue_key, issue.key)
                self._store.rename(state.issue_key, issue.key)
                state.issue_key = issue.key
                return state
        return None

    def _advance(self, issue: Ticket, state: TicketState | None, report: CycleReport) -> None:
        before = state.stage if state is not None else None
        failures_before = state.failure_count if state is not None else 0
        try:
            with ticket_scope(issue.key, state.tenant if state else None, str(before) if before else None):
                after = self._engine.process(issue, state)
        except ConnectorError as exc:
            report.failed[issue.key] = str(exc)
            log.warning("%s: %s (will retry next cycle)", issue.key, exc)
            return
        except Exception as exc:
            report.failed[issue.key] = f"{type(exc).__name__}: {exc}"
            log.error("%s: unexpected %s; see debug log", issue.key, type(exc).__name__)
            log.debug("details", exc_info=True)
            return
        if after.stage != before:
            report.advanced.append(f"{issue.key}: {after.stage}")
        if after.failure_count > failures_before:
            report.step_failures[issue.key] = after.failures[-1] if after.failures else after.refusal_detail
            if after.failed_service in MICROSOFT_SERVICES and not after.is_terminal:
                # In triage the tenant is only known once the directory answered: name the service then.
                report.unreachable.add(after.tenant or f"{after.failed_service} (tenant not known yet)")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
) -> None:
    """Run a cycle now and every ``interval_seconds`` until SIGTERM/SIGINT; a running cycle finishes first.

    ``jobs`` run on their own schedule in the same scheduler; a failing job is logged and tried again.

    The signal handler only appends to a list: a handler that takes a lock (an Event, the scheduler,
    logging) deadlocks when the signal lands while the main thread holds that lock. The main thread
    notices within a fraction of a second and stops the scheduler, which waits for the running cycle.
    """
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in STOP_SIGNALS}
    scheduler = BackgroundScheduler(timezone="UTC")
    try:
        scheduler.add_job(
            lambda: on_cycle(poller.run_cycle()),
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
        while not received:
            time.sleep(0.2)
        log.warning("received %s: finishing the current cycle, then stopping", signal.Signals(received[0]).name)
        scheduler.shutdown(wait=True)
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
