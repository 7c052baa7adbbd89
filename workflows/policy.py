"""What the remediation may do and what it promises (the plugin maps its configuration into this)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailunblock.workflows.state import TicketState

ANY_DIRECTORY_ROLE = "*"


@dataclass(frozen=True)
class RemediationPolicy:
    """Timings, safety exclusions, labels and transitions of the remediation."""

    eta_min: timedelta = timedelta(hours=3)
    eta_max: timedelta = timedelta(hours=4)
    escalate_after: timedelta = timedelta(hours=24)
    verify_every: timedelta = timedelta(minutes=30)
    retry_after: timedelta = timedelta(minutes=5)  # first wait after a failure that gave no Retry-After
    retry_max: timedelta = timedelta(hours=1)  # the backoff doubles up to this
    stuck_after: timedelta = timedelta(hours=6)  # failing this long without progress: a person takes over
    # After a crash between recording an unblock and confirming it, wait this long (a sent unblock takes
    # a while to show on the list) before looking again and, if still listed, sending it once more.
    unblock_grace: timedelta = timedelta(minutes=30)
    # After a crash between recording a password reset and confirming it, wait this long before deciding
    # from Microsoft's timestamp that it was not sent: a killed process's PATCH may still be on its way.
    reset_grace: timedelta = timedelta(minutes=2)
    # Blocked again this soon after an earlier unblock: the account is probably still compromised.
    reblock_window: timedelta = timedelta(days=7)
    excluded_roles: tuple[str, ...] = (ANY_DIRECTORY_ROLE,)
    auto_approve: bool = False
    check_inbox_rules: bool = True
    password_length: int = 20
    password_ttl: timedelta = timedelta(hours=24)
    locale: str = "en"
    time_zone: str = "UTC"
    trigger_label: str = "mail-blocked"
    resolved_label: str = "mail-unblocked"
    escalated_label: str = "mailunblock-escalated"
    refused_label: str = "mailunblock-refused"
    resolve_transition: str | None = "Resolve"
    escalate_transition: str | None = None
    refuse_transition: str | None = None  # a status agents watch, for tickets automation will not handle
    # A plan nobody approved within this long is cancelled (Microsoft's automated investigation expires
    # pending actions after a week too).
    approval_timeout: timedelta = timedelta(hours=168)
    # A ticket waiting on people that shows no change is looked at again after this long all the same (a
    # decision Jira recorded without moving the ticket's ``updated``); any change is seen at the next cycle.
    waiting_recheck: timedelta = timedelta(minutes=15)
    approve_status: str | None = None  # a move to this status by an approver counts as approval
    jsm_native_approval: bool = False  # a decided native approval (JSM) on the request approves or rejects
    # Who may approve: members of these groups, or holders of these roles in these projects.
    approver_groups: frozenset[str] = frozenset()
    approver_roles: frozenset[str] = frozenset()
    approver_role_projects: tuple[str, ...] = ()
    # Given, a final ticket gets this SLA summary as a ticket property (the closing action SlaProperty).
    sla_summary: Callable[[TicketState], Mapping[str, Any]] | None = None

    def excludes_role(self, display_name: str, template_id: str) -> bool:
        """True when holding this directory role keeps an account out of automation."""
        wanted = {r.lower() for r in self.excluded_roles}
        return bool(wanted & {ANY_DIRECTORY_ROLE, display_name.lower(), template_id.lower()})
