"""Hostile names end to end, on Jira Cloud and Data Center: stored comments show them escaped, never as markup.

The reporter's Jira display name and the name of an inbox rule in the affected mailbox carry a mention, a
link, a macro, a bare URL and a right-to-left override; the comments stored in the sandbox Jira must hold
them escaped (tests/workflows/test_markup_corpus.py checks every template; this checks the wiring).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest
from e2e_world import World
from mailunblock.workflows.state import Stage

ACCOUNT = "grace.hill@contoso.com"  # her mailbox has a rule forwarding to billing-desk@attacker.example
HOSTILE = "[~accountid:5b10a2844c20165700ede21g] [Reset here|https://evil.example/reset] {color:red}x{color}"
RULE = "\u202e{code}!pixel.png! [Pay|https://evil.example/pay]"
# How they must be stored: every wiki special character backslash-escaped, the URL defanged, no RLO.
NAME_STORED = (r"\[\~accountid:5b10a2844c20165700ede21g\] \[Reset here\|https\[:\]//evil.example/reset\] "
               r"\{color:red\}x\{color\}")
RULE_STORED = r"\{code\}\!pixel.png\! \[Pay\|https\[:\]//evil.example/pay\]"


@pytest.mark.parametrize("deployment", ["cloud", "datacenter"])
def test_hostile_names_are_escaped_in_every_stored_comment(
    make_world: Callable[..., World], deployment: str
) -> None:
    world = make_world(jira_deployment=deployment)
    world.jira.user(ACCOUNT).display_name = HOSTILE
    with world.sandbox.microsoft.lock:
        user = next(u for u in world.sandbox.microsoft.tenants["contoso"].users.values()
                    if u.spec.user_principal_name == ACCOUNT)
        rules = [dict(rule, displayName=RULE) if i == 0 else rule for i, rule in enumerate(user.spec.inbox_rules)]
        user.spec = dataclasses.replace(user.spec, inbox_rules=tuple(rules))

    key = world.new_ticket(ACCOUNT)
    world.cycle()
    world.approve(key)
    world.cycle()
    assert world.state(key).stage is Stage.WAITING_FOR_SEND
    assert world.state(key).reporter_name == HOSTILE

    stored = {world.markers(key)[i]: c.body for i, c in enumerate(world.bot_comments(key, raw=True))}
    assert NAME_STORED in stored["ack"] and NAME_STORED in stored["eta"]  # public: greet the reporter by name
    assert f'"{RULE_STORED}" \\(forwardTo billing\\-desk\\@attacker.example\\)' in stored["summary"], stored["summary"]
    for name, body in stored.items():
        assert "\u202e" not in body, name
        assert not re.search(r"(?<!\\)\[(?:~|Reset|Pay)|(?<!\\)\{(?:code|color)|https?://", body), (name, body)
