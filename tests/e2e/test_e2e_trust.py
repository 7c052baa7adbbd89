"""The trust rules end to end: the right account or none, and only after a valid, still-current approval.

Every test reads the emulators' call log: no account other than the plan's is read for writing (a GET of
the user by object id, done only before a reset or a revocation) or written (password, sessions, unblock),
and nothing is written before the decision that allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from e2e_world import TRIGGER, World, is_internal
from mailunblock.sandbox.core import FaultRule
from mailunblock.workflows.state import Stage

WRITES = ("PATCH", "POST")


def touched(world: World, since: int = 0) -> list[tuple[str, str]]:
    """(what, account) for each Microsoft call that writes an account or reads it for writing."""
    found: list[tuple[str, str]] = []
    for record in world.sandbox.calls.records()[since:]:
        parts = record.path.strip("/").split("/")
        if record.service == "graph" and len(parts) >= 3 and parts[1] == "users":
            user = parts[2]
            if record.method in WRITES and (len(parts) == 3 or parts[3] == "revokeSignInSessions"):
                found.append(("write", user))
            elif record.method == "GET" and len(parts) == 3 and "@" not in user:
                found.append(("read-for-write", user))
        elif record.service == "exchange" and record.cmdlet == "Remove-BlockedSenderAddress":
            found.append(("write", str(record.body["CmdletInput"]["Parameters"]["SenderAddress"]).lower()))
    return found


def mark(world: World) -> int:
    """A position in the call log."""
    return len(world.sandbox.calls.records())


def only(world: World, key: str, since: int) -> None:
    """Everything touched since ``since`` concerns the plan's account (its object id or its addresses)."""
    state = world.state(key)
    allowed = {state.account_id, *state.account_addresses}
    strays = [t for t in touched(world, since) if t[1] not in allowed]
    assert not strays, f"touched outside the plan ({state.account_upn}): {strays}"


@pytest.fixture
def fresh(make_world: Callable[..., World]) -> World:
    return make_world()


def test_a_colleague_named_in_the_field_is_remediated_not_the_reporter(fresh: World) -> None:
    world = fresh
    key = world.new_ticket("megan.bowen@contoso.com", affected="Lidia.Holloway@contoso.com")
    start = mark(world)
    world.cycle()
    assert touched(world, start) == []
    ack = world.bot_comment(key, "ack").body
    assert "the account lidia.holloway@contoso.com" in ack
    plan = world.bot_comment(key, "plan").body.split("\n")
    assert plan[2].startswith("*(!) THE AFFECTED ACCOUNT IS NOT THE REPORTER.*")
    approved = mark(world)
    world.approve(key)
    world.cycle()
    assert world.state(key).account_upn == "lidia.holloway@contoso.com"
    only(world, key, approved)
    assert touched(world, approved)


def test_an_address_named_in_the_description_is_the_account(fresh: World) -> None:
    world = fresh
    key = world.new_ticket("megan.bowen@contoso.com",
                           description="Diego's mailbox diego.siciliani@contoso.com bounces with 5.1.8.")
    world.cycle()
    assert world.state(key).account_upn == "diego.siciliani@contoso.com"
    start = mark(world)
    world.approve(key)
    world.cycle()
    only(world, key, start)
    assert ("write", "diego.siciliani@contoso.com") in touched(world, start)


def test_a_look_alike_reporter_address_is_refused_never_folded(fresh: World) -> None:
    world = fresh
    # KELVIN SIGN: "mar\u212a".lower() == "mark"; the account must not become someone else's.
    world.jira.add_user("mark.kelvin", "Mark Kelvin", "adele.vance\u212a@contoso.com", account_type="customer")
    key = world.new_ticket("mark.kelvin")
    start = mark(world)
    world.cycle()
    state = world.state(key)
    assert (state.stage, state.refusal) == (Stage.REFUSED, "lookalike")
    note = world.bot_comment(key, "refused")
    assert is_internal(note) and "is not a plain address" in note.body
    assert touched(world, start) == []
    graph_paths = [r.path + str(r.query) for r in world.sandbox.calls.records("graph")[0:]]
    assert not any("adele.vance" in p for p in graph_paths), "the look-alike was looked up"
    assert "mailunblock-refused" in world.labels(key) and TRIGGER not in world.labels(key)


