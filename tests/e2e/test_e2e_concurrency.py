"""Concurrency inside one process: a pool of workers, and what it must keep from the serial poller.

Tickets for one account filed at the same moment (a user who files three tickets, an agent who files one for
them) are worked on by several workers at once: exactly one remediates the account, the others are its
duplicates. Many tenants' tickets go through together, each still remediated exactly once.
"""

from __future__ import annotations

from collections.abc import Callable

from e2e_world import World
from mailunblock.workflows.state import Stage

ACCOUNT = "diego.siciliani@contoso.com"


def test_tickets_for_one_account_filed_together_remediate_it_once(make_world: Callable[..., World]) -> None:
    world = make_world(poller={"workers": 8})
    before = world.effects()
    keys = [world.new_ticket("megan.bowen@contoso.com", summary=f"Diego cannot send ({n})", affected=ACCOUNT)
            for n in range(6)]
    world.cycle()
    world.cycle()  # a ticket that found its account being decided about waits a cycle, then knows
    stages = {key: world.state(key).stage for key in keys}
    holders = [key for key, stage in stages.items() if stage is Stage.AWAITING_APPROVAL]
    assert len(holders) == 1, stages
    others = [key for key in keys if key not in holders]
    assert all((world.state(k).stage, world.state(k).refusal) == (Stage.REFUSED, "duplicate") for k in others)
    assert all(f"already being remediated in {holders[0]}" in world.bot_comment(k, "refused").body for k in others)
    for key in keys:
        world.approve(key)  # an agent approving every copy changes nothing for the duplicates
    assert world.finish(holders[0]).stage is Stage.RESOLVED
    assert world.effects() - before == world.remediated("contoso", ACCOUNT)


def test_many_tickets_over_two_tenants_go_through_together_each_once(make_world: Callable[..., World]) -> None:
    world = make_world(poller={"workers": 8, "tickets_per_tenant": 3})
    before = world.effects()
    accounts = {"adele.vance@contoso.com": "contoso", "lidia.holloway@contoso.com": "contoso",
                "diego.siciliani@contoso.com": "contoso", "grace.hill@contoso.com": "contoso",
                "chloe.dupont@fabrikam.fr": "fabrikam"}
    keys = {world.new_ticket(address): address for address in accounts}
    world.cycle()
    assert all(world.state(k).stage is Stage.AWAITING_APPROVAL for k in keys), {
        k: world.state(k).stage for k in keys}
    for key in keys:
        world.approve(key)
    world.cycle()
    expected = before
    for key, address in keys.items():
        assert world.finish(key).stage is Stage.RESOLVED
        expected = expected + world.remediated(accounts[address], address)
    assert world.effects() == expected
    for key in keys:  # each comment once, under every worker interleaving
        markers = world.markers(key)
        assert len(markers) == len(set(markers)), markers
