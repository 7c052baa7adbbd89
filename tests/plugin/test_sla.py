"""SLA figures against a fixture history whose expected values were worked out by hand."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from mailunblock.plugin.report import ReportFormat, build_report, render
from mailunblock.plugin.sla import (
    BusinessCalendar,
    Milestone,
    SlaPolicy,
    SlaTarget,
    Weekday,
    measure_ticket,
    sla_property,
    stats,
)
from mailunblock.workflows.state import Stage, TicketState

PARIS, NEW_YORK = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")
ALL_WEEK = frozenset(Weekday)
POLICY = SlaPolicy(
    targets=(
        SlaTarget("acknowledge", Milestone.CREATED, Milestone.ACKNOWLEDGED, timedelta(minutes=15)),
        SlaTarget("approve", Milestone.PLAN_POSTED, Milestone.APPROVED, timedelta(minutes=60), business_hours=True),
        SlaTarget("remediate", Milestone.APPROVED, Milestone.UNBLOCKED, timedelta(minutes=15)),
        SlaTarget("restore", Milestone.CREATED, Milestone.RESTORED, timedelta(hours=8)),
    ),
    tenant_zones={"contoso": "Europe/Paris", "fabrikam": "America/New_York"},
)
NOW = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)  # Tue 11:00 in Paris (summer time since Sunday)


def utc(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}:00+00:00")


def ticket(key: str, tenant: str, day: str, created: str, *steps: tuple[Stage, str], approver: str | None = None,
           kind: str | None = None) -> TicketState:
    """A stored state as the engine leaves it: history plus the milestone fields each stage sets."""
    state = TicketState(key, tenant=tenant, ticket_created_at=utc(day, created), approved_by=approver,
                        approval_kind=kind)
    for stage, at in steps:
        moment = utc(*at.split()) if " " in at else utc(day, at)
        state.enter(stage, moment)
        if stage is Stage.AWAITING_APPROVAL:
            state.plan_posted_at = moment
        elif stage is Stage.APPROVED:
            state.approved_at = moment
        elif stage is Stage.PASSWORD_RESET:
            state.password_reset_at = moment
        elif stage is Stage.SESSIONS_REVOKED:
            state.sessions_revoked_at = moment
        elif stage is Stage.WAITING_FOR_SEND:
            state.unblocked_at = moment
            state.eta_start, state.eta_end = moment + timedelta(hours=3), moment + timedelta(hours=4)
    if state.stage is Stage.REFUSED:
        state.refusal = "privileged"
    return state


def remediated(key: str, tenant: str, day: str, created: str, seen: str, ack: str, approved: str, reset: str,
               unblocked: str, resolved: str, approver: str | None, kind: str) -> TicketState:
    return ticket(key, tenant, day, created, (Stage.NEW, seen), (Stage.AWAITING_APPROVAL, ack),
                  (Stage.APPROVED, approved), (Stage.PASSWORD_RESET, reset), (Stage.SESSIONS_REVOKED, reset),
                  (Stage.WAITING_FOR_SEND, unblocked), (Stage.RESOLVED, resolved), approver=approver, kind=kind)


@pytest.fixture
def history() -> list[TicketState]:
    """Eight tickets; the comments give each target's value (approve counted in business hours)."""
    tue = "2025-03-04"  # winter time in Paris (UTC+1) and New York (UTC-5)
    return [
        # ack 5m, approve 30m, remediate 2m, restore 2h
        remediated("HELP-1", "contoso", tue, "08:00", "08:02", "08:05", "08:35", "08:36", "08:37", "10:00",
                   "Alice Martin", "comment"),
        # ack 6m, approve 60m (exactly the limit: met), remediate 2m, restore 3h
        remediated("HELP-2", "contoso", tue, "08:00", "08:01", "08:06", "09:06", "09:07", "09:08", "11:00",
                   "Alice Martin", "comment"),
        # ack 20m (breach), approve 30m, remediate 30m (breach), restore 4h
        remediated("HELP-3", "contoso", tue, "08:00", "08:10", "08:20", "08:50", "08:51", "09:20", "12:00",
                   "Bob Agent", "transition"),
        # New York: ack 5m, approve 30m (09:05-09:35 EST), remediate 5m, restore 5h
        remediated("HELP-4", "fabrikam", tue, "14:00", "14:01", "14:05", "14:35", "14:36", "14:40", "19:00",
                   "Bob Agent", "jsm"),
        # ack 3m, approve 0 (automatic), remediate 2m, restore 10h (breach)
        remediated("HELP-5", "fabrikam", tue, "14:00", "14:01", "14:03", "14:03", "14:04", "14:05",
                   "2025-03-05 00:00", "mailunblock (auto-approval)", "auto"),
        # Across a weekend AND the switch to summer time (Sun 30 March): plan Fri 16:30 CET, approved
        # Mon 09:30 CEST -> 30m + 30m = 60m of business time (64h of wall clock): met.
        # ack 30m (breach), remediate 5m, restore Fri 15:00 -> Mon 09:35 UTC = 66h35m (breach).
        remediated("HELP-6", "contoso", "2025-03-28", "15:00", "15:10", "15:30", "2025-03-31 07:30",
                   "2025-03-31 07:31", "2025-03-31 07:35", "2025-03-31 09:35", "Alice Martin", "comment"),
        # Refused at triage: ack 3m; no other target applies.
        ticket("HELP-7", "contoso", tue, "09:00", (Stage.NEW, "09:01"), (Stage.REFUSED, "09:03")),
        # Still waiting: plan posted Mon 16:00 CEST; at NOW (Tue 11:00 CEST) 1h + 2h = 3h of business
        # time: an ongoing breach of approve. ack 10m.
        ticket("HELP-8", "contoso", "2025-03-31", "13:50", (Stage.NEW, "13:55"), (Stage.AWAITING_APPROVAL, "14:00")),
    ]


def minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def test_percentiles_and_breaches_per_target(history):
    report = build_report(history, POLICY, NOW, utc("2025-03-01", "00:00"), NOW)
    by_name = {s.target.name: s for s in report.targets}

    ack = by_name["acknowledge"]
    assert ack.stats is not None
    # 3,3,5,5,6,10,20,30 -> p50 between 5 and 6; p90 at rank 6.3 of 0..7: 20 + 0.3 * 10
    assert (ack.stats.count, ack.stats.p50, ack.stats.p90, ack.stats.max) == (8, minutes(5.5), minutes(23), minutes(30))
    assert ack.breached == ("HELP-3", "HELP-6")

    approve = by_name["approve"]
    assert approve.stats is not None
    # 0,30,30,30,60,60 (HELP-8 is still running: not a figure, but a breach already)
    assert (approve.stats.count, approve.stats.p50, approve.stats.p90, approve.stats.max) == (
        6, minutes(30), minutes(60), minutes(60))
    assert approve.breached == ("HELP-8",)

    remediate = by_name["remediate"]
    assert remediate.stats is not None
    # 2,2,2,5,5,30 -> p50 3.5m, p90 = 5 + 0.5 * 25
    assert (remediate.stats.p50, remediate.stats.p90, remediate.stats.max) == (minutes(3.5), minutes(17.5), minutes(30))
    assert remediate.breached == ("HELP-3",)

    restore = by_name["restore"]
    assert restore.stats is not None
    # 2h,3h,4h,5h,10h,66h35 -> p50 4h30, p90 = 10h + 0.5 * 56h35
    assert (restore.stats.p50, restore.stats.p90, restore.stats.max) == (
        timedelta(hours=4, minutes=30), timedelta(hours=38, minutes=17, seconds=30), timedelta(hours=66, minutes=35))
    assert restore.breached == ("HELP-5", "HELP-6", "HELP-8")  # HELP-8: 19h10 and still open


