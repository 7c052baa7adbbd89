"""Crash at every step boundary in turn, resume with a fresh engine: each effect happens once."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from mailunblock.workflows.password import Draws, generate_password
from mailunblock.workflows.state import Stage

MAX_CYCLES = 120


def _drive(world, crash):
    """Run poller cycles (a fresh engine each) until the ticket is finished; swallow the crashes."""
    approval_posted = False
    for _ in range(MAX_CYCLES):
        try:
            state = world.cycle()
        except crash:
            state = world.repository.load(world.key)
        if state is not None and state.is_terminal:
            return state
        plan_exists = "plan" in world.tickets.markers()
        if plan_exists and not approval_posted:
            world.tickets.add_comment(world.bob, "/approve")
            approval_posted = True
        world.clock.advance(minutes=30)
    raise AssertionError("the ticket never finished")


def _boundaries_of_a_clean_run(make_world, simulated_crash):
    world = make_world()
    assert _drive(world, simulated_crash).stage is Stage.RESOLVED
    return world.boundaries.count


def test_a_crash_at_any_boundary_never_repeats_an_effect(make_world, simulated_crash, caplog):
    caplog.set_level(logging.DEBUG)
    total = _boundaries_of_a_clean_run(make_world, simulated_crash)
    assert total > 50  # saves, comments, reset, revoke, unblock, labels, transition

    for crash_at in range(1, total + 1):
        world = make_world()
        world.boundaries.crash_at = crash_at
        final = _drive(world, simulated_crash)
        where = f"crash {crash_at} ({world.boundaries.crashed_at})"
        assert world.boundaries.crashed_at is not None, where

        assert len(world.directory.resets) == 1, where
        # Even a crash between recording the unblock and calling Exchange ends with exactly one
        # unblock: after the grace period the list is read again and the unblock sent only if needed.
        assert len(world.restricted.unblocks) == 1, where
        assert len(world.directory.revokes) == 1, where
        markers = Counter(world.tickets.markers())
        assert all(n == 1 for n in markers.values()), (where, markers)
        assert final.stage is Stage.RESOLVED, where
        assert list(markers) == ["ack", "plan", "summary", "eta", "resolved"], where
        assert world.tickets.labels == ["mail-unblocked"], where
        assert world.tickets.applied == ["Resolve"], where

        password = world.directory.resets[0][1]
        assert world.vault.passwords[world.key] == password, where
        _assert_secret_nowhere(world, password, caplog)
        caplog.clear()


def _assert_secret_nowhere(world, password, caplog):
    for posted in world.tickets.posted:
        assert password not in posted.comment.body
    assert password not in json.dumps(world.repository.saved)
    for record in caplog.records:
        assert password not in record.getMessage()
        assert password not in str(record.args)


def test_no_password_in_comments_state_or_logs(world, caplog):
    caplog.set_level(logging.DEBUG)
    world.cycle()
    world.approve()
    world.clock.advance(hours=4)
    world.cycle()

    assert world.state().stage is Stage.RESOLVED
    assert len(world.vault.stored) == 1
    _assert_secret_nowhere(world, world.vault.stored[0], caplog)
    assert caplog.records  # the engine does log its progress


@pytest.mark.parametrize("length", [12, 20, 64])
def test_generated_passwords_meet_entra_complexity(length):
    seen = set()
    for _ in range(200):
        password = generate_password(length)
        assert len(password) == length
        assert any(c.islower() for c in password)
        assert any(c.isupper() for c in password)
        assert any(c.isdigit() for c in password)
        assert any(not c.isalnum() for c in password)
        assert not set(password) & set("0O1lI \"'`\\")
        seen.add(password)
    assert len(seen) == 200


def test_a_password_reads_the_os_randomness_a_few_times_not_once_per_character():
    reads: list[int] = []

    def source(n: int) -> bytes:
        reads.append(n)
        return os.urandom(n)

    assert len(generate_password(256, Draws(source))) == 256
    assert len(reads) <= 16  # about 510 draws, 64 bytes a read (secrets.choice: one read per draw)


def test_draws_reject_the_bytes_that_would_bias_them_and_cover_the_whole_range():
    # 256 % 67 = 55: the bytes 201..255 would favour the first 55 values and are skipped.
    draws = Draws(lambda n: bytes([201, 255, 66, 200, 0] + [7] * (n - 5)))
    assert [draws.below(67) for _ in range(3)] == [66, 200 % 67, 0]
    every = Draws(lambda n: bytes(range(256)) * (n // 256 + 1))
    assert {every.below(10) for _ in range(300)} == set(range(10))
    with pytest.raises(ValueError, match="1 to 256"):
        draws.below(257)


def test_too_short_a_password_is_refused():
    with pytest.raises(ValueError, match="at least 12"):
        generate_password(8)


def test_due_follows_retry_and_next_check(world):
    world.cycle()
    state = world.approve()
    engine = world.engine()
    assert engine.due(state) is False
    world.clock.current = state.next_check_at - timedelta(seconds=1)
    assert engine.due(state) is False
    world.clock.advance(seconds=1)
    assert engine.due(state) is True


@pytest.mark.parametrize("microsoft_lag", [timedelta(minutes=-10), timedelta(minutes=10)])
def test_reset_reconciliation_does_not_trust_our_clock(make_world, simulated_crash, microsoft_lag):
    """Microsoft's clock may differ from ours: a reset that went through is still recognised after a crash."""
    world = make_world()
    directory = world.directory
    original = directory.reset_password

    def reset_then_crash(user_id: str, password: str) -> None:
        original(user_id, password)
        user = directory.users[user_id]
        directory.users[user_id] = user.__class__(**{
            **user.__dict__, "last_password_change": world.clock.now().replace(microsecond=0) + microsoft_lag})
        raise simulated_crash("killed right after Graph accepted the reset")

    directory.reset_password = reset_then_crash  # type: ignore[method-assign]
    world.cycle()
    world.tickets.add_comment(world.bob, "/approve")
    with pytest.raises(simulated_crash):
        world.cycle()
    directory.reset_password = original  # type: ignore[method-assign]
    world.clock.advance(minutes=1)
    state = world.cycle()
    assert len(directory.resets) == 1
    assert state.password_reset_at is not None


