"""Every way a remediation ends besides the happy path, and how failures are reported."""

from __future__ import annotations

from datetime import timedelta

import pytest
from mailunblock.connectors.errors import (
    AuthenticationError,
    PermanentError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
)
from mailunblock.workflows import messages
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


def test_a_throttled_step_waits_for_its_deadline_without_a_note(world):
    world.cycle()
    world.directory.fail["revoke_sessions"] = [ThrottledError("HTTP 429", retry_after=600, service="graph")]
    state = world.approve()
    assert state.stage is Stage.PASSWORD_RESET
    assert timedelta(seconds=600) <= state.retry_at - world.clock.now() <= timedelta(seconds=660)
    assert not any(m.startswith("failure-") for m in world.tickets.markers())  # no note on each ticket
    world.clock.current = state.retry_at
    assert world.cycle().stage is Stage.WAITING_FOR_SEND
    assert len(world.directory.resets) == 1


def test_a_throttled_reset_is_sent_again_at_its_deadline_not_after_the_reset_grace(make_world):
    """A 429 is Graph's answer: the PATCH was not applied and is not on its way, so nothing is waited out."""
    world = make_world(policy=RemediationPolicy(reset_grace=timedelta(minutes=30)))
    world.cycle()
    world.directory.fail["reset_password"] = [ThrottledError("HTTP 429", retry_after=20, service="graph")]
    state = world.approve()
    assert state.stage is Stage.APPROVED and world.directory.resets == []
    assert state.password_refused_at is not None
    assert state.retry_at - world.clock.now() <= timedelta(minutes=1)
    world.clock.current = state.retry_at
    state = world.cycle()
    assert state.stage is Stage.WAITING_FOR_SEND
    assert [p for _, p in world.directory.resets] == world.vault.stored  # the vaulted password, once


def test_transient_failure_keeps_the_stage_and_notes_once(world):
    world.cycle()
    world.directory.fail["revoke_sessions"] = [
        TransientError("HTTP 503 from Graph", service="graph"),
        TransientError("HTTP 503 from Graph", service="graph"),
    ]
    state = world.approve()

    assert state.stage is Stage.PASSWORD_RESET
    first_wait = state.retry_at - world.clock.now()
    assert timedelta(minutes=4) <= first_wait <= timedelta(minutes=5)  # 5 min, less up to 20 % jitter
    note = world.tickets.notes()[-1]
    assert note.startswith("(!) mailunblock: revoking sign-in sessions failed: graph: HTTP 503 from Graph.")
    assert "retries automatically" in note
    assert "Traceback" not in note
    assert world.engine().due(state) is False
    assert world.cycle().stage is Stage.PASSWORD_RESET  # before retry_at: nothing happens
    assert len(world.directory.fail["revoke_sessions"]) == 1

    world.clock.current = state.retry_at
    state = world.cycle()
    assert state.stage is Stage.PASSWORD_RESET  # failed again: no second note, a longer wait
    assert timedelta(minutes=8) <= state.retry_at - world.clock.now() <= timedelta(minutes=10)
    world.clock.current = state.retry_at
    state = world.cycle()
    assert state.stage is Stage.WAITING_FOR_SEND
    assert state.failures == () and state.failing_since is None and state.failure_count == 2
    assert world.tickets.markers().count("failure-password_reset-transient") == 1
    assert len(world.directory.resets) == 1


def test_backoff_doubles_with_jitter_up_to_the_cap(make_world):
    world = make_world(policy=RemediationPolicy(retry_after=timedelta(minutes=5), retry_max=timedelta(minutes=30),
                                                stuck_after=timedelta(hours=100)))
    world.cycle()
    world.directory.fail["revoke_sessions"] = [TransientError("timeout", service="graph") for _ in range(8)]
    state = world.approve()
    waits = []
    for _ in range(7):
        waits.append(state.retry_at - world.clock.now())
        world.clock.current = state.retry_at
        state = world.cycle()
    minutes = [w.total_seconds() / 60 for w in waits]
    for wait, nominal in zip(minutes, [5, 10, 20, 30, 30, 30, 30], strict=True):
        assert 0.8 * nominal <= wait <= nominal
    assert len(set(minutes[3:])) > 1, "jitter: capped waits still differ"
    assert state.stage is Stage.PASSWORD_RESET and len(world.directory.resets) == 1


def test_throttling_honours_retry_after(world):
    world.cycle()
    world.restricted.fail["blocked_entries"] = [
        ThrottledError("too many requests", retry_after=120, service="exchange")]
    state = world.approve()
    assert state.stage is Stage.MAILBOX_CHECKED
    assert world.clock.now() + timedelta(seconds=120) <= state.retry_at <= world.clock.now() + timedelta(seconds=132)


def test_a_missing_graph_permission_stops_the_ticket_with_one_note_naming_it(world):
    world.cycle()
    world.directory.fail["reset_password"] = [
        PermissionDeniedError("Insufficient privileges to complete the operation.", service="graph",
                              code="Authorization_RequestDenied")]
    state = world.approve()

    assert (state.stage, state.refusal, state.failed_step) == (Stage.ESCALATED, "missing_permission", "password")
    before = world.tickets.markers()
    assert before.count("escalated") == 1 and not any(m.startswith("failure-") for m in before)
    note = world.tickets.notes()[-1]
    assert "[Authorization_RequestDenied]" in note
    assert ("the application permission(s), with admin consent: "
            "User-PasswordProfile.ReadWrite.All (Microsoft Graph)") in note
    assert "API permissions > Add a permission > Microsoft Graph > Application permissions" in note
    assert "the Entra role(s), on its service principal: User Administrator" in note
    assert "Roles and administrators > User Administrator > Add assignments" in note
    assert "mailunblock-escalated" in world.tickets.labels
    world.clock.advance(hours=2)
    world.cycle()
    assert world.tickets.markers() == before and world.directory.resets == []  # never retried


