"""JSM native approvals end to end: the real poller reads the request's approvals from the emulator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from e2e_world import World
from mailunblock.workflows.state import Stage


def test_jsm_approvals_approve_only_from_agents_and_a_decline_rejects(
    make_world: Callable[..., World],
) -> None:
    world = make_world(jira={"jsm_native_approval": True})
    before = world.effects()
    key = world.new_ticket("adele.vance@contoso.com")
    declined = world.new_ticket("lidia.holloway@contoso.com")
    early = world.jira.open_approval(key, "Answered too early", ["alice"])
    world.jira.answer_approval(key, early, "alice", "approve")  # before the plan exists

    world.cycle()
    assert world.markers(key) == ["ack", "plan", f"ignored-jsm-{early}"]
    plan = world.bot_comment(key, "plan").body
    assert "approves the request's approval in Jira Service Management" in plan
    assert world.state(key).ignored == {f"jsm-{early}": "before_plan"}

    world.advance(timedelta(minutes=5))
    outsider = world.jira.open_approval(key, "Unblock Adele's mailbox", ["mallory"])
    world.jira.answer_approval(key, outsider, "mallory", "approve")
    refusal = world.jira.open_approval(declined, "Unblock Lidia's mailbox", ["bob"])
    world.jira.answer_approval(declined, refusal, "bob", "decline")
    world.cycle()
    assert world.state(key).stage is Stage.AWAITING_APPROVAL
    note = world.bot_comment(key, f"ignored-jsm-{outsider}")
    assert note.internal
    assert note.body.startswith('Approval of the Jira Service Management approval "Unblock Adele\'s mailbox"'
                                " by Mallory Stone ignored: Mallory Stone is not an approver.")
    assert world.effects() == before, "nothing may happen on an outsider's approval"

    rejected = world.state(declined)
    assert rejected.stage is Stage.REJECTED
    assert (rejected.approval_kind, rejected.approved_by) == ("jsm", "Bob Nguyen")
    assert "Unblock Lidia's mailbox" in world.bot_comment(declined, "rejected").body
    assert "mail-blocked" not in world.labels(declined)

    world.advance(timedelta(minutes=5))
    agent = world.jira.open_approval(key, "Unblock Adele's mailbox (agents)", ["alice", "bob"])
    world.jira.answer_approval(key, agent, "alice", "approve")
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.WAITING_FOR_SEND
    assert (state.approval_kind, state.approved_by) == ("jsm", "Alice Martin")
    assert world.effects() - before == world.remediated("contoso", "adele.vance@contoso.com")
    assert world.finish(key).stage is Stage.RESOLVED
    assert world.markers(key).count(f"ignored-jsm-{outsider}") == 1
    assert world.effects() - before == world.remediated("contoso", "adele.vance@contoso.com")