def test_an_uncertain_unblock_is_settled_after_the_grace_period_and_never_sent_a_third_time(
        make_world, simulated_crash):
    """Crash right after Exchange accepted the unblock, but the entry keeps showing (slow propagation)."""
    world = make_world()
    world.restricted.sticky = True
    world.cycle()
    world.tickets.add_comment(world.bob, "/approve")
    original = world.restricted.unblock

    def unblock_then_crash(address: str, reason: str) -> None:
        original(address, reason)
        raise simulated_crash("killed after Remove-BlockedSenderAddress returned")

    world.restricted.unblock = unblock_then_crash  # type: ignore[method-assign]
    with pytest.raises(simulated_crash):
        world.cycle()
    world.restricted.unblock = original  # type: ignore[method-assign]

    world.clock.advance(minutes=10)
    state = world.cycle()
    assert state.stage is Stage.LIST_CHECKED and len(world.restricted.unblocks) == 1  # waits, sends nothing
    assert state.retry_at == state.unblocked_at + world.policy.unblock_grace

    world.clock.advance(minutes=25)
    state = world.cycle()
    assert len(world.restricted.unblocks) == 2  # still listed after 30 min: sent once more
    assert state.stage is Stage.WAITING_FOR_SEND and state.unblocked_at == world.clock.now()
    for _ in range(60):
        world.clock.advance(minutes=30)
        state = world.cycle()
    assert len(world.restricted.unblocks) == 2  # never a third time
    assert state.stage is Stage.ESCALATED and state.refusal == "still_listed"


def _approved_with_every_patch_cut(world, simulated_crash, sends: int) -> tuple[Any, list[tuple[str, str]]]:
    """Approve, and let the process die with each of ``sends`` reset PATCHes on its way (10 min apart, past the
    grace); return Graph's real ``reset_password`` (back in place) and the PATCHes still in flight."""
    directory = world.directory
    original = directory.reset_password
    in_flight: list[tuple[str, str]] = []

    def killed_while_sending(user_id: str, password: str) -> None:
        in_flight.append((user_id, password))  # on its way; the process dies before Graph applies it
        raise simulated_crash("killed with the PATCH in flight")

    directory.reset_password = killed_while_sending  # type: ignore[method-assign]
    world.cycle()
    world.tickets.add_comment(world.bob, "/approve")
    for sent in range(sends):
        if sent:
            world.clock.advance(minutes=10)  # past the grace: the PATCH never arrived, the password goes again
        with pytest.raises(simulated_crash):
            world.cycle()
    assert len(in_flight) == sends
    directory.reset_password = original  # type: ignore[method-assign]
    return original, in_flight


def test_a_reset_still_in_flight_when_its_process_died_is_waited_for_not_sent_again(make_world, simulated_crash):
    """Killed mid-PATCH: the request reaches Graph after the restart looked. The restart waits, then sees it."""
    world = make_world()
    original, in_flight = _approved_with_every_patch_cut(world, simulated_crash, sends=1)
    world.clock.advance(seconds=1)
    state = world.cycle()  # the restart looks before the PATCH lands: nothing sent, a look again later
    assert world.directory.resets == [] and state.password_reset_at is None and state.retry_at is not None
    original(*in_flight[0])  # ... and now Graph applies the killed process's request
    world.clock.current = state.retry_at
    state = world.cycle()
    assert len(world.directory.resets) == 1, "the vaulted password was sent once, by the process that died"
    assert state.password_reset_at is not None


def test_a_second_send_cut_after_the_grace_is_waited_for_too(make_world, simulated_crash):
    """Each send of the vaulted password is an intent of its own: a second kill mid-PATCH is waited out again."""
    world = make_world()
    original, in_flight = _approved_with_every_patch_cut(world, simulated_crash, sends=2)
    world.clock.advance(seconds=1)
    state = world.cycle()  # the second send may still land: wait, do not send a third time yet
    assert world.directory.resets == [] and state.password_reset_at is None and state.retry_at is not None
    original(*in_flight[1])
    world.clock.current = state.retry_at
    state = world.cycle()
    assert len(world.directory.resets) == 1 and state.password_reset_at is not None
