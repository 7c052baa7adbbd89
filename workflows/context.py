"""What a step works with: the ports, the ticket as just read, and its state."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailunblock.connectors.models import BlockedSender, DirectoryUser, InboxRule, Person, Ticket
from mailunblock.workflows import approvers, messages
from mailunblock.workflows.cycle import CycleCache
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.ports import Clock, Membership, PasswordVault, StateRepository, Tickets
from mailunblock.workflows.state import TERMINAL_STAGES, Stage, TicketState
from mailunblock.workflows.tenants import TenantRegistry, TenantServices
from mailunblock.workflows.vocabulary import ClosingAction, SlaProperty

log = logging.getLogger(__name__)

MARKER_PREFIX = "mailunblock"


@dataclass
class StepContext:
    """One engine pass over one ticket."""

    policy: RemediationPolicy
    tickets: Tickets
    tenants: TenantRegistry
    repository: StateRepository
    vault: PasswordVault
    clock: Clock
    issue: Ticket
    state: TicketState
    membership: Membership
    bot: Person | None = None  # the account mailunblock itself writes as: it never decides anything
    # Set once this pass has checked that the approved plan still matches the ticket and the account.
    plan_checked: bool = False
    # The account as the directory answered in this pass (the pre-reset re-check): the reset and the
    # revocation record their before-values from it instead of reading the account again.
    account_read: DirectoryUser | None = None
    # The inbox rules as read right after the revocation in this pass (the mailbox step reports them).
    rules_read: list[InboxRule] | None = None
    posted_now: set[str] = field(default_factory=set)  # ids of comments posted in this pass
    # Reads shared by every ticket of the poll cycle (a pass of its own when no cycle was begun).
    cycle: CycleCache = field(default_factory=CycleCache)
    _held_back: bool = False  # a change ``save_later`` left for the next save
    _announced: set[str] = field(default_factory=set)  # comments ``also_post`` marked pending, not posted yet
    _announced_saved: set[str] = field(default_factory=set)  # ... and stored so


    def is_approver(self, user: Person) -> bool:
        """Approver membership, read at most once per user in this cycle (at the cycle that decides)."""
        return self.cycle.get(("approver", user.ref),
                              lambda: approvers.is_approver(self.policy, self.membership, user))

    def listed_entries(self, tenant: TenantServices, addresses: Sequence[str]) -> list[BlockedSender]:
        """Entries of the tenant's Restricted users list for any of ``addresses`` (case-insensitive).

        The list is read once per cycle and tenant, whatever the number of tickets: it holds only
        restricted accounts, and matching every SMTP address of the account here does not depend on how
        Exchange compares ``-SenderAddress`` (one exact address per call, no aliases).
        """
        entries = self.cycle.get(("restricted", tenant.name), lambda: tuple(tenant.restricted.list_blocked()))
        wanted = {a.lower() for a in addresses}
        return [e for e in entries if e.sender_address.lower() in wanted]

    def now(self) -> datetime:
        """Current time from the injected clock."""
        return self.clock.now()

    def save(self) -> None:
        """Persist the state now: before every side effect (its intent), with anything held back."""
        self.repository.save(self.state)
        self._held_back = False
        self._announced_saved |= self._announced

    def save_later(self) -> None:
        """Have a change no side effect waits for (a confirmation, a stage reached) written by the next save.

        That is the intent save of the next side effect, else ``flush`` at the end of the pass. A crash in
        between leaves the last intent as the stored state, exactly as a crash right after the side effect
        would: recovery settles it the same way (the comment marker, Microsoft's timestamps, the list).
        """
        self._held_back = True

    def flush(self) -> None:
        """Write what ``save_later`` held back (the engine calls it when a pass ends)."""
        if self._held_back:
            self.save()

    @property
    def tenant(self) -> TenantServices:
        """The tenant of the affected account (only after triage)."""
        if self.state.tenant is None:
            raise LookupError(f"{self.state.issue_key} has no tenant yet")
        return self.tenants.get(self.state.tenant)

    def enter(self, stage: Stage) -> None:
        """Move to ``stage`` and record it in the history (``machine.apply`` calls it).

        A final stage is saved at once: its closing updates (labels, transitions) must never be made on a
        ticket whose stored state still looks in progress. Any other stage is written by the next save,
        which the next step's first side effect makes before it acts.
        """
        log.info("%s: %s -> %s", self.state.issue_key, self.state.stage, stage,
                 extra={"ticket": self.state.issue_key, "tenant": self.state.tenant, "stage": str(stage),
                        "event": "stage-entered"})
        self.state.enter(stage, self.now())
        self.state.retry_at = None
        if stage in TERMINAL_STAGES:
            self.save()
        else:
            self.save_later()

    def finish(self, stage: Stage, actions: Sequence[ClosingAction]) -> None:
        """Enter a final stage with the ticket updates still to make (see ``closing``); ``machine.apply`` calls it."""
        sla: tuple[ClosingAction, ...] = (SlaProperty(),) if self.policy.sla_summary else ()
        self.state.closing = (*actions, *sla)
        self.state.closing_started = ()
        self.state.next_check_at = None
        self.enter(stage)

    def marker(self, name: str) -> str:
        """The invisible, stable marker of one of our comments on this ticket."""
        return f"{MARKER_PREFIX}:{self.state.issue_key}:{'-'.join(name.split())}"

    def also_post(self, *names: str) -> None:
        """Mark comments this pass posts next as pending now, so that the next save covers them all.

        One intent for several comments posted one after the other. A crash before one of them is posted
        leaves it pending, as its own intent would: recovery looks its marker up before posting it.
        """
        fresh = [n for n in names if n not in self.state.posted and n not in self.state.pending]
        self.state.pending = (*self.state.pending, *fresh)
        self._announced.update(fresh)

    def post(self, name: str, template: str, *, public: bool, **values: Any) -> str:
        """Post a comment exactly once, even across crashes; return its id."""
        state = self.state
        if name in state.posted:
            return state.posted[name]
        marker = self.marker(name)
        if name in self._announced:  # marked pending by this pass, so not posted yet: stored before it is
            if name not in self._announced_saved:
                self.save()
        elif name in state.pending:
            found = self.tickets.find_comment(state.issue_key, marker)
            if found is not None:
                return self._posted(name, found)
        else:
            state.pending = (*state.pending, name)
            self.save()
        locale = state.locale if public else self.policy.locale
        body = messages.render(locale, template, **values)
        comment_id = self.tickets.post_comment(state.issue_key, body, internal=not public, marker=marker)
        return self._posted(name, comment_id)

    def _posted(self, name: str, comment_id: str) -> str:
        self._announced.discard(name)
        self.posted_now.add(comment_id)
        self.state.posted[name] = comment_id
        self.state.pending = tuple(p for p in self.state.pending if p != name)
        self.save_later()  # until then the marker is still pending: after a crash it is looked up, not re-posted
        return comment_id


def moved_since(before: datetime | None, current: datetime | None) -> bool:
    """Whether a timestamp Microsoft keeps moved since we read it: how a crash's hidden outcome is settled.

    Only Microsoft's own values are compared, never our clock with theirs (they may disagree).
    """
    return current is not None and (before is None or current > before)
