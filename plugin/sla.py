"""SLA figures of a ticket, computed from its stored state: milestones, time per stage, targets met or breached.

Pure computation (no I/O): the report and the ``mailunblock.sla`` ticket property both start here.
Business hours are counted in the tenant's time zone on its working days, skipping holidays; every
interval is measured between real instants (UTC), so a daylight-saving change never adds or loses an hour.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from mailunblock.workflows.state import TERMINAL_STAGES, Stage, StageEvent, TicketState

PROPERTY_VERSION = 1


class Milestone(StrEnum):
    """A moment in a ticket's life an SLA target can be measured from or to."""

    CREATED = "created"  # filed in Jira (Jira's ``created``)
    FIRST_SEEN = "first_seen"  # first read by mailunblock
    ACKNOWLEDGED = "acknowledged"  # triage answered the reporter (the first stage after NEW)
    PLAN_POSTED = "plan_posted"
    APPROVED = "approved"
    PASSWORD_RESET = "password_reset"  # noqa: S105 -- a milestone name, not a password
    SESSIONS_REVOKED = "sessions_revoked"
    UNBLOCKED = "unblocked"
    ETA_START = "eta_start"
    ETA_END = "eta_end"
    RESTORED = "restored"  # sending verified restored: the ticket was resolved
    CLOSED = "closed"  # any final stage: resolved, not listed, refused, rejected, escalated, cancelled


class Weekday(StrEnum):
    """A day of the week, as written in the configuration."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday is 0, as ``date.weekday()``."""
        return list(Weekday).index(self)


WORKING_WEEK = frozenset({Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI})
OPEN = "open"  # the outcome of a ticket whose remediation has not ended


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours in one time zone: working days, opening and closing time, holidays."""

    zone: ZoneInfo
    working_days: frozenset[Weekday] = WORKING_WEEK
    day_start: time = time(9, 0)
    day_end: time = time(17, 0)
    holidays: frozenset[date] = frozenset()

    def working_time(self, start: datetime, end: datetime) -> timedelta:
        """Working time between two instants (zero when ``end`` is not after ``start``)."""
        total = timedelta(0)
        if end <= start:
            return total
        days = {d.number for d in self.working_days}
        day, last = start.astimezone(self.zone).date(), end.astimezone(self.zone).date()
        while day <= last:
            if day.weekday() in days and day not in self.holidays:
                # In UTC: two times of one zone would subtract as wall-clock times, hiding a DST change.
                opens = datetime.combine(day, self.day_start, self.zone).astimezone(UTC)
                closes = datetime.combine(day, self.day_end, self.zone).astimezone(UTC)
                lo, hi = max(start, opens), min(end, closes)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total


@dataclass(frozen=True)
class SlaTarget:
    """A promise: from one milestone to another within ``limit`` (wall-clock or business hours)."""

    name: str
    start: Milestone
    end: Milestone
    limit: timedelta
    business_hours: bool = False


@dataclass(frozen=True)
class SlaPolicy:
    """Targets and the business calendar; each tenant counts business hours in its own time zone."""

    targets: tuple[SlaTarget, ...]
    time_zone: str = "UTC"
    tenant_zones: Mapping[str, str] = field(default_factory=dict)
    working_days: frozenset[Weekday] = WORKING_WEEK
    day_start: time = time(9, 0)
    day_end: time = time(17, 0)
    holidays: frozenset[date] = frozenset()

    def calendar(self, tenant: str | None) -> BusinessCalendar:
        """The business calendar of a tenant (its time zone, else the default one)."""
        zone = self.tenant_zones.get(tenant or "") or self.time_zone
        return BusinessCalendar(ZoneInfo(zone), self.working_days, self.day_start, self.day_end, self.holidays)


@dataclass(frozen=True)
class Measure:
    """One target on one ticket: the time it took (so far), and whether the limit was exceeded."""

    target: SlaTarget
    elapsed: timedelta
    breached: bool
    ongoing: bool  # the end milestone is not reached yet: ``elapsed`` runs to the report's time


@dataclass(frozen=True)
class TicketSla:
    """A ticket's SLA figures."""

    key: str
    tenant: str | None
    outcome: str  # a final stage, or OPEN
    reason: str | None
    approved_by: str | None
    approval_kind: str | None
    milestones: Mapping[Milestone, datetime]
    stage_times: Mapping[Stage, timedelta]
    measures: tuple[Measure, ...]

    @property
    def filed(self) -> datetime:
        """When the ticket was filed (first seen when Jira's creation time is unknown)."""
        return self.milestones.get(Milestone.CREATED) or self.milestones[Milestone.FIRST_SEEN]

    @property
    def breaches(self) -> tuple[str, ...]:
        """Names of the targets this ticket breached."""
        return tuple(m.target.name for m in self.measures if m.breached)

    def measure(self, name: str) -> Measure | None:
        """The measure of one target, when it applies to this ticket."""
        return next((m for m in self.measures if m.target.name == name), None)

    def to_property(self) -> dict[str, Any]:
        """The JSON value of the ticket's ``mailunblock.sla`` property (seconds, ISO 8601 UTC times)."""
        return {
            "version": PROPERTY_VERSION,
            "outcome": self.outcome,
            "tenant": self.tenant,
            "reason": self.reason,
            "approvedBy": self.approved_by,
            "approvalKind": self.approval_kind,
            "milestones": {str(m): at.astimezone(UTC).isoformat() for m, at in self.milestones.items()},
            "stageSeconds": {str(s): int(d.total_seconds()) for s, d in self.stage_times.items()},
            "targets": {
                m.target.name: {
                    "seconds": int(m.elapsed.total_seconds()),
                    "limitSeconds": int(m.target.limit.total_seconds()),
                    "businessHours": m.target.business_hours,
                    "breached": m.breached,
                }
                for m in self.measures
            },
            "breached": list(self.breaches),
            "breachCount": len(self.breaches),
        }


