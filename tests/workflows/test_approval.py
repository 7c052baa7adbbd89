"""Approval rules: only an approver other than the reporter and the user, after the plan."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta

from mailunblock.connectors.jira import JiraUser
from mailunblock.connectors.models import TicketHead
from mailunblock.workflows.approval import parse_command
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.state import Stage


def _nothing_done(world):
    assert world.directory.resets == [] and world.restricted.unblocks == []


def test_parse_command():
    assert parse_command("  /APPROVE ") == ("/approve", "")
    assert parse_command("/reject not this user\nsee chat") == ("/reject", "not this user\nsee chat")
    assert parse_command("I will /approve later") is None
    assert parse_command("") is None


def test_non_approver_is_ignored_once(world):
    world.cycle()
    comment = world.tickets.add_comment(world.eve, "/approve")
    state = world.cycle()

    assert state.stage is Stage.AWAITING_APPROVAL
    assert state.ignored == {comment.id: "not_approver"}
    assert world.tickets.notes()[-1] == "Approval by Eve Outsider ignored: Eve Outsider is not an approver."
    world.cycle()
    world.cycle()
    assert world.tickets.markers().count(f"ignored-{comment.id}") == 1
    _nothing_done(world)

    assert world.approve().stage is Stage.WAITING_FOR_SEND


def test_reporter_cannot_approve_even_as_approver(world):
    world.tickets.reporter = world.carol
    world.tickets.affected_account = "alice@contoso.com"
    world.cycle()
    state = world.approve(world.carol)

    assert state.stage is Stage.AWAITING_APPROVAL
    assert "the reporter cannot approve their own request" in world.tickets.notes()[-1]
    _nothing_done(world)


def test_reporter_matched_by_email_on_another_jira_account(world):
    world.cycle()
    twin = JiraUser("Alice (agent account)", account_id="acc-alice-2", email="ALICE@contoso.com")
    world.tickets.approvers.add(twin.ref)
    assert world.approve(twin).stage is Stage.AWAITING_APPROVAL
    assert "the reporter cannot approve" in world.tickets.notes()[-1]


def test_affected_user_cannot_approve_through_an_alias(world):
    world.tickets.reporter = world.carol
    world.tickets.affected_account = "alice@contoso.com"
    world.cycle()
    alias = JiraUser("A. Martin", account_id="acc-am", email="a.martin@contoso.com")
    world.tickets.approvers.add(alias.ref)

    assert world.approve(alias).stage is Stage.AWAITING_APPROVAL
    assert "the affected user cannot approve their own remediation" in world.tickets.notes()[-1]
    _nothing_done(world)


def test_approval_before_the_plan_is_ignored(world):
    early = world.tickets.add_comment(world.bob, "/approve")
    world.cycle()  # posts the plan; decisions are judged once the plan is visible on the ticket
    state = world.cycle()

    assert state.stage is Stage.AWAITING_APPROVAL
    assert state.ignored == {early.id: "before_plan"}
    assert "it came before the remediation plan" in world.tickets.notes()[-1]
    _nothing_done(world)


def test_approval_on_an_untagged_ticket_does_nothing(world):
    world.cycle()
    world.tickets.labels.remove("mail-blocked")
    state = world.approve()

    assert state.stage is Stage.CANCELLED
    assert world.tickets.markers() == ["ack", "plan", "cancelled"]
    assert 'The label "mail-blocked" was removed' in world.tickets.notes()[-1]
    assert "(x) Password not reset." in world.tickets.notes()[-1]
    _nothing_done(world)


def test_reject(world):
    world.cycle()
    world.tickets.add_comment(world.bob, "/reject the user is travelling, call first")
    state = world.cycle()

    assert state.stage is Stage.REJECTED and state.rejection_reason == "the user is travelling, call first"
    assert 'Bob Agent rejected the remediation: "the user is travelling, call first"' in \
        world.tickets.notes()[-1]
    assert "mail-blocked" not in world.tickets.labels
    _nothing_done(world)


def test_reject_by_a_non_approver_is_ignored(world):
    world.cycle()
    world.tickets.add_comment(world.eve, "/reject no")
    assert world.cycle().stage is Stage.AWAITING_APPROVAL
    assert world.tickets.notes()[-1].startswith("Rejection by Eve Outsider ignored")


def test_first_valid_command_wins(world):
    world.cycle()
    world.tickets.add_comment(world.eve, "/approve")
    world.tickets.add_comment(world.bob, "/reject wrong account")
    world.tickets.add_comment(world.carol, "/approve")
    state = world.cycle()
    assert state.stage is Stage.REJECTED and state.approved_by == "Bob Agent"


def test_transition_by_an_approver_after_the_plan(make_world):
    world = make_world(policy=RemediationPolicy(approve_status="Approved"))
    world.cycle()
    assert "moves the ticket to the status \"Approved\"" in world.tickets.notes()[0]
    world.clock.advance(minutes=1)
    world.tickets.move(world.eve, "Approved")
    assert world.cycle().stage is Stage.AWAITING_APPROVAL
    assert world.tickets.notes()[-1].startswith("Approval by moving the ticket by Eve Outsider ignored")

    world.clock.advance(minutes=1)
    world.tickets.move(world.bob, "Approved")
    state = world.cycle()
    assert state.stage is Stage.WAITING_FOR_SEND and state.approval_kind == "transition"


def test_transition_before_the_plan_is_ignored(make_world):
    world = make_world(policy=RemediationPolicy(approve_status="Approved"))
    world.tickets.move(world.bob, "Approved")
    world.clock.advance(seconds=1)
    world.cycle()
    assert world.cycle().stage is Stage.AWAITING_APPROVAL
    assert "it came before the remediation plan" in world.tickets.notes()[-1]


def test_auto_approval_is_recorded(make_world):
    world = make_world(policy=RemediationPolicy(auto_approve=True))
    state = world.cycle()

    assert state.stage is Stage.WAITING_FOR_SEND
    assert (state.approval_kind, state.approved_by) == ("auto", "auto-approval policy")
    assert Stage.APPROVED in [e.stage for e in state.history]
    assert "Auto-approval is on" in world.tickets.notes()[0]


def test_french_ignored_note(make_world):
    world = make_world(policy=RemediationPolicy(locale="fr"))
    world.cycle()
    world.tickets.add_comment(world.eve, "/reject non")
    world.cycle()
    assert world.tickets.notes()[-1] == (
        "Refus ignoré (auteur\u00a0: Eve Outsider)\u00a0: Eve Outsider ne fait pas partie des approbateurs.")


def test_whoever_is_the_reporter_now_cannot_approve_either(world):
    world.tickets.affected_account = "alice@contoso.com"
    world.cycle()
    world.tickets.reporter = world.bob  # the reporter field was changed after the plan
    state = world.approve(world.bob)
    assert state.stage is Stage.AWAITING_APPROVAL
    assert world.directory.resets == []
    assert "the reporter cannot approve their own request" in world.tickets.notes()[-1]


def test_an_approver_with_a_hidden_email_cannot_approve_someone_elses_account(world):
    """Jira Cloud may hide emails: then nothing proves the approver is not the affected user."""
    world.tickets.reporter = world.carol
    world.tickets.affected_account = "alice@contoso.com"
    world.cycle()
    hidden = JiraUser("Alice M.", account_id="acc-hidden")  # could be Alice herself
    world.tickets.approvers.add(hidden.ref)

    assert world.approve(hidden).stage is Stage.AWAITING_APPROVAL
    assert "email address is hidden in Jira" in world.tickets.notes()[-1]
    _nothing_done(world)
    assert world.approve(world.bob).stage is not Stage.AWAITING_APPROVAL  # a visible approver can


def test_a_hidden_email_does_not_matter_when_the_reporter_is_the_user(world):
    world.cycle()
    hidden = JiraUser("Bob (no email)", account_id=world.bob.account_id)
    state = world.approve(hidden)
    assert state.stage is not Stage.AWAITING_APPROVAL
    assert len(world.directory.resets) == 1


# ------------------------------------------------------------------ waiting quietly


def _head(issue, **changes):
    """The selection's light view of the ticket (as the poller sees it between cycles)."""
    seen = {"key": issue.key, "id": issue.id, "status": issue.status, "status_category": issue.status_category,
            "labels": issue.labels, "updated": issue.updated}
    return TicketHead(**{**seen, **changes})


