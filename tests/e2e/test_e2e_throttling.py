"""Throttling as the services define it: after a 429 with Retry-After, nothing reaches that service early.

Checked from the sandbox's own call log (sandbox time), for Jira, Graph, Exchange and the identity platform,
with a wait the HTTP layer sleeps through (60 s) and one it leaves to the engine's scheduling (600 s).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from e2e_world import World
from mailunblock.sandbox.core import FaultRule
from mailunblock.workflows.state import Stage

ACCOUNTS = ("adele.vance@contoso.com", "megan.bowen@contoso.com")


def _cycle(world: World) -> None:
    world.poller.run_cycle()  # a throttled Jira search is a failed cycle: not a test failure here


@pytest.mark.parametrize("retry_after", [60, 600])
@pytest.mark.parametrize("service", ["jira", "graph", "exchange", "identity"])
def test_no_request_reaches_a_throttled_service_before_its_deadline(
    make_world: Callable[..., World], service: str, retry_after: int
) -> None:
    world = make_world()
    keys = [world.new_ticket(address) for address in ACCOUNTS]
    if service == "identity":  # tokens are cached: throttle the very first token request
        world.sandbox.faults.add(FaultRule(service, status=429, retry_after=retry_after))
    _cycle(world)
    for key in keys:
        world.approve(key)
    if service != "identity":
        world.sandbox.faults.add(FaultRule(service, status=429, retry_after=retry_after))

    # Cycles one minute apart through the window, with two tickets wanting the same service.
    for _ in range(15):
        _cycle(world)
        world.advance(timedelta(minutes=1))
    for key in keys:
        if world.state(key).stage is Stage.AWAITING_APPROVAL:  # the approval was read after the window
            world.approve(key)
    for key in keys:
        assert world.finish(key).stage in (Stage.RESOLVED, Stage.NOT_LISTED), world.state(key)

    calls = world.sandbox.calls.records(service)
    throttled = [c for c in calls if c.status == 429]
    assert len(throttled) == 1, "the fault fired once"
    deadline = throttled[0].at + timedelta(seconds=retry_after)
    after = calls[calls.index(throttled[0]) + 1:]
    early = [f"{c.method} {c.path} at {c.at:%H:%M:%S}" for c in after if c.at < deadline]
    assert not early, f"{service}: {len(early)} request(s) before the deadline {deadline:%H:%M:%S}: {early}"
    assert after, "the service was used again after the deadline"
    # Megan is not on the list: her ticket closes without any change (no reset by default).
    assert world.effects() == world.remediated("contoso", ACCOUNTS[0])


def test_a_missing_graph_permission_stops_one_ticket_with_one_note_and_no_retry(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.sandbox.microsoft.revoke("contoso", "User.RevokeSessions.All")  # before the first token
    contoso = world.new_ticket("adele.vance@contoso.com")
    fabrikam = world.new_ticket("sophie.bernard@fabrikam.fr")
    world.cycle()
    world.approve(contoso)
    world.comment(fabrikam, "alice", "/reset", internal=True)  # not listed: a reset only when asked for
    world.cycle()

    state = world.state(contoso)
    assert (state.stage, state.refusal, state.failed_step) == (Stage.ESCALATED, "missing_permission", "sessions")
    note = world.bot_comment(contoso, "escalated")
    assert "the application permission(s), with admin consent: User.RevokeSessions.All (Microsoft Graph)" in note.body
    assert "Application permissions > User.RevokeSessions.All, then 'Grant admin consent'" in note.body
    assert "Authorization_RequestDenied" in note.body
    assert not [m for m in world.markers(contoso) if m.startswith("failure-")], "one note, not a retry notice"
    assert "mailunblock-escalated" in world.labels(contoso)

    world.run_until(lambda: world.state(fabrikam).is_terminal, limit=timedelta(hours=30))
    assert world.state(fabrikam).stage in (Stage.RESOLVED, Stage.NOT_LISTED)  # the other tenant goes on
    revocations = [c for c in world.sandbox.calls.records("graph") if c.path.endswith("/revokeSignInSessions")]
    assert sorted(c.status for c in revocations) == [200, 403]  # fabrikam's went through; contoso's once
    assert world.markers(contoso).count("escalated") == 1
