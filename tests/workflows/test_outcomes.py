"""Every way a remediation ends besides the happy path, and how failures are reported."""

from __future__ import annotations

from datetime import timedelta

from mailunblock.connectors.errors import (
    AuthenticationError,
    PermanentError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
)
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.state import Stage


def _to_waiting(world):
    world.cycle()
    state = world.approve()
    assert state.stage is Stage.WAITING_FOR_SEND
    return state


def test_not_listed_says_no_restriction_and_resets_nothing_by_default(world):
    world.restricted.entries.clear()
    state = world.cycle()

    # The answer goes out at triage, before any approval, and the plan proposes no change.
    assert state.stage is Stage.AWAITING_APPROVAL and state.listed_at_triage == ()
    assert world.tickets.markers() == ["ack", "not-listed", "plan"]
    public = world.tickets.public()[-1]
    assert "ne figure *pas*" in public and "5.1.90" in public and "24 heures" in public
    assert "réinitialisé" not in public
    plan = world.tickets.notes()[-1]
    assert "*Nothing will be changed:*" in plan and "{{/reset}}" in plan
    state = world.approve()
    assert state.stage is Stage.NOT_LISTED and state.is_terminal
    assert world.restricted.unblocks == [] and world.directory.resets == []
    assert world.directory.revokes == []
    assert "mail-blocked" not in world.tickets.labels and "mail-unblocked" not in world.tickets.labels


def test_not_listed_reset_only_on_the_explicit_command(world):
    world.restricted.entries.clear()
    world.cycle()
    world.tickets.add_comment(world.bob, "/reset suspicious sign-ins")
    state = world.cycle()

    assert state.stage is Stage.NOT_LISTED and state.approval_kind == "reset" and state.explicit_reset
    assert len(world.directory.resets) == 1 and world.restricted.unblocks == []
    assert world.tickets.markers() == ["ack", "not-listed", "plan", "summary", "not-listed-reset"]
    summary = world.tickets.notes()[-1]
    assert "*No restriction found:*" in summary and "within 24 hours" in summary
    assert "sending should resume" not in summary.lower()
    assert "mot de passe a été réinitialisé" in world.tickets.public()[-1]


def test_not_listed_plan_expires_quietly(world):
    world.restricted.entries.clear()
    world.cycle()
    world.clock.advance(hours=168)
    state = world.cycle()
    assert state.stage is Stage.NOT_LISTED and state.is_terminal
    assert world.tickets.markers() == ["ack", "not-listed", "plan"]
    assert world.directory.resets == [] and "mail-blocked" not in world.tickets.labels


def test_unblock_limit_escalates_to_microsoft_support(make_world):
    world = make_world(policy=RemediationPolicy(escalate_transition="Escalate"))
    world.restricted.limit_reached = True
    world.cycle()
    state = world.approve()

    assert state.stage is Stage.ESCALATED and state.refusal == "unblock_limit"
    note = world.tickets.notes()[-1]
    assert "*Open a case with Microsoft Support*" in note and "do not retry the unblock" in note
    assert "(/) Password reset for alice@contoso.com" in note
    assert world.tickets.labels == ["mailunblock-escalated"]
    assert world.tickets.applied == ["Escalate"]
    assert "eta" not in world.tickets.markers()
    world.cycle()
    assert world.restricted.unblocks == []


def test_still_listed_escalates_at_24_hours_not_before(world):
    world.restricted.sticky = True
    state = _to_waiting(world)
    unblocked = state.unblocked_at
    checks = 0
    while world.clock.now() < unblocked + timedelta(hours=24):
        world.clock.current = world.state().next_check_at
        state = world.cycle()
        checks += 1
        if world.clock.now() < unblocked + timedelta(hours=24):
            assert state.stage is Stage.WAITING_FOR_SEND
    assert world.clock.now() == unblocked + timedelta(hours=24)
    assert state.stage is Stage.ESCALATED and state.refusal == "still_listed"
    assert "still on the Restricted users list 24 h after the unblock" in world.tickets.notes()[-1]
    assert world.restricted.unblocks == ["alice@contoso.com"]
    assert checks == 43  # at 3 h, then every 30 min until 24 h