def test_disagreeing_accounts_wait_for_an_approver_to_pick_one(fresh: World) -> None:
    world = fresh
    key = world.new_ticket("megan.bowen@contoso.com", affected="adele.vance@contoso.com",
                           description="It is lidia.holloway@contoso.com that cannot send.")
    start = mark(world)
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.AWAITING_ACCOUNT
    assert state.candidates == ("adele.vance@contoso.com", "lidia.holloway@contoso.com", "megan.bowen@contoso.com")
    assert world.markers(key) == ["ack", "choose-account"]
    world.approve(key)  # there is no plan to approve yet
    world.comment(key, "megan.bowen@contoso.com", "/account adele.vance@contoso.com")  # the reporter
    world.cycle()
    assert world.state(key).stage is Stage.AWAITING_ACCOUNT
    assert touched(world, start) == []
    world.comment(key, "bob", "/account lidia.holloway@contoso.com", internal=True)
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.AWAITING_APPROVAL and state.account_upn == "lidia.holloway@contoso.com"
    assert touched(world, start) == []
    world.advance(timedelta(minutes=1))
    approved = mark(world)
    world.approve(key)
    world.cycle()
    only(world, key, approved)
    assert ("write", "lidia.holloway@contoso.com") in touched(world, approved)


def test_an_account_not_on_the_list_gets_no_reset_unless_asked(fresh: World) -> None:
    world = fresh
    key = world.new_ticket("megan.bowen@contoso.com")
    start = mark(world)
    world.cycle()
    assert world.markers(key) == ["ack", "not-listed", "plan"]
    assert "*Nothing will be changed:*" in world.bot_comment(key, "plan").body
    world.cycle()
    assert touched(world, start) == []
    other = world.new_ticket("sophie.bernard@fabrikam.fr")
    world.cycle()
    world.comment(other, "alice", "/reset the sign-in log looks odd", internal=True)
    asked = mark(world)
    world.cycle()
    state = world.state(other)
    assert (state.stage, state.approval_kind, state.explicit_reset) == (Stage.NOT_LISTED, "reset", True)
    only(world, other, asked)
    writes = [t for t in touched(world, asked) if t[0] == "write"]
    assert len(writes) == 2 and all(user == state.account_id for _, user in writes)  # reset + revoke
    world.approve(key)  # closes the first one without changes
    world.cycle()
    assert world.state(key).stage is Stage.NOT_LISTED
    assert [t for t in touched(world, start) if t[1] == world.state(key).account_id] == []


def test_the_bot_account_never_approves(fresh: World) -> None:
    world = fresh
    key = world.new_ticket("adele.vance@contoso.com")
    world.cycle()
    start = mark(world)
    world.comment(key, "mailunblock", "/approve", internal=True)
    world.cycle()
    assert world.state(key).stage is Stage.AWAITING_APPROVAL
    assert list(world.state(key).ignored.values()) == ["bot"]
    assert touched(world, start) == []


def test_a_rejection_in_the_window_wins_over_an_approval(fresh: World) -> None:
    world = fresh
    key = world.new_ticket("adele.vance@contoso.com")
    world.cycle()
    start = mark(world)
    world.approve(key, "alice")
    world.comment(key, "bob", "/reject this is a legitimate newsletter", internal=True)
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.REJECTED and list(state.ignored.values()) == ["overruled"]
    assert touched(world, start) == []


def test_an_edit_after_the_approval_lapses_it(fresh: World) -> None:
    world = fresh
    key = world.new_ticket("megan.bowen@contoso.com", affected="adele.vance@contoso.com")
    world.cycle()
    world.approve(key)
    world.jira.update_fields(key, {"customfield_10050": "lidia.holloway@contoso.com"}, "megan.bowen@contoso.com")
    start = mark(world)
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.AWAITING_APPROVAL and state.account_upn == "lidia.holloway@contoso.com"
    assert "plan-1" in world.markers(key)
    assert touched(world, start) == [], "nothing may be done to either account"
    world.advance(timedelta(minutes=1))
    approved = mark(world)
    world.approve(key, "bob")
    world.cycle()
    only(world, key, approved)
    assert ("write", "lidia.holloway@contoso.com") in touched(world, approved)