def test_outcomes_stages_tenants_and_approvers(history):
    report = build_report(history, POLICY, NOW, utc("2025-03-01", "00:00"), NOW)

    assert report.outcomes == {"resolved": 6, "refused": 1, "open": 1}
    stages = dict(report.stages)
    waiting = stages[Stage.AWAITING_APPROVAL]  # wall clock: 30,60,30,30,0,3840 minutes; HELP-8 not left yet
    assert (waiting.count, waiting.p50, waiting.p90, waiting.max) == (6, minutes(30), minutes(1950), minutes(3840))
    assert stages[Stage.WAITING_FOR_SEND].max == timedelta(hours=9, minutes=55)  # HELP-5: 14:05 -> 00:00

    tenants = {t.name: t for t in report.tenants}
    assert tenants["contoso"].tickets == 6
    assert tenants["contoso"].breached_tickets == ("HELP-3", "HELP-6", "HELP-8")
    assert tenants["contoso"].breach_rate == 0.5
    assert tenants["fabrikam"].outcomes == {"resolved": 2}
    assert tenants["fabrikam"].breached_tickets == ("HELP-5",)

    approvers = {a.name: a for a in report.approvers}
    alice = approvers["Alice Martin"]
    assert (alice.approvals, alice.kinds) == (3, {"comment": 3})
    assert alice.time_to_approve is not None
    # waits 30m, 60m, 64h (wall clock) -> p90 = 60m + 0.8 * 63h
    assert (alice.time_to_approve.p50, alice.time_to_approve.p90, alice.time_to_approve.max) == (
        minutes(60), minutes(3084), timedelta(hours=64))
    assert approvers["Bob Agent"].kinds == {"transition": 1, "jsm": 1}
    assert approvers["mailunblock (auto-approval)"].time_to_approve is not None
    assert approvers["mailunblock (auto-approval)"].time_to_approve.max == timedelta(0)
    assert set(approvers) == {"Alice Martin", "Bob Agent", "mailunblock (auto-approval)"}


def test_period_and_tenant_filters(history):
    late = build_report(history, POLICY, NOW, utc("2025-03-28", "00:00"), NOW)
    assert [t.key for t in late.tickets] == ["HELP-6", "HELP-8"]
    until = build_report(history, POLICY, NOW, utc("2025-03-01", "00:00"), utc("2025-03-04", "14:00"))
    assert [t.key for t in until.tickets] == ["HELP-1", "HELP-2", "HELP-3", "HELP-7"]  # filed before 14:00
    fabrikam = build_report(history, POLICY, NOW, utc("2025-03-01", "00:00"), NOW, tenant="fabrikam")
    assert [t.key for t in fabrikam.tickets] == ["HELP-4", "HELP-5"]


def test_business_hours_skip_the_weekend():
    calendar = BusinessCalendar(PARIS)
    friday_4pm = datetime(2025, 1, 10, 16, 0, tzinfo=PARIS)
    monday_10am = datetime(2025, 1, 13, 10, 0, tzinfo=PARIS)
    assert calendar.working_time(friday_4pm, monday_10am) == timedelta(hours=2)
    assert calendar.working_time(monday_10am, friday_4pm) == timedelta(0)


def test_business_hours_across_the_dst_change_use_the_new_offset():
    calendar = BusinessCalendar(PARIS)
    # Fri 28 March 16:30 CET (UTC+1) -> Mon 31 March 09:30 CEST (UTC+2): Monday opens at 07:00 UTC.
    assert calendar.working_time(utc("2025-03-28", "15:30"), utc("2025-03-31", "07:30")) == minutes(60)
    # Had Monday been opened at 09:00 UTC+1 (08:00 UTC), Monday's 30 minutes would be lost.
    assert calendar.working_time(utc("2025-03-31", "06:00"), utc("2025-03-31", "08:00")) == minutes(60)


