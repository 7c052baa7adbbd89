"""The trust rules: the right account or none, decisions that count, approvals bound to their plan."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta

from mailunblock.connectors.models import Comment, DirectoryUser
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.state import Stage


def _user(world, name: str) -> DirectoryUser:
    address = f"{name}@contoso.com"
    return replace(world.directory.users["u-alice"], id=f"u-{name}", user_principal_name=address, mail=address,
                   proxy_addresses=(f"SMTP:{address}",), display_name=name.title())


def _nothing_written(world) -> None:
    assert world.directory.resets == [] and world.directory.revokes == [] and world.restricted.unblocks == []


def _with_lidia(world):
    world.directory.users["u-lidia"] = _user(world, "lidia")
    world.restricted.block("lidia@contoso.com")
    return world


# ------------------------------------------------------------------------------------- the account


def test_the_named_account_differs_from_the_reporter(world):
    _with_lidia(world)
    world.tickets.affected_account = "Lidia@Contoso.com "
    state = world.cycle()
    assert state.account_id == "u-lidia" and not state.reporter_is_account
    plan = world.tickets.notes()[-1].split("\n")
    assert plan[2].startswith("*(!) THE AFFECTED ACCOUNT IS NOT THE REPORTER.*")
    assert "le compte lidia@contoso.com" in world.tickets.public()[0]
    world.approve()
    assert [user for user, _ in world.directory.resets] == ["u-lidia"]
    assert world.restricted.unblocks == ["lidia@contoso.com"]


def test_field_and_text_disagree_nothing_until_an_approver_picks(world):
    _with_lidia(world)
    world.tickets.affected_account = "alice@contoso.com"
    world.tickets.description = "Actually it is lidia@contoso.com that bounces."
    state = world.cycle()
    assert state.stage is Stage.AWAITING_ACCOUNT and state.candidates == ("alice@contoso.com", "lidia@contoso.com")
    world.tickets.add_comment(world.alice, "/account alice@contoso.com")  # the reporter: ignored
    world.tickets.add_comment(world.bob, "/account carol@contoso.com")  # not a candidate: ignored
    world.tickets.add_comment(world.bob, "/approve")  # nothing to approve yet
    state = world.cycle()
    assert state.stage is Stage.AWAITING_ACCOUNT
    assert sorted(state.ignored.values()) == ["not_a_candidate", "reporter"]
    _nothing_written(world)
    world.tickets.add_comment(world.bob, "/account LIDIA@contoso.com")
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL and state.account_id == "u-lidia"
    assert state.chosen_by == "Bob Agent" and world.tickets.markers()[-1] == "plan-1"
    assert "*Account picked by Bob Agent* among: alice@contoso.com, lidia@contoso.com." in world.tickets.notes()[-1]
    _nothing_written(world)
    world.clock.advance(seconds=1)
    state = world.approve(world.carol)
    assert [user for user, _ in world.directory.resets] == ["u-lidia"]
    assert world.restricted.unblocks == ["lidia@contoso.com"]


def test_a_compatibility_character_is_refused_never_folded(world):
    world.directory.users["u-mark"] = _user(world, "mark")
    world.restricted.block("mark@contoso.com")
    world.tickets.reporter = replace(world.alice, email="mar\u212a@contoso.com")
    state = world.cycle()
    assert (state.stage, state.refusal) == (Stage.REFUSED, "lookalike")
    assert state.account_id is None and "mailunblock-refused" in world.tickets.labels
    assert "mar\u212a@contoso.com" in world.tickets.notes()[-1]
    _nothing_written(world)


def test_a_look_alike_in_the_text_is_refused(world):
    world.tickets.description = "Please unblock \u0430lice@contoso.com"  # Cyrillic a
    state = world.cycle()
    assert (state.stage, state.refusal) == (Stage.REFUSED, "lookalike")
    _nothing_written(world)


def test_no_suffix_match_on_domains(world):
    for address in ("alice@evil-contoso.com", "alice@contoso.com.evil.example", "alice@sub.contoso.com"):
        other = type(world)()
        other.tickets.reporter = replace(other.alice, email=address)
        state = other.cycle()
        assert (state.stage, state.refusal) == (Stage.REFUSED, "unknown_domain"), address


def test_the_directory_account_must_carry_the_exact_address(world):
    # A directory that matches loosely (say, by display name or alias rules) must not be trusted.
    world.directory.find_users_by_address = lambda address: [world.directory.users["u-alice"]]  # type: ignore[method-assign]
    world.tickets.affected_account = "alice.martin@contoso.com"
    state = world.cycle()
    assert (state.stage, state.refusal) == (Stage.REFUSED, "not_found")
    _nothing_written(world)


def test_an_account_without_a_mailbox_is_refused_with_that_reason(world):
    world.directory.no_mailbox.add("u-alice")
    state = world.cycle()
    assert (state.stage, state.refusal) == (Stage.REFUSED, "no_mailbox")
    assert "has no mailbox in Exchange Online" in world.tickets.notes()[-1]
    _nothing_written(world)


# ------------------------------------------------------------------------------------- decisions


def test_the_bot_never_approves(world):
    world.tickets.approvers.add(world.tickets.myself().ref)  # even when its account sits in the approver group
    world.cycle()
    world.tickets.add_comment(world.tickets.myself(), "/approve")
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL and list(state.ignored.values()) == ["bot"]
    assert "mailunblock's own Jira account" in world.tickets.notes()[-1]
    _nothing_written(world)


def test_a_reject_in_the_window_wins_over_an_earlier_approve(world):
    world.cycle()
    world.tickets.add_comment(world.bob, "/approve")
    world.tickets.add_comment(world.carol, "/reject looks like a real sender")
    state = world.cycle()
    assert state.stage is Stage.REJECTED and state.rejection_reason == "looks like a real sender"
    assert list(state.ignored.values()) == ["overruled"]
    _nothing_written(world)


def test_decisions_are_ordered_by_time_not_list_position(world):
    world.clock.advance(minutes=1)
    world.cycle()
    plan_id = world.tickets.posted[-1].comment.id
    # Listed after the plan, but written before it (e.g. an edited or imported comment).
    early = Comment("99999", world.bob, "/approve", world.clock.now() - timedelta(seconds=30))
    world.tickets.comments.append(early)
    state = world.cycle()
    assert plan_id and state.ignored == {"99999": "before_plan"}
    _nothing_written(world)


def test_a_plan_posted_twice_keeps_approvals_of_the_first_copy(world):
    world.cycle()
    first = world.tickets.posted[-1].comment
    world.clock.advance(minutes=1)
    world.tickets.add_comment(world.bob, "/approve")
    world.clock.advance(minutes=1)
    copy = Comment(str(next(world.tickets.ids)), world.tickets.myself(), first.body, world.clock.now(), True)
    world.tickets.comments.append(copy)
    state = world.repository.load(world.key)
    state.plan_comment_id = copy.id  # as if a crash had made us post (and record) the plan again
    world.repository.save(state)
    assert world.cycle().stage is Stage.WAITING_FOR_SEND


def test_approval_lapses_when_the_named_account_changes_before_the_reset(world):
    _with_lidia(world)
    world.cycle()
    world.tickets.add_comment(world.bob, "/approve")
    world.tickets.affected_account = "lidia@contoso.com"  # edited after the approval, before any action
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL and state.account_id == "u-lidia"
    assert state.plan_generation == 1 and world.tickets.markers()[-1] == "plan-1"
    assert "*(!) This plan replaces an earlier one:*" in world.tickets.notes()[-1]
    _nothing_written(world)
    world.clock.advance(seconds=1)
    world.approve(world.carol)
    assert [user for user, _ in world.directory.resets] == ["u-lidia"]


def test_approval_lapses_when_the_account_facts_change(world):
    world.cycle()
    world.directory.users["u-alice"] = replace(world.directory.users["u-alice"], on_premises_sync_enabled=True)
    state = world.approve()
    assert (state.stage, state.refusal) == (Stage.REFUSED, "synced")
    _nothing_written(world)


def test_a_crash_after_approval_then_a_reject_means_no_reset(world, monkeypatch):
    world.cycle()
    world.tickets.add_comment(world.bob, "/approve")

    def dies(*_args: object) -> None:
        raise ConnectionResetError

    monkeypatch.setattr(world.vault, "store", dies)
    with contextlib.suppress(ConnectionResetError):
        world.cycle()  # approved, then dies before the reset's intent is recorded
    monkeypatch.undo()
    assert world.state().password_intent_at is None and not world.directory.resets
    world.tickets.add_comment(world.carol, "/reject wrong person")
    state = world.cycle()
    assert state.stage is Stage.REJECTED
    _nothing_written(world)


def test_after_the_first_side_effect_a_change_is_reported_and_the_approved_account_finished(world):
    _with_lidia(world)
    world.cycle()
    world.directory.fail["revoke_sessions"] = [ConnectionResetError()]  # type: ignore[list-item]
    with contextlib.suppress(ConnectionResetError):
        world.approve()
    assert world.state().stage is Stage.PASSWORD_RESET
    world.tickets.affected_account = "lidia@contoso.com"
    state = world.cycle()
    assert state.stage is Stage.WAITING_FOR_SEND and state.account_id == "u-alice"
    assert "changed-after-start" in world.tickets.markers()
    assert [user for user, _ in world.directory.resets] == ["u-alice"]
    assert world.directory.revokes == ["u-alice"] and world.restricted.unblocks == ["alice@contoso.com"]


def test_a_plan_nobody_approves_expires(world):
    world.cycle()
    world.clock.advance(hours=167)
    assert world.cycle().stage is Stage.AWAITING_APPROVAL
    world.clock.advance(hours=1)
    state = world.cycle()
    assert (state.stage, state.refusal) == (Stage.CANCELLED, "approval_timeout")
    assert "Nobody approved the plan" in world.tickets.notes()[-1]
    _nothing_written(world)


def test_auto_approval_is_said_in_the_acknowledgement(make_world):
    world = make_world(policy=RemediationPolicy(auto_approve=True))
    world.cycle()
    ack = world.tickets.public()[0]
    assert "automatiquement" in ack and "Un agent" not in ack


def test_a_refused_ticket_keeps_a_visible_label_and_moves_to_the_watched_status(make_world):
    world = make_world(policy=RemediationPolicy(refuse_transition="Escalate"))
    world.tickets.reporter = replace(world.alice, email="alice@gmail.com")
    state = world.cycle()
    assert (state.stage, state.refusal) == (Stage.REFUSED, "unknown_domain")
    assert "mailunblock-refused" in world.tickets.labels and "mail-blocked" not in world.tickets.labels
    assert world.tickets.applied == ["Escalate"]



def test_a_pasted_bounce_does_not_name_the_postmaster(world):
    world.tickets.description = (
        "Delivery has failed.\nFrom: postmaster@contoso.com\n"
        "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com\n550 5.1.8 Access denied")
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL and state.account_upn == "alice@contoso.com"