def test_blocked_again_on_a_later_day_escalates_without_unblocking(world):
    _to_waiting(world)
    world.clock.advance(hours=3, minutes=30)
    world.cycle()
    world.clock.advance(hours=12)
    world.restricted.block("alice@contoso.com", at=world.clock.now() - timedelta(minutes=5))
    world.clock.current = world.state().next_check_at
    state = world.cycle()

    assert state.stage is Stage.ESCALATED and state.refusal == "blocked_again"
    assert "probably still compromised" in world.tickets.notes()[-1]
    assert world.restricted.unblocks == ["alice@contoso.com"]
    assert "resolved" not in world.tickets.markers()


def test_ticket_closed_mid_way_stops_and_says_what_was_done(world):
    _to_waiting(world)
    world.tickets.status, world.tickets.status_category = "Done", "done"
    world.clock.advance(minutes=5)  # not due for verification, but the closure is seen at once
    state = world.cycle()

    assert state.stage is Stage.CANCELLED and state.is_terminal
    note = world.tickets.notes()[-1]
    assert note.startswith("h3. mailunblock — stopped\n\nThe ticket was closed")
    assert "(/) Password reset" in note and "(/) Sign-in sessions revoked." in note
    assert "(/) Removed from the Restricted users list: alice@contoso.com." in note
    world.clock.advance(hours=5)
    world.cycle()
    assert world.tickets.markers().count("cancelled") == 1


def test_closed_before_anything_was_done(world):
    world.cycle()
    world.tickets.status_category = "done"
    assert world.cycle().stage is Stage.CANCELLED
    assert "(x) Password not reset." in world.tickets.notes()[-1]
    assert "(x) The Restricted users list was not checked." in world.tickets.notes()[-1]


def test_transient_failure_keeps_the_stage_and_notes_once(world):
    world.cycle()
    world.directory.fail["revoke_sessions"] = [
        TransientError("HTTP 503 from Graph", service="graph"),
        TransientError("HTTP 503 from Graph", service="graph"),
    ]
    state = world.approve()

    assert state.stage is Stage.PASSWORD_RESET
    assert state.retry_at == world.clock.now() + timedelta(minutes=5)
    note = world.tickets.notes()[-1]
    assert note.startswith("(!) mailunblock: revoking sign-in sessions failed: graph: HTTP 503 from Graph.")
    assert "retries automatically" in note
    assert "Traceback" not in note
    assert world.engine().due(state) is False
    assert world.cycle().stage is Stage.PASSWORD_RESET  # before retry_at: nothing happens
    assert len(world.directory.fail["revoke_sessions"]) == 1

    world.clock.advance(minutes=5)
    assert world.cycle().stage is Stage.PASSWORD_RESET  # failed again: no second note
    world.clock.advance(minutes=5)
    assert world.cycle().stage is Stage.WAITING_FOR_SEND
    assert world.tickets.markers().count("failure-password_reset-transient") == 1
    assert len(world.directory.resets) == 1


def test_throttling_honours_retry_after(world):
    world.cycle()
    world.restricted.fail["blocked_entries"] = [
        ThrottledError("too many requests", retry_after=120, service="exchange")]
    state = world.approve()
    assert state.stage is Stage.MAILBOX_CHECKED
    assert state.retry_at == world.clock.now() + timedelta(seconds=120)


def test_permission_and_authentication_failures_say_what_to_fix(world):
    world.cycle()
    world.directory.fail["reset_password"] = [
        PermissionDeniedError("Insufficient privileges to complete the operation.", service="graph",
                              code="Authorization_RequestDenied")]
    world.approve()
    assert "grant what the error names" in world.tickets.notes()[-1]
    assert "[Authorization_RequestDenied]" in world.tickets.notes()[-1]

    world.clock.advance(minutes=5)
    world.directory.fail["reset_password"] = [AuthenticationError("invalid client", service="identity")]
    world.cycle()
    assert "certificate or secret" in world.tickets.notes()[-1]
    world.clock.advance(minutes=5)
    assert world.cycle().stage is Stage.WAITING_FOR_SEND
    assert len(world.directory.resets) == 1


def test_permanent_failure_escalates_with_a_note(world):
    world.cycle()
    world.directory.fail["revoke_sessions"] = [
        PermanentError("Invalid object identifier", service="graph", code="Request_BadRequest")]
    state = world.approve()

    assert state.stage is Stage.ESCALATED and state.refusal == "failed"
    note = world.tickets.notes()[-1]
    assert "A step failed and cannot succeed by retrying: sessions: graph: Invalid object" in note
    assert "(/) Password reset" in note and "(x) Sign-in sessions not revoked." in note
    assert world.restricted.unblocks == []