def test_a_ticket_waiting_for_a_decision_needs_no_look_until_it_changes_or_its_look_is_due(world):
    world.cycle()
    read = world.tickets.issue()  # as the next pass reads it
    state = world.engine().process(read, world.repository.load(read.key))
    assert state.stage is Stage.AWAITING_APPROVAL and state.quiet_at_updated == read.updated
    assert state.next_check_at == world.clock.now() + timedelta(minutes=15)
    engine = world.engine()
    assert not engine.needs_work(_head(read), state.summary())
    assert engine.needs_work(_head(read, updated=read.updated + timedelta(seconds=1)), state.summary())  # a comment
    assert engine.needs_work(_head(read, labels=()), state.summary())  # untagged: stopped at once
    world.clock.advance(minutes=15)
    assert engine.needs_work(_head(read), state.summary())  # the periodic look


def test_a_waiting_plan_is_looked_at_when_it_expires_even_if_nothing_changed(make_world):
    world = make_world(policy=RemediationPolicy(approval_timeout=timedelta(minutes=10)))
    world.cycle()
    read = world.tickets.issue()
    state = world.engine().process(read, world.repository.load(read.key))
    assert state.next_check_at == state.plan_posted_at + timedelta(minutes=10)  # before the periodic look
    world.clock.advance(minutes=10)
    assert world.engine().needs_work(_head(read), state.summary())
    assert world.engine().process(read, world.repository.load(read.key)).stage is Stage.CANCELLED


