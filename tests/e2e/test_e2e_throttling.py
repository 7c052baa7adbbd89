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
    assert world.effects() == world.remediated("contoso", ACCOUNTS[0]) + world.effects().__class__(
        {("reset", "contoso", ACCOUNTS[1]): 1, ("revoke", "contoso", ACCOUNTS[1]): 1})