def test_a_persistent_sign_in_error_stops_with_the_fix_but_a_plain_401_is_retried(make_world):
    world = make_world()
    world.cycle()
    world.directory.fail["reset_password"] = [AuthenticationError("invalid client", service="identity")]
    state = world.approve()
    assert state.stage is Stage.APPROVED and state.retry_at is not None  # may be a token refused early
    assert "certificate or secret" in world.tickets.notes()[-1]
    world.clock.current = state.retry_at
    world.directory.fail["reset_password"] = [AuthenticationError(
        "token request failed: invalid_client: AADSTS7000222: The provided client secret keys are expired.",
        service="identity", code="AADSTS7000222")]
    state = world.cycle()
    assert (state.stage, state.refusal) == (Stage.ESCALATED, "sign_in")
    note = world.tickets.notes()[-1]
    assert "the client secret has expired: create a new secret" in note
    assert "Certificates & secrets" in note
    assert world.directory.resets == []


def test_a_stage_failing_for_stuck_after_hours_escalates_with_what_was_tried(make_world):
    world = make_world(policy=RemediationPolicy(stuck_after=timedelta(hours=6)))
    world.cycle()
    world.restricted.fail["blocked_entries"] = [TransientError(f"HTTP 502 #{n}", service="exchange")
                                                for n in range(40)]
    state = world.approve()
    started = world.clock.now()
    while state.stage is Stage.MAILBOX_CHECKED:
        assert world.clock.now() - started <= timedelta(hours=7), "not escalated in time"
        world.clock.current = state.retry_at
        state = world.cycle()
    assert (state.stage, state.refusal, state.refusal_detail) == (Stage.ESCALATED, "stuck", "6 h")
    assert world.clock.now() - started >= timedelta(hours=6)
    note = world.tickets.notes()[-1]
    assert "A step made no progress for 6 h despite retries" in note
    assert note.count("list (transient): exchange: HTTP 502") == 6  # the latest tries, with their times
    assert "(/) Password reset" in note and world.restricted.unblocks == []


@pytest.mark.parametrize("locale", messages.SUPPORTED_LOCALES)
@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PermissionDeniedError("Insufficient privileges", service="exchange", code="Forbidden"), "missing_permission"),
        (PermissionDeniedError("You do not have the permission", service="jira"), "jira_permission"),
        (AuthenticationError("AADSTS700016: app not found", service="identity", code="AADSTS700016"), "sign_in"),
    ],
)
def test_every_new_escalation_reason_renders_in_every_locale(make_world, locale, error, reason):
    world = make_world(policy=RemediationPolicy(locale=locale))
    world.cycle()
    world.restricted.fail["blocked_entries"] = [error]
    state = world.approve()
    assert (state.stage, state.refusal) == (Stage.ESCALATED, reason)
    note = world.tickets.notes()[-1]
    assert f"{reason}:" not in note and f"{reason} :" not in note  # not the raw fallback line
    assert str(error) in note
    if reason == "missing_permission":
        assert "Exchange.ManageAsApp" in note and "Exchange Administrator" in note
    if reason == "sign_in":
        assert "client_id" in note


@pytest.mark.parametrize("locale", messages.SUPPORTED_LOCALES)
def test_the_exchange_warning_note_renders_in_every_locale(locale):
    text = messages.render(locale, "failure", action="unblock", error="«W»", kind="warning", retry_at="R")
    assert "«W»" in text and "R" in text and "failed" not in text


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
                               world.vault, world.clock, world.tickets)
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


WARNING = "The operation completed but the recipient may still be restricted; changes can take up to 1 hour."


def test_an_unblock_answered_with_a_warning_is_not_reported_until_a_re_read_confirms_it(world):
    world.restricted.sticky = True  # the first unblock did not take
    world.restricted.warnings = [(WARNING,)]
    world.cycle()
    state = world.approve()
    assert state.stage is Stage.LIST_CHECKED and state.unblocked_addresses == ()
    assert "eta" not in world.tickets.markers() and "summary" not in world.tickets.markers()
    note = world.tickets.notes()[-1]
    assert f'alice@contoso.com: "{WARNING}"' in note and "Not reported as done" in note
    assert state.retry_at == world.clock.now() + world.policy.unblock_grace

    world.restricted.sticky = False
    world.clock.current = state.retry_at
    state = world.cycle()  # still listed after the grace period: sent once more, and this one takes
    assert world.restricted.unblocks == ["alice@contoso.com", "alice@contoso.com"]
    assert state.stage is Stage.WAITING_FOR_SEND and state.unblocked_addresses == ("alice@contoso.com",)
    assert world.tickets.markers().count("eta") == 1


def test_a_warning_the_list_contradicts_is_a_success(world):
    world.restricted.warnings = [(WARNING,)]
    world.cycle()
    state = world.approve()
    assert state.stage is Stage.WAITING_FOR_SEND and world.restricted.unblocks == ["alice@contoso.com"]
    assert not any(m.startswith("warning-") for m in world.tickets.markers())