def milestones(state: TicketState) -> dict[Milestone, datetime]:
    """Every milestone the ticket reached, from its stored state and stage history."""
    history = state.history
    first = history[0].at if history else None
    acknowledged = next((e.at for e in history if e.stage is not Stage.NEW), None)
    final = next((e for e in reversed(history) if e.stage in TERMINAL_STAGES), None)
    found: dict[Milestone, datetime | None] = {
        Milestone.CREATED: state.ticket_created_at,
        Milestone.FIRST_SEEN: first,
        Milestone.ACKNOWLEDGED: acknowledged,
        Milestone.PLAN_POSTED: state.plan_posted_at,
        Milestone.APPROVED: state.approved_at,
        Milestone.PASSWORD_RESET: state.password_reset_at,
        Milestone.SESSIONS_REVOKED: state.sessions_revoked_at,
        Milestone.UNBLOCKED: state.unblocked_at,
        Milestone.ETA_START: state.eta_start,
        Milestone.ETA_END: state.eta_end,
        Milestone.RESTORED: state.entered_at(Stage.RESOLVED),
        Milestone.CLOSED: final.at if final else None,
    }
    return {m: at for m, at in found.items() if at is not None}


def stage_times(history: Sequence[StageEvent]) -> dict[Stage, timedelta]:
    """Time spent in each stage the ticket left (summed when a stage was entered twice)."""
    spent: dict[Stage, timedelta] = {}
    for event, following in pairwise(history):
        spent[event.stage] = spent.get(event.stage, timedelta(0)) + max(following.at - event.at, timedelta(0))
    return spent


def measure_ticket(state: TicketState, policy: SlaPolicy, now: datetime) -> TicketSla:
    """The ticket's SLA figures; targets still running on an open ticket are measured up to ``now``."""
    reached = milestones(state)
    final = state.stage in TERMINAL_STAGES
    calendar = policy.calendar(state.tenant)
    measures = []
    for target in policy.targets:
        start, end = reached.get(target.start), reached.get(target.end)
        if start is None or (end is None and final):
            continue  # the ticket never got there (a refusal is never approved): the target does not apply
        stop = end or now
        elapsed = calendar.working_time(start, stop) if target.business_hours else max(stop - start, timedelta(0))
        breached = elapsed > target.limit
        if end is None and not breached:
            continue  # still within the limit: not a figure yet
        measures.append(Measure(target, elapsed, breached, ongoing=end is None))
    return TicketSla(
        key=state.issue_key,
        tenant=state.tenant,
        outcome=str(state.stage) if final else OPEN,
        reason=state.refusal,
        approved_by=state.approved_by,
        approval_kind=state.approval_kind,
        milestones=reached,
        stage_times=stage_times(state.history),
        measures=tuple(measures),
    )


def sla_property(state: TicketState, policy: SlaPolicy) -> dict[str, Any]:
    """The ``mailunblock.sla`` property of a ticket in a final stage, as of the moment it got there."""
    closed = state.history[-1].at if state.history else datetime.now(UTC)
    return measure_ticket(state, policy, closed).to_property()


@dataclass(frozen=True)
class Stats:
    """Count, median, 90th percentile and maximum of some durations."""

    count: int
    p50: timedelta
    p90: timedelta
    max: timedelta


def stats(values: Iterable[timedelta]) -> Stats | None:
    """Percentiles by linear interpolation between closest ranks (numpy's default); None when empty."""
    seconds = sorted(v.total_seconds() for v in values)
    if not seconds:
        return None
    if len(seconds) == 1:
        p50 = p90 = seconds[0]
    else:
        deciles = statistics.quantiles(seconds, n=10, method="inclusive")
        p50, p90 = deciles[4], deciles[8]
    return Stats(len(seconds), timedelta(seconds=p50), timedelta(seconds=p90), timedelta(seconds=seconds[-1]))
