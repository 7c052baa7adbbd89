"""Operating it on a sandbox run: ``status TICKET``, ``status --json`` and the ``audit`` export."""

from __future__ import annotations

import json

from click.testing import CliRunner
from e2e_world import START, World
from mailunblock.plugin.cli import main
from mailunblock.workflows.state import Stage

ACCOUNT = "adele.vance@contoso.com"


def _cli(world: World, *args: str) -> str:
    result = CliRunner().invoke(main, [*args[:1], "--config", str(world.config_path), *args[1:]])
    assert result.exit_code == 0, result.output
    return result.output


def _remediate(world: World) -> str:
    key = world.new_ticket(ACCOUNT)
    world.cycle()
    world.approve(key, "alice")
    world.cycle()
    assert world.finish(key).stage is Stage.RESOLVED
    return key


def test_status_and_audit_tell_a_remediated_tickets_story(world: World) -> None:
    key = _remediate(world)
    state = world.state(key)

    story = json.loads(_cli(world, "status", key, "--json"))
    assert story["ticket"] == key and story["stage"] == "resolved" and story["finished"]
    assert story["tenant"] == "contoso" and story["account"] == state.account_upn
    stages = [s["stage"] for s in story["stages"]]
    assert stages[0] == "new" and stages[-1] == "resolved"
    assert {"awaiting_approval", "approved", "password_reset", "sessions_revoked"} <= set(stages)
    assert story["approval"]["how"] == str(state.approval_kind) and story["approval"]["by"] == state.approved_by
    assert story["done"]["unblocked"] == list(state.unblocked_addresses)
    calls = [(a["action"], a["result"]) for a in story["audit"]]
    for action in ("reset-password", "revoke-sessions", "unblock"):
        assert calls.index((action, "called")) < calls.index((action, "ok")), calls
    assert ("approve", "decided") in calls

    text = _cli(world, "status", key)
    assert text.startswith(f"{key}: resolved\n")
    assert f"approved by {state.approved_by} ({state.approval_kind})" in text
    assert "reset-password" in text and "password_reset" in text

    every = json.loads(_cli(world, "status", "--json"))
    assert key in [s["ticket"] for s in every]

    lines = _cli(world, "audit", "--since", START.date().isoformat(), "--format", "jsonl").splitlines()
    entries = [json.loads(line) for line in lines]
    mine = [e for e in entries if e["issue_key"] == key]
    assert mine == story["audit"]
    approve = next(e for e in mine if e["action"] == "approve")
    assert approve["actor"] == state.approved_by and approve["account"] == state.account_upn
    reset = [e for e in mine if e["action"] == "reset-password"]
    assert [e["result"] for e in reset] == ["called", "ok"] and reset[0]["target"] == state.account_upn
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    only = [json.loads(line) for line in _cli(world, "audit", "--since", "2000-01-01", "--ticket", key).splitlines()]
    assert only == mine
    assert _cli(world, "audit", "--since", "2099-01-01") == ""


def test_status_of_an_unknown_ticket_fails(world: World) -> None:
    result = CliRunner().invoke(main, ["status", "--config", str(world.config_path), "NOPE-1"])
    assert result.exit_code == 1 and "no state for this ticket" in result.output
