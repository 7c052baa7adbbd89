"""``mailunblock report``: SLA figures over a period, as a table, CSV, JSON or one self-contained HTML file.

The HTML report draws its charts as inline SVG (geometry computed here, drawn by the Jinja template with
autoescaping on, so ticket keys, tenant and approver names are escaped where they are written).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from mailunblock.plugin.sla import (
    OPEN,
    Milestone,
    SlaPolicy,
    SlaTarget,
    Stats,
    TicketSla,
    measure_ticket,
    stats,
)
from mailunblock.workflows.state import Stage, TicketState


class ReportFormat(StrEnum):
    """Output formats of ``mailunblock report``."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    HTML = "html"


NO_APPROVER = "(nobody)"
NO_TENANT = "(no tenant)"  # refused before the account was routed to a tenant
FUNNEL = (
    ("filed", Milestone.FIRST_SEEN),
    ("acknowledged", Milestone.ACKNOWLEDGED),
    ("plan posted", Milestone.PLAN_POSTED),
    ("approved", Milestone.APPROVED),
    ("unblocked", Milestone.UNBLOCKED),
    ("sending restored", Milestone.RESTORED),
)


@dataclass(frozen=True)
class TargetSummary:
    """One target over the period: its figures and the tickets that breached it."""

    target: SlaTarget
    stats: Stats | None
    breached: tuple[str, ...]


@dataclass(frozen=True)
class TenantSummary:
    """One tenant over the period."""

    name: str
    tickets: int
    outcomes: dict[str, int]
    breached_tickets: tuple[str, ...]

    @property
    def breach_rate(self) -> float:
        """Share of the tenant's tickets that breached at least one target."""
        return len(self.breached_tickets) / self.tickets if self.tickets else 0.0


@dataclass(frozen=True)
class ApproverSummary:
    """One approver (or the automatic approval) over the period."""

    name: str
    approvals: int
    kinds: dict[str, int]
    time_to_approve: Stats | None  # plan posted -> approved, wall clock
    breached: tuple[str, ...]  # tickets whose targets ending at the approval were breached


@dataclass(frozen=True)
class SlaReport:
    """Everything ``mailunblock report`` shows."""

    generated_at: datetime
    since: datetime
    until: datetime
    tenant: str | None
    tickets: tuple[TicketSla, ...]
    outcomes: dict[str, int]
    stages: tuple[tuple[Stage, Stats], ...]
    targets: tuple[TargetSummary, ...]
    tenants: tuple[TenantSummary, ...]
    approvers: tuple[ApproverSummary, ...]


def build_report(
    states: Iterable[TicketState],
    policy: SlaPolicy,
    now: datetime,
    since: datetime,
    until: datetime,
    tenant: str | None = None,
) -> SlaReport:
    """The report of the tickets filed in [since, until) (of one tenant when given)."""
    tickets = [measure_ticket(s, policy, now) for s in states if s.history]
    chosen = tuple(
        sorted(
            (t for t in tickets if since <= t.filed < until and (tenant is None or t.tenant == tenant)),
            key=lambda t: t.filed,
        )
    )
    stages = []
    for stage in Stage:
        figures = stats(t.stage_times[stage] for t in chosen if stage in t.stage_times)
        if figures:
            stages.append((stage, figures))
    targets = tuple(
        TargetSummary(
            target,
            stats(m.elapsed for t in chosen if (m := t.measure(target.name)) and not m.ongoing),
            tuple(t.key for t in chosen if target.name in t.breaches),
        )
        for target in policy.targets
    )
    return SlaReport(
        generated_at=now,
        since=since,
        until=until,
        tenant=tenant,
        tickets=chosen,
        outcomes=dict(Counter(t.outcome for t in chosen).most_common()),
        stages=tuple(stages),
        targets=targets,
        tenants=_tenants(chosen),
        approvers=_approvers(chosen, policy),
    )


def _tenants(tickets: Sequence[TicketSla]) -> tuple[TenantSummary, ...]:
    names = sorted({t.tenant or NO_TENANT for t in tickets})
    summaries = []
    for name in names:
        mine = [t for t in tickets if (t.tenant or NO_TENANT) == name]
        summaries.append(TenantSummary(
            name, len(mine), dict(Counter(t.outcome for t in mine).most_common()),
            tuple(t.key for t in mine if t.breaches),
        ))
    return tuple(summaries)