def test_a_working_window_holding_the_dst_change_is_an_hour_shorter():
    calendar = BusinessCalendar(PARIS, ALL_WEEK, time(0, 0), time(12, 0))
    sunday = (utc("2025-03-28", "23:00"), utc("2025-03-30", "22:00"))  # Sat 00:00 CET .. Mon 00:00 CEST
    # Saturday 00:00-12:00 CET is 12 h; Sunday 00:00 CET -> 12:00 CEST is 11 h of real time.
    assert calendar.working_time(*sunday) == timedelta(hours=23)
    # Back to winter time on Sun 26 October: 00:00 CEST -> 12:00 CET is 13 h.
    assert calendar.working_time(utc("2025-10-25", "22:00"), utc("2025-10-26", "12:00")) == timedelta(hours=13)


def test_holidays_and_time_zones():
    friday, tuesday = utc("2025-04-18", "15:00"), utc("2025-04-22", "09:00")  # Good Friday .. after Easter Monday
    paris = BusinessCalendar(PARIS, holidays=frozenset({date(2025, 4, 21)}))
    assert paris.working_time(friday, tuesday) == timedelta(hours=2)  # Fri 15:00 UTC is 17:00 CEST: closed
    assert BusinessCalendar(PARIS).working_time(friday, tuesday) == timedelta(hours=10)  # + Easter Monday 8h
    # The same instants in New York: Fri 11:00-17:00 EDT (6h) + Mon 8h + Tue 05:00 EDT (before opening).
    assert BusinessCalendar(NEW_YORK).working_time(friday, tuesday) == timedelta(hours=14)


def test_ticket_property_of_a_final_ticket(history):
    weekend = history[5]
    value = sla_property(weekend, POLICY)

    assert value["outcome"] == "resolved" and value["tenant"] == "contoso"
    assert value["approvedBy"] == "Alice Martin" and value["approvalKind"] == "comment"
    assert value["breached"] == ["acknowledge", "restore"] and value["breachCount"] == 2
    assert value["targets"]["approve"] == {"seconds": 3600, "limitSeconds": 3600, "businessHours": True,
                                           "breached": False}
    assert value["targets"]["restore"]["seconds"] == (66 * 60 + 35) * 60
    assert value["milestones"]["created"] == "2025-03-28T15:00:00+00:00"
    assert value["milestones"]["eta_end"] == "2025-03-31T11:35:00+00:00"
    assert json.loads(json.dumps(value)) == value


def test_targets_that_do_not_apply_are_left_out(history):
    refused = measure_ticket(history[6], POLICY, NOW)
    assert [m.target.name for m in refused.measures] == ["acknowledge"]
    assert refused.outcome == "refused" and refused.reason == "privileged"


def test_stats_of_one_and_none():
    assert stats([]) is None
    one = stats([minutes(7)])
    assert one is not None and (one.p50, one.p90, one.max) == (minutes(7), minutes(7), minutes(7))


def test_csv_json_and_table_carry_the_same_figures(history):
    report = build_report(history, POLICY, NOW, utc("2025-03-01", "00:00"), NOW)

    rows = list(csv.DictReader(io.StringIO(render(report, ReportFormat.CSV))))
    assert [r["ticket"] for r in rows] == [f"HELP-{n}" for n in (1, 2, 3, 7, 4, 5, 6, 8)]
    six = next(r for r in rows if r["ticket"] == "HELP-6")
    assert (six["approve_minutes"], six["restore_minutes"]) == ("60.0", "3995.0")
    assert six["breaches"] == "acknowledge restore"

    document = json.loads(render(report, ReportFormat.JSON))
    restore = next(t for t in document["targets"] if t["name"] == "restore")
    assert restore["stats"]["p90_seconds"] == 38 * 3600 + 17 * 60 + 30
    assert restore["breached"] == ["HELP-5", "HELP-6", "HELP-8"]

    table = render(report, ReportFormat.TABLE)
    assert "restore" in table and "3: HELP-5, HELP-6, HELP-8" in table and "38h17" in table


def test_html_escapes_outside_names(history):
    history[0].approved_by = '<script>alert("x")</script>'
    page = render(build_report(history, POLICY, NOW, utc("2025-03-01", "00:00"), NOW), ReportFormat.HTML)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