def test_reset_that_timed_out_but_happened_is_not_repeated(world):
    world.cycle()
    world.directory.fail_after["reset_password"] = [TransientError("read timed out", service="graph")]
    state = world.approve()
    assert state.stage is Stage.APPROVED and len(world.directory.resets) == 1

    world.clock.advance(minutes=5)
    state = world.cycle()
    assert state.stage is Stage.WAITING_FOR_SEND
    assert len(world.directory.resets) == 1


def test_reset_that_failed_is_retried_with_the_same_vaulted_password(world):
    world.cycle()
    world.directory.fail["reset_password"] = [TransientError("connection reset", service="graph")]
    world.approve()
    world.clock.advance(minutes=5)
    world.cycle()

    assert len(world.vault.stored) == 1
    assert [p for _, p in world.directory.resets] == world.vault.stored


def test_unreadable_inbox_rules_do_not_stop_the_unblock(world):
    # A missing permission stays missing: triage (mailbox check) and the report both meet it.
    world.directory.fail["inbox_rules"] = [
        PermissionDeniedError("Access is denied.", service="graph", code="ErrorAccessDenied")
        for _ in range(2)]
    state = _to_waiting(world)
    assert state.inbox_rules_error is not None
    assert "Inbox rules could not be read (graph: Access is denied. [ErrorAccessDenied])" in \
        world.tickets.notes()[-1]


def test_missing_resolve_transition_is_noted(make_world):
    world = make_world(policy=RemediationPolicy(resolve_transition="Close as fixed"))
    _to_waiting(world)
    world.clock.advance(hours=4)
    state = world.cycle()
    assert state.stage is Stage.RESOLVED
    assert 'could not apply the transition "Close as fixed"' in world.tickets.notes()[-1]
    assert world.tickets.markers()[-1] == "transition-close-as-fixed"


def test_jira_outage_while_closing_is_retried(world):
    _to_waiting(world)
    world.clock.advance(hours=4)
    world.tickets.fail["update_labels"] = [TransientError("HTTP 502", service="jira")]
    state = world.cycle()
    assert state.stage is Stage.RESOLVED and not state.is_terminal
    world.clock.advance(minutes=5)
    state = world.cycle()
    assert state.is_terminal and world.tickets.labels == ["mail-unblocked"]
    assert world.tickets.markers().count("resolved") == 1


def test_a_tenant_removed_from_the_configuration_escalates_instead_of_failing_every_cycle(world):
    from mailunblock.workflows.engine import RemediationEngine
    from mailunblock.workflows.tenants import TenantRegistry

    world.cycle()
    world.tickets.add_comment(world.bob, "/approve")
    engine = RemediationEngine(world.policy, world.tickets, TenantRegistry([]), world.repository,
                               world.vault, world.clock)
    state = engine.process(world.tickets.issue(), world.repository.load(world.key))

    assert state.stage is Stage.ESCALATED and state.refusal == "tenant_unknown"
    note = world.tickets.notes()[-1]
    assert 'The tenant "contoso" of alice@contoso.com is no longer in the configuration' in note
    assert "(x) Password not reset." in note
    assert world.directory.resets == [] and world.tickets.labels == ["mailunblock-escalated"]


def test_a_finished_ticket_tagged_again_is_not_silently_ignored(world):
    world.cycle()
    world.tickets.add_comment(world.bob, "/reject call the user first")
    assert world.cycle().stage is Stage.REJECTED
    assert "mail-blocked" not in world.tickets.labels
    notes = len(world.tickets.notes())

    world.tickets.labels.append("mail-blocked")  # an agent re-tags the ticket (or re-opens it)
    state = world.cycle()
    assert state.stage is Stage.REJECTED and world.directory.resets == []
    note = world.tickets.notes()[-1]
    assert len(world.tickets.notes()) == notes + 1
    assert "already handled this ticket" in note and "raise a new ticket" in note
    assert "mail-blocked" not in world.tickets.labels  # leaves the selection again

    world.tickets.labels.append("mail-blocked")
    world.cycle()
    assert len(world.tickets.notes()) == notes + 1, "explained once"
    assert "mail-blocked" not in world.tickets.labels