def _approvers(tickets: Sequence[TicketSla], policy: SlaPolicy) -> tuple[ApproverSummary, ...]:
    approved = [t for t in tickets if Milestone.APPROVED in t.milestones]
    at_approval = {target.name for target in policy.targets if target.end is Milestone.APPROVED}
    summaries = []
    for name in sorted({t.approved_by or NO_APPROVER for t in approved}):
        mine = [t for t in approved if (t.approved_by or NO_APPROVER) == name]
        waits = [
            t.milestones[Milestone.APPROVED] - t.milestones[Milestone.PLAN_POSTED]
            for t in mine if Milestone.PLAN_POSTED in t.milestones
        ]
        summaries.append(ApproverSummary(
            name, len(mine), dict(Counter(t.approval_kind or "-" for t in mine).most_common()),
            stats(max(w, timedelta(0)) for w in waits),
            tuple(t.key for t in mine if at_approval & set(t.breaches)),
        ))
    return tuple(summaries)


def duration_text(value: timedelta | None) -> str:
    """A duration as people read it: 45s, 12m, 5h07m, 3d04h."""
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _target_text(target: SlaTarget) -> str:
    clock = " business" if target.business_hours else ""
    return f"{target.start} → {target.end} ≤ {duration_text(target.limit)}{clock}"


# --- table -----------------------------------------------------------------------------------------


def render_table(report: SlaReport) -> str:
    """Plain-text report for a terminal."""
    out = [
        f"SLA report {report.since:%Y-%m-%d %H:%M} → {report.until:%Y-%m-%d %H:%M} UTC"
        + (f", tenant {report.tenant}" if report.tenant else "")
        + f": {len(report.tickets)} ticket(s)",
        "",
        "outcome              tickets",
    ]
    out += [f"  {outcome:18} {count:>7}" for outcome, count in report.outcomes.items()]
    out += ["", f"{'stage':22} {'n':>4} {'p50':>8} {'p90':>8} {'max':>8}"]
    out += [_stats_row(f"  {stage!s}", figures) for stage, figures in report.stages]
    out += ["", f"{'target':22} {'n':>4} {'p50':>8} {'p90':>8} {'max':>8}  breaches"]
    for summary in report.targets:
        breached = f"{len(summary.breached)}: {', '.join(summary.breached)}" if summary.breached else "0"
        row = _stats_row(f"  {summary.target.name}", summary.stats)
        out.append(f"{row}  {breached}   ({_target_text(summary.target)})")
    out += ["", f"{'tenant':22} {'tickets':>7} {'breached':>8} {'rate':>6}  outcomes"]
    for tenant in report.tenants:
        outcomes = ", ".join(f"{k} {v}" for k, v in tenant.outcomes.items())
        out.append(f"  {tenant.name:20} {tenant.tickets:>7} {len(tenant.breached_tickets):>8} "
                   f"{tenant.breach_rate:>6.0%}  {outcomes}")
    out += ["", f"{'approver':22} {'n':>4} {'p50':>8} {'p90':>8} {'max':>8}  how"]
    for approver in report.approvers:
        kinds = ", ".join(f"{k} {v}" for k, v in approver.kinds.items())
        figures = approver.time_to_approve
        row = _stats_row(f"  {approver.name}", figures) if figures else f"  {approver.name:20} {approver.approvals:>4}"
        out.append(f"{row}  {kinds}")
    return "\n".join(out) + "\n"


def _stats_row(label: str, figures: Stats | None) -> str:
    if figures is None:
        return f"{label:22} {0:>4} {'-':>8} {'-':>8} {'-':>8}"
    return (f"{label:22} {figures.count:>4} {duration_text(figures.p50):>8} {duration_text(figures.p90):>8} "
            f"{duration_text(figures.max):>8}")


# --- csv and json ----------------------------------------------------------------------------------


