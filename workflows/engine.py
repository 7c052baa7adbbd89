"""The remediation engine: advances one ticket as far as it can, saving before every side effect."""

from __future__ import annotations

import logging
import threading

from mailunblock.connectors.errors import ConnectorError
from mailunblock.connectors.models import Person, Ticket, TicketHead
from mailunblock.workflows import closing, failures, machine, notify, triage
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.cycle import CycleCache
from mailunblock.workflows.moves import Finish
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.ports import Clock, Membership, PasswordVault, StateRepository, Tickets
from mailunblock.workflows.state import TERMINAL_STAGES, Stage, StateSummary, TicketState, require
from mailunblock.workflows.tenants import TenantRegistry
from mailunblock.workflows.vocabulary import CancellationReason, EscalationReason, FailureKind, Note, NoteName

log = logging.getLogger(__name__)


class RemediationEngine:
    """Decides and performs the next steps of a ticket's remediation."""

    def __init__(
        self,
        policy: RemediationPolicy,
        tickets: Tickets,
        tenants: TenantRegistry,
        repository: StateRepository,
        vault: PasswordVault,
        clock: Clock,
        membership: Membership,
    ) -> None:
        self._policy = policy
        self._tickets = tickets
        self._tenants = tenants
        self._repository = repository
        self._vault = vault
        self._clock = clock
        self._membership = membership
        self._bot: Person | None = None
        self._bot_lock = threading.Lock()
        self._cycle: CycleCache | None = None

    def begin_cycle(self) -> None:
        """Start a poll cycle: the reads its tickets share are made again, once each.

        Shared: each tenant's Restricted users list, approver membership, reporters' Jira profiles.
        Without a cycle begun, each ``process`` reads afresh.
        """
        self._cycle = CycleCache()

    @property
    def clock(self) -> Clock:
        """The engine's clock (a dry run shares it)."""
        return self._clock

    def _myself(self) -> Person:
        """The bot's own Jira account, read once per engine."""
        with self._bot_lock:  # workers start together: one request, not one per worker
            if self._bot is None:
                self._bot = self._tickets.myself()
            return self._bot

    def due(self, state: TicketState | StateSummary) -> bool:
        """Whether ``process`` has work to do now (a cancelled or closed ticket is always worth a call)."""
        now = self._clock.now()
        if state.is_terminal or (state.retry_at is not None and now < state.retry_at):
            return False
        if state.stage is Stage.WAITING_FOR_SEND and not state.closing:
            return state.next_check_at is None or now >= state.next_check_at
        return True

    def needs_work(self, issue: TicketHead, state: StateSummary | None) -> bool:
        """Whether ``process`` would do anything with this ticket now (the poller skips the others)."""
        if state is None:
            return True
        if state.is_terminal:
            return not issue.is_done and self._policy.trigger_label in issue.labels  # tagged again
        if issue.is_done or self._policy.trigger_label not in issue.labels or state.closing:
            return True
        if state.tenant is not None and not self._tenants.knows(state.tenant):
            return True
        if self._quiet(issue, state):
            return False
        return self.due(state)

    def _quiet(self, issue: TicketHead, state: StateSummary) -> bool:
        """A ticket waiting on people, unchanged since a pass found nothing to act on, before its next look.

        Any change to a ticket (a comment, a status, a field) moves its ``updated``. Native JSM approvals
        are read from their own resource: such tickets are looked at every cycle.
        """
        return (state.quiet_at_updated is not None and issue.updated == state.quiet_at_updated
                and not self._policy.jsm_native_approval
                and state.next_check_at is not None and self._clock.now() < state.next_check_at)

    def lane(self, issue: Ticket, state: StateSummary | None) -> str:
        """The tenant this ticket's work goes to: known once triaged, else the domain of its first candidate."""
        if state is not None and state.tenant:
            return state.tenant
        found = triage.ticket_candidates(issue, self._tenants)
        tenant = self._tenants.for_domain(found[0].rpartition("@")[2]) if isinstance(found, tuple) and found else None
        return tenant.name if tenant is not None else ""

    def process(self, issue: Ticket, state: TicketState | None) -> TicketState:
        """Advance the ticket as far as possible now; return its (saved) state."""
        if state is None:
            state = TicketState.first_seen(issue.key, self._clock.now())
        state.issue_id = state.issue_id or issue.id or None
        state.ticket_created_at = state.ticket_created_at or issue.created
        if state.quiet_at_updated is not None:  # the last pass waited: this one sets its own next look, if any
            state.quiet_at_updated = state.next_check_at = None
        ctx = StepContext(
            self._policy, self._tickets, self._tenants, self._repository, self._vault, self._clock,
            issue, state, self._membership, cycle=self._cycle or CycleCache(),
        )
        self._advance(ctx)
        ctx.flush()  # the confirmations the pass held back (``StepContext.save_later``)
        return state

    def _advance(self, ctx: StepContext) -> None:
        """One pass over the ticket; what it holds back for the next save is the caller's to flush."""
        state, issue = ctx.state, ctx.issue
        if state.is_terminal:
            if not issue.is_done and self._policy.trigger_label in issue.labels:
                self._tagged_again(ctx)
            return
        if not state.closing:
            self._stop_if_abandoned(ctx)
        if (state.stage not in TERMINAL_STAGES and state.tenant is not None
                and not self._tenants.knows(state.tenant)):
            # Removed from the configuration mid-way: nothing can act on the account any more.
            state.refusal, state.refusal_detail = EscalationReason.TENANT_UNKNOWN, state.tenant
            machine.apply(ctx, Finish(Stage.ESCALATED, closing.escalated(self._policy)), by_engine=True)
        if not self.due(state):
            return
        stage = state.stage
        try:
            if not state.closing:
                ctx.bot = self._myself()
                if machine.remediating(state.stage) and triage.named_elsewhere(ctx):
                    notify.changed_after_start(ctx)
                machine.advance(ctx)
            closing.run(ctx)
        except ConnectorError as error:
            self._record_failure(ctx, error, stage)
            if failures.is_permanent(error):
                self._give_up(ctx, error)
            else:
                self._retry_later(ctx, error)
        else:
            if state.failures:
                state.failures, state.failing_since = (), None
                ctx.save()

    def _tagged_again(self, ctx: StepContext) -> None:
        """A finished ticket re-tagged or re-opened: say once that it will not start over; untag it."""
        try:
            notify.tagged_again(ctx)
            self._tickets.update_labels(ctx.state.issue_key, remove=[self._policy.trigger_label])
        except ConnectorError as error:
            log.warning("%s: could not answer the new tag: %s", ctx.state.issue_key, error)

    def _stop_if_abandoned(self, ctx: StepContext) -> None:
        issue, state = ctx.issue, ctx.state
        if issue.is_done:
            reason = CancellationReason.CLOSED
        elif self._policy.trigger_label not in issue.labels:
            reason = CancellationReason.UNTAGGED
        else:
            return
        if state.stage is Stage.AWAITING_APPROVAL and not state.listed_at_triage:
            # The answer "not on the list" was given and nothing was approved: a normal end, not a stop.
            machine.apply(ctx, Finish(Stage.NOT_LISTED), by_engine=True)
            return
        state.refusal = reason
        note = (Note(NoteName.CANCELLED),) if state.posted else ()
        machine.apply(ctx, Finish(Stage.CANCELLED, note), by_engine=True)

    def _record_failure(self, ctx: StepContext, error: ConnectorError, stage_before: Stage) -> None:
        """Remember the failure: what was tried, since when the stage makes no progress."""
        state, now = ctx.state, ctx.now()
        if state.stage is not stage_before:
            state.failures, state.failing_since = (), None  # the ticket progressed before failing
        activity = machine.activity(state.stage)
        state.failures = (*state.failures, f"{now:%Y-%m-%d %H:%M} UTC {activity} ({failures.kind(error)}): {error}")
        state.failures = state.failures[-failures.KEPT_FAILURES:]
        state.failing_since = state.failing_since or now
        state.failure_count += 1
        state.failed_service = error.service or None

    def _retry_later(self, ctx: StepContext, error: ConnectorError) -> None:
        state = ctx.state
        kind = failures.kind(error)
        activity = machine.activity(state.stage)
        failing_since = require(state.failing_since, "the first failure's time (set by _record_failure)")
        if not state.closing and ctx.now() - failing_since >= self._policy.stuck_after:
            log.warning("%s: %s makes no progress since %s; escalating: %s",
                        state.issue_key, activity, failing_since.isoformat(), error)
            hours = self._policy.stuck_after.total_seconds() / 3600
            state.refusal, state.refusal_detail = EscalationReason.STUCK, f"{hours:g} h"
            state.failed_step = activity
            self._escalate(ctx)
            return
        state.retry_at = ctx.now() + failures.retry_delay(self._policy, error, state)
        ctx.save()
        log.warning("%s: %s failed (%s), retry at %s: %s",
                    state.issue_key, activity, kind, state.retry_at.isoformat(), error)
        if kind is FailureKind.THROTTLED:
            # The service asked everyone to wait (a burst throttles a whole tenant): the ticket resumes at
            # its deadline without a note on each ticket; one that stays throttled escalates as stuck.
            return
        try:
            notify.failure(ctx, f"failure-{state.stage}-{kind}", activity, str(error), kind,
                           state.retry_at)
        except ConnectorError as note_error:
            # A throttled Jira refuses the note without a request; it is posted on a later failure.
            log.warning("%s: could not post the failure note: %s", state.issue_key, note_error)

    def _give_up(self, ctx: StepContext, error: ConnectorError) -> None:
        state = ctx.state
        activity = machine.activity(state.stage)
        log.warning("%s: %s failed permanently: %s", state.issue_key, activity, error)
        if state.closing:
            # A ticket update that cannot succeed: say so once and move on to the next one.
            failed, state.closing = state.closing[0], state.closing[1:]
            ctx.save()
            try:
                notify.failure(ctx, f"failure-closing-{failed.slug}", activity, str(error), FailureKind.PERMANENT,
                               None)
                closing.run(ctx)
            except ConnectorError as again:
                log.warning("%s: closing the ticket failed: %s", state.issue_key, again)
            return
        state.refusal, state.refusal_detail = failures.refusal_for(error), f"{activity}: {error}"
        state.failed_step = activity
        self._escalate(ctx)

    def _escalate(self, ctx: StepContext) -> None:
        """Hand the ticket to a person: one note naming why and what to do, then the escalation updates."""
        machine.apply(ctx, Finish(Stage.ESCALATED, closing.escalated(self._policy)), by_engine=True)
        try:
            closing.run(ctx)
        except ConnectorError as again:
            log.warning("%s: escalating the ticket failed: %s", ctx.state.issue_key, again)