def test_a_ticket_waiting_for_an_account_choice_waits_quietly_too(world):
    world.directory.users["u-lidia"] = replace(
        world.directory.users["u-alice"], id="u-lidia", user_principal_name="lidia@contoso.com",
        mail="lidia@contoso.com", proxy_addresses=("SMTP:lidia@contoso.com",), display_name="Lidia")
    world.tickets.affected_account = "alice@contoso.com"
    world.tickets.description = "Actually it is lidia@contoso.com that bounces."
    world.cycle()
    read = world.tickets.issue()
    state = world.engine().process(read, world.repository.load(read.key))
    assert state.stage is Stage.AWAITING_ACCOUNT and not world.engine().needs_work(_head(read), state.summary())


def test_native_jsm_approvals_are_looked_for_every_cycle(make_world):
    world = make_world(policy=RemediationPolicy(jsm_native_approval=True))
    world.cycle()
    read = world.tickets.issue()
    state = world.engine().process(read, world.repository.load(read.key))
    assert state.stage is Stage.AWAITING_APPROVAL
    assert world.engine().needs_work(_head(read), state.summary())  # read from their own resource


def test_a_pass_that_moves_the_ticket_on_is_not_quiet(world):
    world.cycle()
    world.cycle()
    assert world.state().quiet_at_updated is not None
    state = world.approve()
    assert state.stage is Stage.WAITING_FOR_SEND and state.quiet_at_updated is None


def test_the_look_a_waiting_pass_set_is_gone_once_the_ticket_moves_on(world, simulated_crash):
    world.cycle()
    world.cycle()
    assert world.state().next_check_at is not None
    world.tickets.add_comment(world.bob, "/approve")
    world.boundaries.crash_at = world.boundaries.count + 5  # the reset's intent is saved, then a crash
    with contextlib.suppress(simulated_crash):
        world.cycle()
    assert world.boundaries.crashed_at == "before reset_password"
    state = world.state()
    assert state.stage is not Stage.AWAITING_APPROVAL and (state.quiet_at_updated, state.next_check_at) == (None, None)
