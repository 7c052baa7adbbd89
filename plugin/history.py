"""One ticket's story for ``mailunblock status``: stages with times, the approval, what was done, the audit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mailunblock.workflows.state import TicketState


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _text(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "-"


def ticket_history(
    state: TicketState, events: Sequence[tuple[str, str, datetime]], audit: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The history of one ticket as JSON-safe data (``events``: the store's ``stage_events`` rows)."""
    return {
        "ticket": state.issue_key,
        "stage": str(state.stage),
        "finished": state.is_terminal,
        "tenant": state.tenant,
        "account": state.account_upn,
        "reason": str(state.refusal) if state.refusal else None,
        "reason_detail": state.refusal_detail or None,
        "filed_at": _iso(state.ticket_created_at),
        "stages": [{"stage": stage, "at": at.isoformat()} for _, stage, at in events],
        "approval": {
            "by": state.approved_by,
            "how": str(state.approval_kind) if state.approval_kind else None,
            "at": _iso(state.approved_at),
        } if state.approved_by or state.approval_kind else None,
        "done": {
            "password_reset_at": _iso(state.password_reset_at),
            "sessions_revoked_at": _iso(state.sessions_revoked_at),
            "unblocked": list(state.unblocked_addresses),
            "unblocked_at": _iso(state.unblocked_at),
            "eta": [_iso(state.eta_start), _iso(state.eta_end)] if state.eta_start else None,
        },
        "failures": list(state.failures),
        "audit": [dict(entry) for entry in audit],
    }


def render_history(history: Mapping[str, Any]) -> str:
    """The history as text for a person at a terminal."""
    lines = [
        f"{history['ticket']}: {history['stage']}{'' if history['finished'] else ' (in progress)'}",
        f"  tenant: {history['tenant'] or '-'}  account: {history['account'] or '-'}",
    ]
    if history["reason"]:
        lines.append(f"  reason: {history['reason']} {history['reason_detail'] or ''}".rstrip())
    if history["filed_at"]:
        lines.append(f"  filed: {_text(datetime.fromisoformat(history['filed_at']))}")
    lines.append("  stages:")
    lines += [f"    {_text(datetime.fromisoformat(s['at']))}  {s['stage']}" for s in history["stages"]]
    approval = history["approval"]
    if approval:
        at = _text(datetime.fromisoformat(approval["at"])) if approval["at"] else "-"
        lines.append(f"  approved by {approval['by'] or '-'} ({approval['how'] or '-'}) at {at}")
    if history["failures"]:
        lines.append("  failures:")
        lines += [f"    {failure}" for failure in history["failures"]]
    if history["audit"]:
        lines.append("  actions:")
        for entry in history["audit"]:
            target = f" {entry['target']}" if entry.get("target") else ""
            actor = f" by {entry['actor']}" if entry.get("actor") else ""
            detail = f" ({entry['detail']})" if entry.get("detail") else ""
            lines.append(f"    {_text(datetime.fromisoformat(entry['at']))}  {entry['action']}{target}"
                         f"{actor}: {entry['result']}{detail}")
    return "\n".join(lines) + "\n"
