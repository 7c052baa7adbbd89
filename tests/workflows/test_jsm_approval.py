"""JSM native approvals (``jsm_native_approval``): same rules as comment approvals, after the plan."""

from __future__ import annotations

from mailunblock.connectors.models import Approval, Approver
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.state import Stage

NATIVE = RemediationPolicy(jsm_native_approval=True)


def _nothing_done(world):
    assert world.directory.resets == [] and world.restricted.unblocks == []


def test_plan_mentions_the_jsm_approval_only_when_enabled(make_world):
    on, off = make_world(policy=NATIVE), make_world()
    on.cycle()
    off.cycle()
    assert "approves the request's approval in Jira Service Management" in on.tickets.notes()[0]
    assert "answered after this note" in on.tickets.notes()[0]
    assert "Jira Service Management" not in off.tickets.notes()[0]
    french = make_world(policy=RemediationPolicy(jsm_native_approval=True, locale="fr"))
    french.cycle()
    assert "approbation de Jira Service Management" in french.tickets.notes()[0]


def test_approved_by_an_approver_after_the_plan_starts_the_remediation(make_world):
    world = make_world(policy=NATIVE)
    assert world.cycle().stage is Stage.AWAITING_APPROVAL
    world.clock.advance(minutes=10)
    world.tickets.decide_approval("Approve the unblock", "approved", world.bob)
    state = world.cycle()
    assert state.stage is Stage.WAITING_FOR_SEND
    assert (state.approval_kind, state.approved_by) == ("jsm", "Bob Agent")
    assert len(world.directory.resets) == 1 and world.restricted.unblocks == ["alice@contoso.com"]


def test_approval_answered_before_the_plan_is_ignored_once(make_world):
    world = make_world(policy=NATIVE)
    world.tickets.decide_approval("Early", "approved", world.bob)  # answered at START
    world.clock.advance(minutes=1)
    world.cycle()  # the plan is posted after the answer
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL
    assert state.ignored == {"jsm-1": "before_plan"}
    assert world.tickets.notes()[-1].startswith(
        'Approval of the Jira Service Management approval "Early" by Bob Agent ignored: '
        "it came before the remediation plan")
    world.cycle()
    world.cycle()
    assert world.tickets.markers().count("ignored-jsm-1") == 1
    _nothing_done(world)
    assert world.approve().stage is Stage.WAITING_FOR_SEND  # a comment still approves


def test_non_approver_reporter_and_affected_user_cannot_approve_natively(make_world):
    world = make_world(policy=NATIVE)
    world.tickets.reporter = world.carol  # Carol reports for Alice; Carol is an approver
    world.tickets.affected_account = "alice@contoso.com"
    world.tickets.approvers.add(world.alice.ref)
    world.cycle()
    world.clock.advance(minutes=5)
    world.tickets.decide_approval("By Eve", "approved", world.eve)
    world.tickets.decide_approval("By the reporter", "approved", world.carol)
    world.tickets.decide_approval("By the user", "approved", world.alice)
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL
    assert state.ignored == {"jsm-1": "not_approver", "jsm-2": "reporter", "jsm-3": "affected_account"}
    notes = world.tickets.notes()[-3:]
    assert "Eve Outsider is not an approver" in notes[0]
    assert "the reporter cannot approve their own request" in notes[1]
    assert "the affected user cannot approve their own remediation" in notes[2]
    _nothing_done(world)


def test_every_approver_who_answered_must_be_allowed(make_world):
    world = make_world(policy=NATIVE)
    world.cycle()
    world.clock.advance(minutes=5)
    world.tickets.decide_approval("Two of two", "approved", world.bob, world.eve)
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL and state.ignored == {"jsm-1": "not_approver"}
    assert '"Two of two" by Eve Outsider ignored: Eve Outsider is not an approver.' in world.tickets.notes()[-1]
    world.tickets.decide_approval("Both agents", "approved", world.bob, world.carol)
    state = world.cycle()
    assert state.stage is Stage.WAITING_FOR_SEND
    assert state.approved_by == "Bob Agent, Carol Agent"


def test_declined_by_an_approver_rejects_with_the_approval_name(make_world):
    world = make_world(policy=NATIVE)
    world.cycle()
    world.clock.advance(minutes=5)
    world.tickets.decide_approval("Unblock adele's mailbox", "declined", world.bob, others=[world.carol])
    state = world.cycle()
    assert state.stage is Stage.REJECTED
    assert (state.approval_kind, state.rejection_reason) == ("jsm", "Unblock adele's mailbox")
    assert "Unblock adele's mailbox" in world.tickets.notes()[-1]
    assert "mail-blocked" not in world.tickets.labels
    _nothing_done(world)


def test_decline_by_a_non_approver_is_ignored(make_world):
    world = make_world(policy=NATIVE)
    world.cycle()
    world.clock.advance(minutes=5)
    world.tickets.decide_approval("Nope", "declined", world.eve)
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL and state.ignored == {"jsm-1": "not_approver"}
    assert world.tickets.notes()[-1].startswith(
        'Decline of the Jira Service Management approval "Nope" by Eve Outsider ignored')


def test_pending_approvals_and_policy_off_change_nothing(make_world):
    world = make_world(policy=NATIVE)
    world.cycle()
    world.clock.advance(minutes=5)
    pending = Approval("7", "Waiting", "pending", (Approver(world.bob, "pending"),),
                           created=world.clock.now(), completed=None)
    world.tickets.native.append(pending)
    assert world.cycle().stage is Stage.AWAITING_APPROVAL
    assert world.tickets.approval_reads == 2 and world.state().ignored == {}

    off = make_world()
    off.cycle()
    off.clock.advance(minutes=5)
    off.tickets.decide_approval("Approved but not enabled", "approved", off.bob)
    assert off.cycle().stage is Stage.AWAITING_APPROVAL
    assert off.tickets.approval_reads == 0 and off.state().ignored == {}


def test_a_ticket_that_is_no_service_desk_request_still_takes_comment_approvals(make_world):
    world = make_world(policy=NATIVE)
    world.tickets.service_desk = False
    assert world.cycle().stage is Stage.AWAITING_APPROVAL
    assert world.approve().stage is Stage.WAITING_FOR_SEND
