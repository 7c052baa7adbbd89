"""Graph JSON batching in the connector, against the sandbox emulator (vcrpy cassettes).

Each test counts what went over the wire through the policy's observer: a batch is one request.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from mailunblock.connectors.errors import ThrottledError, TransientError
from mailunblock.connectors.graph import GraphClient
from mailunblock.connectors.http import HttpPolicy, build_session
from mailunblock.sandbox.core import FaultRule

ADELE = "4f1c2a9e-0b6d-4e55-8a11-2c3d4e5f6a01"
ADELE_UPN = "adele.vance@contoso.com"
BEN_ADMIN = "ben.walters@contoso.com"
GRACE = "grace.hill@contoso.com"
HENRY_ALIAS = "sales@contoso.com"


class Wire:
    """What the transport sent, by outcome (HTTP status, or "not_sent" when a throttle gate held it)."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()

    def __call__(self, service: str, outcome: str) -> None:
        self.outcomes[outcome] += 1

    @property
    def sent(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "not_sent")


def graph(env: Any, **policy: Any) -> tuple[GraphClient, Wire, HttpPolicy]:
    wire = Wire()
    http = env.policy(observer=wire, **policy)
    tokens = env.tokens(policy=env.policy())  # token requests are not counted
    return GraphClient(env.graph_url, tokens, build_session(http, "graph"), http), wire, http


@pytest.mark.vcr
def test_a_upn_gets_account_roles_and_mailbox_in_one_call(env: Any) -> None:
    client, wire, _ = graph(env)
    facts = client.account_facts(BEN_ADMIN)
    (ben,) = facts.users
    assert ben.user_principal_name == BEN_ADMIN
    roles = facts.roles_of(ben)
    assert roles is not None and [r.display_name for r in roles] == ["Global Administrator"]
    assert facts.mailbox_of(ben) is True
    assert wire.sent == 1


@pytest.mark.vcr
def test_an_alias_leaves_roles_and_mailbox_unread(env: Any) -> None:
    client, wire, _ = graph(env)
    facts = client.account_facts(HENRY_ALIAS)  # /users/{alias} is no user: its answers are not his
    (henry,) = facts.users
    assert henry.user_principal_name == "henry.ng@contoso.com"
    assert facts.roles_of(henry) is None and facts.mailbox_of(henry) is None
    assert client.account_facts("nobody@contoso.com").users == ()
    assert wire.sent == 2


@pytest.mark.vcr
def test_the_recheck_asks_for_the_roles_of_the_planned_account_by_id(env: Any) -> None:
    client, wire, _ = graph(env)
    facts = client.account_facts(ADELE_UPN, account_id=ADELE, mailbox=False)
    (adele,) = facts.users
    assert adele.id == ADELE and facts.roles_of(adele) == () and facts.mailbox_of(adele) is None
    assert adele.last_password_change is not None and adele.sign_in_sessions_valid_from is not None
    other = client.account_facts(GRACE, account_id=ADELE, mailbox=False)  # the address is someone else's now
    assert other.roles_of(other.users[0]) is None
    assert wire.sent == 2


@pytest.mark.vcr
def test_the_revocation_and_the_rules_read_after_it_are_one_call(env: Any) -> None:
    client, wire, _ = graph(env)
    before = client.get_user(GRACE)
    rules = client.revoke_sessions_then_inbox_rules(before.id)
    assert rules is not None
    assert [r.forward_to for r in rules if r.is_suspicious] == [("billing-desk@attacker.example",)]
    after = client.get_user(before.id)
    assert after.sign_in_sessions_valid_from and before.sign_in_sessions_valid_from
    assert after.sign_in_sessions_valid_from > before.sign_in_sessions_valid_from
    assert wire.sent == 3


@pytest.mark.vcr
def test_a_throttled_read_in_a_batch_closes_the_gate_and_the_batch_is_retried(env: Any) -> None:
    client, wire, _ = graph(env)
    env.fault(FaultRule(service="graph", status=429, retry_after=7, path_contains="messageRules"))
    facts = client.account_facts(GRACE)
    assert facts.mailbox_of(facts.users[0]) is True
    assert len(env.sleeps) == 1 and 7 <= env.sleeps[0] <= 8  # the sub-response's own Retry-After
    assert wire.sent == 2


@pytest.mark.vcr
def test_a_long_throttle_in_a_batch_holds_every_later_graph_request(env: Any) -> None:
    client, wire, _ = graph(env, max_retry_wait=60)
    env.fault(FaultRule(service="graph", status=429, retry_after=300, path_contains="transitiveMemberOf"))
    with pytest.raises(ThrottledError) as caught:
        client.account_facts(ADELE_UPN)
    assert caught.value.retry_after == 300 and env.sleeps == []
    with pytest.raises(ThrottledError, match="not sent"):
        client.get_user(ADELE)
    assert wire.sent == 1 and wire.outcomes["not_sent"] == 1


@pytest.mark.vcr
def test_a_batch_holding_the_revocation_is_never_retried(env: Any) -> None:
    client, wire, policy = graph(env, max_retry_wait=1)
    env.fault(FaultRule(service="graph", status=429, retry_after=5, path_contains="revokeSignInSessions"))
    with pytest.raises(ThrottledError):
        client.revoke_sessions_then_inbox_rules(ADELE)
    assert env.sleeps == [] and wire.sent == 1
    with pytest.raises(ThrottledError, match="not sent"):  # the sub-response closed the gate
        client.get_user(ADELE)
    env.fault(FaultRule(service="graph", status=503, path_contains="$batch"))
    policy.sleep(6)  # past the gate's deadline (the test clock moves)
    with pytest.raises(TransientError):
        client.revoke_sessions_then_inbox_rules(ADELE)
    assert wire.sent == 2


@pytest.mark.vcr
def test_a_failed_rules_read_after_the_revocation_is_left_to_a_single_read(env: Any) -> None:
    client, wire, _ = graph(env)
    env.fault(FaultRule(service="graph", status=500, path_contains="messageRules"))
    assert client.revoke_sessions_then_inbox_rules(ADELE) is None
    assert client.inbox_rules(ADELE) == []
    assert wire.sent == 2


@pytest.mark.vcr
@pytest.mark.parametrize("status", [400, 404, 405])
def test_a_graph_without_batching_is_asked_once_then_called_singly(env: Any, status: int) -> None:
    client, wire, _ = graph(env)
    env.fault(FaultRule(service="graph", status=status, path_contains="$batch"))
    facts = client.account_facts(BEN_ADMIN)
    assert facts.roles_of(facts.users[0]) is None  # triage reads them singly when it needs them
    assert client.revoke_sessions_then_inbox_rules(ADELE) is None
    assert wire.sent == 3  # the refused batch, the lookup, the revocation: $batch is not asked again
    assert wire.outcomes[str(status)] == 1


@pytest.mark.vcr
def test_a_server_error_inside_a_batch_of_reads_retries_the_batch(env: Any) -> None:
    client, wire, _ = graph(env)
    env.fault(FaultRule(service="graph", status=503, path_contains="transitiveMemberOf"))
    facts = client.account_facts(BEN_ADMIN)
    roles = facts.roles_of(facts.users[0])
    assert roles is not None and [r.display_name for r in roles] == ["Global Administrator"]
    assert len(env.sleeps) == 1 and wire.sent == 2
