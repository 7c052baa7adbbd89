"""Every refusal, approval and escalation rule, end to end: the real poller against the sandbox.

Each test uses its own accounts and leaves its tickets finished, so they share one sandbox. Every test
checks the Microsoft side effects as a whole (``world.effects()``): an action on any other account fails.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from e2e_world import TRIGGER, World, is_internal
from mailunblock.sandbox.core import FaultRule
from mailunblock.workflows.state import Stage

ESCALATED = "mailunblock-escalated"


def awaiting_approval(world: World, reporter: str, affected: str | None = None) -> str:
    """A new ticket, triaged: acknowledgement and plan posted."""
    key = world.new_ticket(reporter, affected=affected)
    world.cycle()
    assert world.state(key).stage is Stage.AWAITING_APPROVAL, world.state(key)
    return key


def reject(world: World, key: str) -> None:
    """End a ticket left waiting for approval (cleanup for the next tests)."""
    world.comment(key, "alice", "/reject test done", internal=True)
    world.cycle()
    assert world.state(key).stage is Stage.REJECTED


def assert_refused(world: World, key: str, reason: str, text: str) -> None:
    """Refused with ``reason``: acknowledgement, one internal note saying ``text``, label removed."""
    state = world.state(key)
    assert (state.stage, state.refusal) == (Stage.REFUSED, reason), state
    assert world.markers(key) == ["ack", "refused"]
    note = world.bot_comment(key, "refused")
    assert is_internal(note) and not is_internal(world.bot_comment(key, "ack"))
    assert text in note.body, note.body
    assert "Nothing was changed on the account." in note.body
    assert TRIGGER not in world.labels(key) and "mailunblock-refused" in world.labels(key)


def calls_of(world: World, cmdlet: str) -> list[str]:
    """Addresses passed to an Exchange cmdlet, in call order."""
    return [
        c.body["CmdletInput"]["Parameters"].get("SenderAddress", "")
        for c in world.sandbox.calls.records("exchange") if c.cmdlet == cmdlet
    ]


# ---------------------------------------------------------------------------------------------- triage


def test_an_address_no_tenant_owns_is_refused(world: World) -> None:
    before = world.effects()
    key = world.new_ticket("someone@gmail.com")
    world.cycle()
    assert_refused(world, key, "unknown_domain", "someone@gmail.com does not belong to any tenant")
    assert world.effects() == before


def test_several_candidate_accounts_wait_for_an_approver_to_pick_one(world: World) -> None:
    # The reporter hides their email (Cloud privacy setting): the description names two accounts.
    world.jira.add_user("anonymous", "Anonymous Customer", "anonymous@contoso.com",
                        account_type="customer", email_visible=False)
    before = world.effects()
    key = world.new_ticket(
        "anonymous@contoso.com",
        description="Neither diego.siciliani@contoso.com nor lidia.holloway@contoso.com can send.",
    )
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.AWAITING_ACCOUNT
    assert world.markers(key) == ["ack", "choose-account"]
    note = world.bot_comment(key, "choose-account")
    assert is_internal(note)
    assert "* diego.siciliani@contoso.com\n* lidia.holloway@contoso.com" in note.body
    reject(world, key)
    assert world.effects() == before


def test_an_account_that_does_not_exist_is_refused(world: World) -> None:
    before = world.effects()
    key = world.new_ticket("megan.bowen@contoso.com", affected="no.such.user@contoso.com")
    world.cycle()
    assert_refused(world, key, "not_found", "No account with the address no.such.user@contoso.com exists")
    assert world.effects() == before


def test_a_guest_by_their_home_address_is_not_handled(world: World) -> None:
    before = world.effects()
    key = world.new_ticket("megan.bowen@contoso.com", affected="pat.partner@example.org")
    world.cycle()
    assert_refused(world, key, "unknown_domain", "pat.partner@example.org does not belong to any tenant")
    assert world.effects() == before


def test_a_disabled_account_is_refused(world: World) -> None:
    before = world.effects()
    key = world.new_ticket("megan.bowen@contoso.com", affected="erin.old@contoso.com")
    world.cycle()
    assert_refused(world, key, "disabled", "erin.old@contoso.com is disabled")
    assert world.effects() == before
    assert world.sandbox.microsoft.is_listed("contoso", "erin.old@contoso.com")


def test_an_account_synchronised_from_on_premises_is_refused(world: World) -> None:
    before = world.effects()
    key = world.new_ticket("megan.bowen@contoso.com", affected="frank.synced@contoso.com")
    world.cycle()
    assert_refused(world, key, "synced", "frank.synced@contoso.com is synchronised from on-premises")
    assert world.effects() == before


def test_a_privileged_account_is_refused(world: World) -> None:
    before = world.effects()
    key = world.new_ticket("ben.walters@contoso.com")
    world.cycle()
    assert_refused(world, key, "privileged", "ben.walters@contoso.com (Global Administrator) holds a privileged")
    assert world.effects() == before
    assert world.sandbox.microsoft.is_listed("contoso", "ben.walters@contoso.com")


def test_a_second_ticket_for_an_account_in_remediation_is_linked_not_remediated(world: World) -> None:
    before = world.effects()
    first = awaiting_approval(world, "megan.bowen@contoso.com", affected="diego.siciliani@contoso.com")
    world.approve(first)
    world.cycle()
    assert world.state(first).stage is Stage.WAITING_FOR_SEND

    second = world.new_ticket("megan.bowen@contoso.com", summary="Diego still cannot send",
                              affected="diego.siciliani@contoso.com")
    world.cycle()
    assert_refused(world, second, "duplicate",
                   f"diego.siciliani@contoso.com is already being remediated in {first}")
    links = world.jira.links_of(world.jira.find_issue(second))
    linked = {world.jira.find_issue(i).key for link in links for i in (link.inward_id, link.outward_id)}
    assert linked == {first, second}

    assert world.finish(first).stage is Stage.RESOLVED
    assert world.effects() - before == world.remediated("contoso", "diego.siciliani@contoso.com")


def test_an_account_reported_by_someone_else_is_flagged_and_worded_for_them(world: World) -> None:
    before = world.effects()
    key = awaiting_approval(world, "megan.bowen@contoso.com", affected="lidia.holloway@contoso.com")
    plan = world.bot_comment(key, "plan").body
    assert "*(!) THE AFFECTED ACCOUNT IS NOT THE REPORTER.*" in plan
    assert "raised by Megan Bowen (megan.bowen@contoso.com)" in plan
    assert "*lidia.holloway@contoso.com*" in plan

    world.approve(key)
    world.cycle()
    eta = world.bot_comment(key, "eta").body
    assert "The account lidia.holloway@contoso.com has been secured" in eta
    assert "Your account" not in eta
    final = world.finish(key)
    assert final.stage is Stage.RESOLVED
    resolved = world.bot_comment(key, "resolved").body
    assert "your account" not in resolved.lower(), resolved
    assert "lidia.holloway@contoso.com" in resolved, resolved
    assert world.effects() - before == world.remediated("contoso", "lidia.holloway@contoso.com")


def test_a_guest_account_is_refused(make_world: Callable[..., World]) -> None:
    world = make_world(extra_domains={"contoso": ["contoso.onmicrosoft.com"]})
    guest = "pat.partner_example.org#EXT#@contoso.onmicrosoft.com"
    before = world.effects()
    key = world.new_ticket("megan.bowen@contoso.com", affected=guest)
    world.cycle()
    assert_refused(world, key, "guest", f"{guest} is a guest account")
    assert world.effects() == before


# ---------------------------------------------------------------------------------------------- approval


def test_an_approval_by_someone_who_is_not_an_approver_is_ignored(world: World) -> None:
    before = world.effects()
    key = awaiting_approval(world, "adele.vance@contoso.com")
    world.comment(key, "mallory", "/approve")
    world.cycle()
    assert world.state(key).stage is Stage.AWAITING_APPROVAL
    note = world.bot_comments(key)[-1]
    assert is_internal(note)
    assert note.body == "Approval by Mallory Stone ignored: Mallory Stone is not an approver."
    world.cycle()
    assert len(world.bot_comments(key)) == 3, "an ignored approval is noted once"
    reject(world, key)
    assert world.effects() == before


def test_the_reporter_cannot_approve(world: World) -> None:
    before = world.effects()
    key = awaiting_approval(world, "adele.vance@contoso.com")
    world.comment(key, "adele.vance@contoso.com", "/approve")
    world.cycle()
    assert world.state(key).stage is Stage.AWAITING_APPROVAL
    assert world.bot_comments(key)[-1].body == (
        "Approval by Adele Vance ignored: the reporter cannot approve their own request.")
    reject(world, key)
    assert world.effects() == before


def test_the_affected_user_cannot_approve(world: World) -> None:
    before = world.effects()
    key = awaiting_approval(world, "megan.bowen@contoso.com", affected="adele.vance@contoso.com")
    world.comment(key, "adele.vance@contoso.com", "/approve")
    world.cycle()
    assert world.state(key).stage is Stage.AWAITING_APPROVAL
    assert world.bot_comments(key)[-1].body == (
        "Approval by Adele Vance ignored: the affected user cannot approve their own remediation.")
    reject(world, key)
    assert world.effects() == before


def test_an_approval_before_the_plan_is_ignored(world: World) -> None:
    before = world.effects()
    key = world.new_ticket("adele.vance@contoso.com")
    world.approve(key)
    world.cycle()
    assert world.state(key).stage is Stage.AWAITING_APPROVAL
    assert world.markers(key)[:2] == ["ack", "plan"]
    assert world.bot_comments(key)[-1].body == (
        "Approval by Alice Martin ignored: it came before the remediation plan; approve again below the plan.")
    reject(world, key)
    assert world.effects() == before


def test_an_approval_after_the_label_was_removed_does_nothing(world: World) -> None:
    before = world.effects()
    key = awaiting_approval(world, "adele.vance@contoso.com")
    world.jira.set_labels(key, [], actor="bob")
    world.approve(key)
    world.cycle()
    state = world.state(key)
    assert (state.stage, state.refusal) == (Stage.CANCELLED, "untagged")
    note = world.bot_comment(key, "cancelled")
    assert is_internal(note)
    assert 'The label "mail-blocked" was removed before the remediation finished' in note.body
    assert "* (x) Password not reset." in note.body.splitlines()
    assert "* (x) The Restricted users list was not checked." in note.body.splitlines()
    assert world.effects() == before


def test_a_rejection_with_a_reason_stops_everything(world: World) -> None:
    before = world.effects()
    key = awaiting_approval(world, "adele.vance@contoso.com")
    world.comment(key, "alice", "/reject the user is travelling, call her first", internal=True)
    world.cycle()
    assert world.state(key).stage is Stage.REJECTED
    note = world.bot_comment(key, "rejected")
    assert is_internal(note)
    assert 'Alice Martin rejected the remediation: "the user is travelling, call her first"' in note.body
    assert "Nothing was changed on the account" in note.body
    assert TRIGGER not in world.labels(key)
    world.approve(key, "bob")
    world.advance(timedelta(hours=1))
    world.cycle()
    assert world.state(key).stage is Stage.REJECTED
    assert world.effects() == before


# ---------------------------------------------------------------------------------------------- outcomes


def test_an_account_not_on_the_list_is_not_reported_as_unblocked(world: World) -> None:
    before = world.effects()
    key = awaiting_approval(world, "megan.bowen@contoso.com")
    assert world.markers(key) == ["ack", "not-listed", "plan"]
    public = world.bot_comment(key, "not-listed")
    assert not is_internal(public)
    assert "is *not* on the list of accounts blocked for sending spam" in public.body
    assert "5.1.90 or 5.1.92" in public.body and "within 24 hours" in public.body
    assert "password was reset" not in public.body
    plan = world.bot_comment(key, "plan")
    assert is_internal(plan) and "*Nothing will be changed:*" in plan.body
    world.approve(key)
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.NOT_LISTED
    assert "megan.bowen@contoso.com" not in calls_of(world, "Remove-BlockedSenderAddress")
    assert TRIGGER not in world.labels(key) and "mail-unblocked" not in world.labels(key)
    assert world.status_category(key) != "done"
    assert world.effects() == before, "no reset, no revocation, no unblock by default"


def test_an_alias_on_the_list_is_the_address_unblocked(world: World) -> None:
    before = world.effects()
    key = awaiting_approval(world, "megan.bowen@contoso.com", affected="henry.ng@contoso.com")
    world.approve(key)
    world.cycle()
    assert world.state(key).listed_addresses == ("sales@contoso.com",)
    assert world.finish(key).stage is Stage.RESOLVED
    assert world.effects() - before == world.remediated("contoso", "henry.ng@contoso.com", "sales@contoso.com")


def test_the_unblock_limit_escalates_to_microsoft_support(world: World) -> None:
    address = "grace.hill@contoso.com"
    tenant = world.sandbox.microsoft.tenants["contoso"]
    with world.sandbox.microsoft.lock:  # three unblocks today already: the emulator's daily limit
        tenant.unblocks[address] = [world.now()] * world.sandbox.scenario.exchange.unblock_limit_per_day
    before = world.effects()
    key = awaiting_approval(world, address)
    world.approve(key)
    world.cycle()
    state = world.state(key)
    assert (state.stage, state.refusal) == (Stage.ESCALATED, "unblock_limit")
    note = world.bot_comment(key, "escalated")
    assert is_internal(note)
    assert "*Open a case with Microsoft Support*" in note.body and "do not retry the unblock" in note.body
    assert 'forwardTo billing-desk@attacker.example' in note.body  # the suspicious inbox rule
    assert ESCALATED in world.labels(key) and TRIGGER not in world.labels(key)
    assert calls_of(world, "Remove-BlockedSenderAddress").count(address) == 1
    world.advance(timedelta(days=1))
    world.cycle()
    assert calls_of(world, "Remove-BlockedSenderAddress").count(address) == 1, "never retried"
    assert world.effects() - before == Counter({("reset", "contoso", address): 1,
                                                ("revoke", "contoso", address): 1})


def test_an_account_still_listed_after_24_hours_is_escalated(world: World) -> None:
    address = "marc.leroy@fabrikam.fr"
    before = world.effects()
    key = awaiting_approval(world, address)
    world.approve(key)
    world.cycle()
    unblocked = world.state(key).unblocked_at
    assert unblocked is not None
    with world.sandbox.microsoft.lock:  # Exchange accepted the removal but keeps listing the account
        world.sandbox.microsoft.tenants["fabrikam"].blocked[address].removed_at = None
    state = world.finish(key, step=timedelta(hours=1))
    assert (state.stage, state.refusal) == (Stage.ESCALATED, "still_listed")
    assert state.history[-1].at == unblocked + timedelta(hours=24)
    note = world.bot_comment(key, "escalated")
    assert is_internal(note) and "still on the Restricted users list 24 h after the unblock" in note.body
    assert ESCALATED in world.labels(key) and TRIGGER not in world.labels(key)
    assert "resolved" not in world.markers(key)
    assert world.effects() - before == world.remediated("fabrikam", address)


def test_an_account_blocked_again_on_a_later_day_is_escalated_not_unblocked_twice(world: World) -> None:
    address = "chloe.dupont@fabrikam.fr"
    now = world.now()
    evening = now.replace(hour=22, minute=30, second=0, microsecond=0)
    world.advance(evening - now if evening > now else evening + timedelta(days=1) - now)
    before = world.effects()
    key = awaiting_approval(world, address)
    world.approve(key)
    world.cycle()
    assert world.state(key).stage is Stage.WAITING_FOR_SEND
    world.advance(timedelta(hours=2))  # 00:30 UTC: a new day for Exchange's "not again today"
    world.sandbox.microsoft.block("fabrikam", address)
    state = world.finish(key)
    assert (state.stage, state.refusal) == (Stage.ESCALATED, "blocked_again")
    note = world.bot_comment(key, "escalated")
    assert "blocked again after the unblock" in note.body and "will not unblock it again" in note.body
    assert world.sandbox.microsoft.is_listed("fabrikam", address)
    assert world.effects() - before == world.remediated("fabrikam", address)


def test_a_ticket_closed_midway_stops_with_a_note_of_what_was_done(world: World) -> None:
    address = "adele.vance@contoso.com"
    before = world.effects()
    key = awaiting_approval(world, address)
    # An outage (every try of the cycle fails), not a missing permission: that would stop the ticket at once.
    world.sandbox.faults.add(FaultRule("exchange", status=503, count=5, method="POST", path_contains="InvokeCommand"))
    world.approve(key)
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.MAILBOX_CHECKED and state.retry_at is not None
    world.jira.transition(key, "Resolve", "bob")
    world.advance(timedelta(minutes=30))
    world.cycle()
    state = world.state(key)
    assert (state.stage, state.refusal) == (Stage.CANCELLED, "closed")
    note = world.bot_comment(key, "cancelled")
    assert is_internal(note)
    lines = note.body.splitlines()
    assert "The ticket was closed before the remediation finished" in note.body
    assert any(line.startswith("* (/) Password reset for adele.vance@contoso.com") for line in lines)
    assert "(/) Sign-in sessions revoked." in note.body  # own line: see test_happy_path
    assert "* (x) The Restricted users list was not checked." in lines
    assert world.sandbox.microsoft.is_listed("contoso", address)
    assert world.effects() - before == Counter({("reset", "contoso", address): 1,
                                                ("revoke", "contoso", address): 1})


# ---------------------------------------------------------------------------------------------- throttling


def test_a_throttled_graph_read_is_retried_without_repeating_writes(world: World) -> None:
    address = "sophie.bernard@fabrikam.fr"  # not listed: reset, revoke, inbox rules, list check
    before = world.effects()
    key = awaiting_approval(world, address)
    world.sandbox.faults.add(FaultRule("graph", status=429, retry_after=1, method="GET",
                                       path_contains="messageRules"))
    world.comment(key, "alice", "/reset", internal=True)  # not listed: a reset only when asked for
    world.cycle()
    rules_calls = [c.status for c in world.sandbox.calls.records("graph") if c.path.endswith("messageRules")]
    assert rules_calls[-2:] == [429, 200]
    state = world.state(key)
    assert state.stage is Stage.NOT_LISTED and state.inbox_rules_checked
    assert Counter(world.markers(key)) == Counter(["ack", "not-listed", "plan", "summary", "not-listed-reset"])
    assert world.effects() - before == Counter({("reset", "fabrikam", address): 1,
                                                ("revoke", "fabrikam", address): 1})


def test_throttling_beyond_the_http_retries_waits_for_retry_after(make_world: Callable[..., World]) -> None:
    world = make_world(http={"max_retries": 0})
    address = "adele.vance@contoso.com"
    key = awaiting_approval(world, address)
    world.sandbox.faults.add(FaultRule("graph", status=429, retry_after=120, method="GET",
                                       path_contains="messageRules"))
    world.approve(key)
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.SESSIONS_REVOKED
    assert state.retry_at is not None
    # Retry-After, plus a little spread so throttled tickets do not all come back at the same second.
    assert world.now() + timedelta(seconds=120) <= state.retry_at <= world.now() + timedelta(seconds=132)
    # No note: the service asked everyone to wait (a burst throttles a whole tenant), not this ticket.
    assert not [m for m in world.markers(key) if m.startswith("failure-")]

    served = len(world.sandbox.calls.records("graph"))
    world.advance(timedelta(seconds=60))
    world.cycle()
    assert len(world.sandbox.calls.records("graph")) == served, "Retry-After not honoured"
    world.advance(state.retry_at - world.now())
    world.cycle()
    assert world.state(key).stage is Stage.WAITING_FOR_SEND
    assert world.finish(key).stage is Stage.RESOLVED
    assert Counter(world.markers(key))["eta"] == 1
    assert world.effects() == world.remediated("contoso", address)


def test_a_new_ticket_for_an_account_unblocked_days_ago_goes_to_a_human(make_world: Callable[..., World]) -> None:
    world = make_world()
    address = "diego.siciliani@contoso.com"
    before = world.effects()
    first = awaiting_approval(world, address)
    world.approve(first)
    assert world.finish(first).stage is Stage.RESOLVED
    world.advance(timedelta(days=2))
    world.sandbox.microsoft.block("contoso", address)

    second = world.new_ticket(address, summary="Blocked again!")
    world.cycle()

    state = world.state(second)
    assert (state.stage, state.refusal) == (Stage.REFUSED, "blocked_again")
    note = world.bot_comments(second)[-1]
    assert is_internal(note) and f"unblocked by mailunblock in {first} (linked) and is blocked again" in note.body
    first_id = world.jira.issue(first).id
    links = world.jira.links_of(world.jira.issue(second))
    assert any(first_id in (link.inward_id, link.outward_id) for link in links)
    assert world.effects() - before == world.remediated("contoso", address)  # no second reset or unblock
    assert world.sandbox.microsoft.is_listed("contoso", address)