def test_a_plan_nobody_approves_expires(fresh: World) -> None:
    world = fresh
    key = world.new_ticket("adele.vance@contoso.com")
    world.cycle()
    start = mark(world)
    world.advance(timedelta(hours=168))
    world.cycle()
    state = world.state(key)
    assert (state.stage, state.refusal) == (Stage.CANCELLED, "approval_timeout")
    assert touched(world, start) == []


def test_a_domain_is_matched_exactly_never_by_suffix(fresh: World) -> None:
    world = fresh
    start = mark(world)
    keys = []
    for address in ("adele.vance@contoso.com.evil.example", "adele.vance@evil-contoso.com"):
        world.jira.add_user(address.replace("@", ".at."), "Adele Vance", address, account_type="customer")
        keys.append(world.new_ticket(address.replace("@", ".at.")))
    world.cycle()
    for key in keys:
        assert (world.state(key).stage, world.state(key).refusal) == (Stage.REFUSED, "unknown_domain")
    assert touched(world, start) == []
    assert not [r for r in world.sandbox.calls.records("graph")[start:] if "adele" in r.path + str(r.query)]


def test_an_account_without_a_mailbox_is_refused_with_that_reason(fresh: World) -> None:
    world = fresh
    tenant = world.sandbox.microsoft.tenant("contoso")
    assert tenant is not None
    user = tenant.user("lidia.holloway@contoso.com")
    assert user is not None
    user.spec = replace(user.spec, has_mailbox=False)  # e.g. no Exchange Online licence
    key = world.new_ticket("megan.bowen@contoso.com", affected="lidia.holloway@contoso.com")
    start = mark(world)
    world.cycle()
    state = world.state(key)
    assert (state.stage, state.refusal) == (Stage.REFUSED, "no_mailbox")
    assert "has no mailbox in Exchange Online" in world.bot_comment(key, "refused").body
    assert touched(world, start) == []


def test_a_change_after_the_first_action_is_reported_and_the_approved_account_finished(fresh: World) -> None:
    world = fresh
    key = world.new_ticket("megan.bowen@contoso.com", affected="adele.vance@contoso.com")
    world.cycle()
    world.sandbox.faults.add(FaultRule("graph", status=503, method="POST", path_contains="revokeSignInSessions"))
    world.approve(key)
    start = mark(world)
    world.cycle()  # the password is reset, the revocation fails once
    assert world.state(key).password_reset_at is not None
    world.jira.update_fields(key, {"customfield_10050": "lidia.holloway@contoso.com"}, "megan.bowen@contoso.com")
    world.advance(timedelta(minutes=30))
    world.cycle()
    world.run_until(lambda: world.state(key).stage is Stage.WAITING_FOR_SEND or world.state(key).is_terminal,
                    limit=timedelta(hours=2))
    assert world.state(key).account_upn == "adele.vance@contoso.com"
    note = world.bot_comment(key, "changed-after-start")
    assert is_internal(note) and "finishes the approved remediation of adele.vance@contoso.com only" in note.body
    only(world, key, start)


def test_auto_approval_is_said_as_such(make_world: Callable[..., World]) -> None:
    world = make_world(policy={"auto_approve": True})
    key = world.new_ticket("adele.vance@contoso.com")
    world.cycle()
    ack = world.bot_comment(key, "ack").body
    assert "handled automatically" in ack and "An agent is reviewing" not in ack


def test_a_note_says_the_tickets_are_linked_only_when_they_are(fresh: World) -> None:
    world = fresh
    first = world.new_ticket("megan.bowen@contoso.com", affected="diego.siciliani@contoso.com")
    world.cycle()
    world.sandbox.faults.add(FaultRule("jira", status=403, method="POST", path_contains="issueLink"))
    second = world.new_ticket("diego.siciliani@contoso.com")
    world.cycle()
    assert (world.state(second).stage, world.state(second).refusal) == (Stage.REFUSED, "duplicate")
    note = world.bot_comment(second, "refused").body
    assert f"already being remediated in {first}" in note and "linked" not in note
    assert world.jira.links_of(world.jira.issue(second)) == []