def render_csv(report: SlaReport) -> str:
    """One row per ticket: identity, outcome, approval, milestones (ISO 8601) and each target's minutes."""
    names = [s.target.name for s in report.targets]
    header = ["ticket", "tenant", "outcome", "reason", "approved_by", "approval_kind",
              *[str(m) for m in Milestone], *[f"{n}_minutes" for n in names], "breaches"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for t in report.tickets:
        minutes = []
        for name in names:
            measure = t.measure(name)
            minutes.append(f"{measure.elapsed.total_seconds() / 60:.1f}" if measure else "")
        writer.writerow([
            t.key, t.tenant or "", t.outcome, t.reason or "", t.approved_by or "", t.approval_kind or "",
            *[t.milestones[m].isoformat() if m in t.milestones else "" for m in Milestone],
            *minutes, " ".join(t.breaches),
        ])
    return buffer.getvalue()


def _stats_json(figures: Stats | None) -> dict[str, float | int] | None:
    if figures is None:
        return None
    return {"count": figures.count, "p50_seconds": figures.p50.total_seconds(),
            "p90_seconds": figures.p90.total_seconds(), "max_seconds": figures.max.total_seconds()}


def report_dict(report: SlaReport) -> dict[str, Any]:
    """The report as JSON-safe data (durations in seconds, times in ISO 8601)."""
    return {
        "generated_at": report.generated_at.isoformat(),
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "tenant": report.tenant,
        "outcomes": report.outcomes,
        "stages": {str(stage): _stats_json(figures) for stage, figures in report.stages},
        "targets": [
            {"name": s.target.name, "start": str(s.target.start), "end": str(s.target.end),
             "limit_seconds": s.target.limit.total_seconds(), "business_hours": s.target.business_hours,
             "stats": _stats_json(s.stats), "breached": list(s.breached)}
            for s in report.targets
        ],
        "tenants": [
            {"name": t.name, "tickets": t.tickets, "outcomes": t.outcomes,
             "breached": list(t.breached_tickets), "breach_rate": t.breach_rate}
            for t in report.tenants
        ],
        "approvers": [
            {"name": a.name, "approvals": a.approvals, "kinds": a.kinds,
             "time_to_approve": _stats_json(a.time_to_approve), "breached": list(a.breached)}
            for a in report.approvers
        ],
        "tickets": [{"key": t.key, **t.to_property()} for t in report.tickets],
    }


def render_json(report: SlaReport) -> str:
    """The report as one JSON document."""
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"


# --- html and its charts ---------------------------------------------------------------------------

P50_COLOUR = "#4c78a8"
P90_COLOUR = "#9ecae9"
BREACH_COLOUR = "#e45756"
MET_COLOUR = "#54a24b"
FUNNEL_COLOUR = "#72b7b2"
LIMIT_COLOUR = "#f58518"
CHART_WIDTH = 880
LABEL_WIDTH = 190
ROW = 30


@dataclass(frozen=True)
class Shape:
    """One SVG element of a chart: a rect, circle, line or text (all text is escaped by the template)."""

    kind: str  # the SVG element name: "rect" | "circle" | "line" | "text"
    x: float
    y: float
    width: float = 0.0  # rect width, circle radius, line end x
    height: float = 0.0  # rect height, line end y
    colour: str = "#333333"
    text: str = ""  # a text's content, or a shape's tooltip
    anchor: str = "start"
    dashed: bool = False


@dataclass(frozen=True)
class Chart:
    """An SVG chart: its title, size and shapes."""

    id: str
    title: str
    description: str
    width: int
    height: int
    shapes: tuple[Shape, ...]


def _bar_rows(rows: Sequence[tuple[str, Sequence[tuple[float, str, str]], str]], scale: float,
              top: float = 10) -> list[Shape]:
    """Horizontal bars: per row a label, overlapping segments (value, colour, tooltip) and a value text."""
    shapes: list[Shape] = []
    plot = CHART_WIDTH - LABEL_WIDTH - 180  # room for the value text after the longest bar
    for index, (label, segments, value) in enumerate(rows):
        y = top + index * ROW
        shapes.append(Shape("text", LABEL_WIDTH - 8, y + 15, text=label, anchor="end"))
        height = 18.0
        end = 0.0
        for amount, colour, tip in segments:
            width = max(plot * amount / scale, 1.0) if scale else 1.0
            shapes.append(Shape("rect", LABEL_WIDTH, y + (18 - height) / 2, width, height, colour, tip))
            end = max(end, width)
            height -= 6
        shapes.append(Shape("text", LABEL_WIDTH + end + 6, y + 15, text=value))
    return shapes


def stage_chart(report: SlaReport) -> Chart:
    """Time spent per stage: p90 behind p50, in hours."""
    scale = max((f.p90.total_seconds() for _, f in report.stages), default=0.0)
    rows = [
        (str(stage).replace("_", " "),
         [(f.p90.total_seconds(), P90_COLOUR, f"p90 {duration_text(f.p90)}"),
          (f.p50.total_seconds(), P50_COLOUR, f"p50 {duration_text(f.p50)}")],
         f"p50 {duration_text(f.p50)} · p90 {duration_text(f.p90)}")
        for stage, f in report.stages
    ]
    shapes = _bar_rows(rows, scale)
    return Chart("stages", "Time per stage", "median (dark) and 90th percentile (light) time spent in each stage",
                 CHART_WIDTH, int(20 + ROW * max(len(rows), 1)), tuple(shapes))


def restore_chart(report: SlaReport, target: SlaTarget | None) -> Chart:
    """Time from filing to sending restored, per ticket over the period, with the target's limit."""
    width, height, left, bottom, top = CHART_WIDTH, 300, 60, 260, 20
    points = [
        (t, t.milestones[Milestone.RESTORED] - t.filed) for t in report.tickets if Milestone.RESTORED in t.milestones
    ]
    hours = [max(d.total_seconds() / 3600, 0.0) for _, d in points]
    limit = target.limit.total_seconds() / 3600 if target else 0.0
    ceiling = max([*hours, limit, 1.0]) * 1.1
    span = (report.until - report.since).total_seconds() or 1.0
    shapes = [
        Shape("line", left, bottom, width - 10, bottom, "#999999"),
        Shape("line", left, top, left, bottom, "#999999"),
        Shape("text", left - 6, top + 4, text=f"{ceiling:.0f} h", anchor="end"),
        Shape("text", left - 6, bottom, text="0 h", anchor="end"),
        Shape("text", left, bottom + 20, text=f"{report.since:%Y-%m-%d}"),
        Shape("text", width - 10, bottom + 20, text=f"{report.until:%Y-%m-%d}", anchor="end"),
    ]
    if target:
        y = bottom - (bottom - top) * limit / ceiling
        shapes += [Shape("line", left, y, width - 10, y, LIMIT_COLOUR, dashed=True),
                   Shape("text", width - 12, y - 5, colour=LIMIT_COLOUR, anchor="end",
                         text=f"target {target.name} ≤ {duration_text(target.limit)}")]
    for (ticket, elapsed), value in zip(points, hours, strict=True):
        x = left + (width - 10 - left) * (ticket.filed - report.since).total_seconds() / span
        y = bottom - (bottom - top) * value / ceiling
        breached = target is not None and target.name in ticket.breaches
        shapes.append(Shape("circle", x, y, 6, 0, BREACH_COLOUR if breached else MET_COLOUR,
                            f"{ticket.key}: {duration_text(elapsed)}"))
    if not points:
        shapes.append(Shape("text", width / 2, (top + bottom) / 2, text="no ticket restored in this period",
                            anchor="middle"))
    return Chart("restore", "Time to restore sending",
                 "hours from filing to verified sending, per ticket by filing date (red: target breached)",
                 width, height, tuple(shapes))


def tenant_chart(report: SlaReport) -> Chart:
    """Share of each tenant's tickets that breached at least one target."""
    rows = [
        (t.name, [(t.breach_rate, BREACH_COLOUR, f"{len(t.breached_tickets)} of {t.tickets}")],
         f"{t.breach_rate:.0%} ({len(t.breached_tickets)}/{t.tickets})")
        for t in report.tenants
    ]
    return Chart("tenants", "Breach rate per tenant", "share of tickets that breached at least one target",
                 CHART_WIDTH, int(20 + ROW * max(len(rows), 1)), tuple(_bar_rows(rows, 1.0)))


def funnel_chart(report: SlaReport) -> Chart:
    """How many tickets reached each milestone, widest first, centred like a funnel."""
    counts = [(label, sum(1 for t in report.tickets if m in t.milestones)) for label, m in FUNNEL]
    total = max(counts[0][1], 1)
    plot = CHART_WIDTH - 2 * LABEL_WIDTH
    shapes: list[Shape] = []
    for index, (label, count) in enumerate(counts):
        width = max(plot * count / total, 2.0)
        y = 10 + index * ROW
        shapes.append(Shape("rect", CHART_WIDTH / 2 - width / 2, y, width, 22, FUNNEL_COLOUR, f"{label}: {count}"))
        shapes.append(Shape("text", CHART_WIDTH / 2, y + 16, text=f"{label} — {count}", anchor="middle"))
    return Chart("funnel", "Funnel of outcomes", "tickets reaching each milestone", CHART_WIDTH,
                 int(20 + ROW * len(counts)), tuple(shapes))


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("mailunblock.plugin", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: SlaReport) -> str:
    """One self-contained HTML file: no script, no network, charts as inline SVG."""
    restore = next((s.target for s in report.targets if s.target.end is Milestone.RESTORED), None)
    charts = [funnel_chart(report), stage_chart(report), restore_chart(report, restore), tenant_chart(report)]
    return _environment().get_template("report.html.j2").render(
        report=report, charts=charts, duration=duration_text, target_text=_target_text, open_outcome=OPEN,
        milestones=list(Milestone),
    )


RENDERERS = {
    ReportFormat.TABLE: render_table,
    ReportFormat.CSV: render_csv,
    ReportFormat.JSON: render_json,
    ReportFormat.HTML: render_html,
}


def render(report: SlaReport, fmt: ReportFormat) -> str:
    """The report in one of the formats."""
    return RENDERERS[fmt](report)
