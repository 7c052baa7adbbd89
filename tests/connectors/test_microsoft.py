"""Identity, Graph and Exchange connectors against the sandbox emulators (vcrpy cassettes)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mailunblock.connectors.errors import (
    AuthenticationError,
    NotBlockedError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
    UnblockLimitReachedError,
)
from mailunblock.connectors.exchange import ExchangeClient
from mailunblock.connectors.graph import GRAPH_RESOURCE, GraphClient
from mailunblock.connectors.http import HttpPolicy, build_session
from mailunblock.connectors.identity import TokenProvider
from mailunblock.sandbox.core import FaultRule

ADELE = "4f1c2a9e-0b6d-4e55-8a11-2c3d4e5f6a01"
BEN_ADMIN = "ben.walters@contoso.com"
HENRY_ALIAS = "sales@contoso.com"
NEW_PASSWORD = "Correct-Horse-Battery-9!"


def graph(env: Any, policy: HttpPolicy | None = None) -> GraphClient:
    policy = policy or env.policy()
    return GraphClient(env.graph_url, env.tokens(policy=policy), build_session(policy), policy)


def exchange(env: Any) -> ExchangeClient:
    policy = env.policy()
    return ExchangeClient(
        env.exchange_url, env.tenant_id, env.tokens(policy=policy), build_session(policy), policy
    )


# --- identity ---------------------------------------------------------------------------------


@pytest.mark.vcr
@pytest.mark.parametrize("certificate", [True, False], ids=["certificate", "secret"])
def test_app_token_reports_roles_and_ids(env: Any, certificate: bool) -> None:
    token = env.tokens(certificate=certificate).app_token(GRAPH_RESOURCE)
    assert token.tenant_id == env.tenant_id
    assert "User-PasswordProfile.ReadWrite.All" in token.roles
    assert token.service_principal_id == env.sp_object_id
    assert token.expires_on is not None


@pytest.mark.vcr
def test_wrong_client_secret_is_an_authentication_error_without_the_secret(env: Any) -> None:
    policy = env.policy()
    provider = TokenProvider(
        tenant_id=env.tenant_id, client_id=env.client_id, session=build_session(policy),
        policy=policy, authority_host=env.authority_host, client_secret="not-the-secret~123",
    )
    with pytest.raises(AuthenticationError) as caught:
        provider.token(GRAPH_RESOURCE)
    assert caught.value.code is not None and caught.value.code.startswith("AADSTS")
    assert "not-the-secret" not in str(caught.value)


@pytest.mark.vcr
def test_identity_outage_is_transient(env: Any) -> None:
    # MSAL itself holds back 429/5xx token responses for their Retry-After (default 5 s), so the
    # outage is checked without retries here; the policy's retries are covered in test_http.py.
    env.fault(FaultRule(service="identity", status=503, method="POST"))
    with pytest.raises(TransientError):
        env.tokens(policy=env.policy(max_retries=0)).token(GRAPH_RESOURCE)


# --- Graph ------------------------------------------------------------------------------------


@pytest.mark.vcr
def test_get_user_by_id_upn_and_alias(env: Any) -> None:
    client = graph(env)
    adele = client.get_user(ADELE)
    assert adele.user_principal_name == "adele.vance@contoso.com"
    assert adele.account_enabled and adele.last_password_change is not None
    assert client.get_user("Adele.Vance@contoso.com").id == ADELE
    henry = client.get_user(HENRY_ALIAS)  # not a UPN: found through proxyAddresses
    assert HENRY_ALIAS in henry.smtp_addresses


@pytest.mark.vcr
def test_find_users_by_address_and_unknown_user(env: Any) -> None:
    client = graph(env)
    assert [u.user_principal_name for u in client.find_users_by_address(HENRY_ALIAS)] == [
        "henry.ng@contoso.com"
    ]
    assert client.find_users_by_address("nobody@contoso.com") == []
    with pytest.raises(NotFoundError):
        client.get_user("nobody@contoso.com")


@pytest.mark.vcr
def test_directory_roles_of_users_and_of_our_service_principal(env: Any) -> None:
    client = graph(env)
    admin = client.get_user(BEN_ADMIN)
    assert [r.display_name for r in client.directory_roles(admin.id)] == ["Global Administrator"]
    assert client.directory_roles(ADELE) == []
    assert {r.display_name for r in client.service_principal_roles(env.sp_object_id)} == {
        "User Administrator", "Exchange Administrator"
    }


@pytest.mark.vcr
def test_reset_password_revoke_and_inbox_rules(env: Any) -> None:
    client = graph(env)
    before = client.get_user("grace.hill@contoso.com")
    client.reset_password(before.id, NEW_PASSWORD)
    client.revoke_sessions(before.id)
    after = client.get_user(before.id)
    assert after.last_password_change and before.last_password_change
    assert after.last_password_change > before.last_password_change
    assert after.sign_in_sessions_valid_from and before.sign_in_sessions_valid_from
    assert after.sign_in_sessions_valid_from > before.sign_in_sessions_valid_from  # the revocation
    rules = client.inbox_rules(before.id)
    assert [r.forward_to for r in rules if r.is_suspicious] == [("billing-desk@attacker.example",)]


@pytest.mark.vcr
def test_password_refusals_are_permanent(env: Any) -> None:
    client = graph(env)
    with pytest.raises(PermanentError, match="password policy"):
        client.reset_password(ADELE, "short")
    synced = client.get_user("frank.synced@contoso.com")
    with pytest.raises(PermanentError, match="on-premises"):
        client.reset_password(synced.id, NEW_PASSWORD)


@pytest.mark.vcr
def test_graph_throttling_is_retried_for_reads_but_not_for_password_reset(env: Any) -> None:
    client = graph(env)
    env.fault(FaultRule(service="graph", status=429, retry_after=7, method="GET"))
    assert client.get_user(ADELE).id == ADELE
    assert len(env.sleeps) == 1 and 7 <= env.sleeps[0] <= 8
    env.fault(FaultRule(service="graph", status=429, retry_after=7, method="PATCH"))
    with pytest.raises(ThrottledError) as caught:
        client.reset_password(ADELE, NEW_PASSWORD)
    assert caught.value.retry_after == 7
    assert len(env.sleeps) == 1


@pytest.mark.vcr
def test_graph_server_errors_are_transient_after_retries(env: Any) -> None:
    client = graph(env, env.policy(max_retries=1))
    env.fault(FaultRule(service="graph", status=503, count=2, method="GET"))
    with pytest.raises(TransientError):
        client.get_user(ADELE)
    assert len(env.sleeps) == 1


# --- Exchange ---------------------------------------------------------------------------------


@pytest.mark.vcr
def test_blocked_entries_match_every_address_case_insensitively(env: Any) -> None:
    client = exchange(env)
    entries = client.blocked_entries(["HENRY.NG@contoso.com", "h.ng@contoso.com", "Sales@Contoso.com"])
    assert [e.sender_address for e in entries] == [HENRY_ALIAS]
    assert entries[0].created is not None and entries[0].created.tzinfo is not None
    assert client.blocked_entries(["megan.bowen@contoso.com"]) == []
    assert len(client.list_blocked()) >= 8


@pytest.mark.vcr
def test_unblock_then_not_blocked_then_limit(env: Any, scenario: Any) -> None:
    client = exchange(env)
    client.unblock("adele.vance@contoso.com", "mailunblock test")
    with pytest.raises(NotBlockedError):
        client.unblock("megan.bowen@contoso.com", "mailunblock test")
    lidia = "lidia.holloway@contoso.com"
    for _ in range(scenario.exchange.unblock_limit_per_day):  # blocked again each time, same day
        if env.live:
            env.sandbox.microsoft.block(env.tenant_id, lidia, "test")
        client.unblock(lidia, "mailunblock test")
    if env.live:
        env.sandbox.microsoft.block(env.tenant_id, lidia, "test")
    with pytest.raises(UnblockLimitReachedError, match="Microsoft Support"):
        client.unblock(lidia, "mailunblock test")


@pytest.mark.vcr
def test_unblock_is_never_retried_but_reads_are(env: Any) -> None:
    client = exchange(env)
    env.fault(FaultRule(service="exchange", status=429, retry_after=5))
    assert client.blocked_entries([HENRY_ALIAS])
    assert len(env.sleeps) == 1
    env.fault(FaultRule(service="exchange", status=503))
    with pytest.raises(TransientError):
        client.unblock("adele.vance@contoso.com", "mailunblock test")
    assert len(env.sleeps) == 1


# --- transport failures ---------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback HTTP server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


class FixedToken:
    """Token provider stand-in for tests that never reach the identity service."""

    def token(self, resource_url: str) -> str:
        return "stand-in"

    def authorized(self, resource_url: str, call: Callable[[str], Any]) -> Any:
        return call(self.token(resource_url))


def test_timeout_is_transient_and_not_retried_for_writes(silent_server: str) -> None:
    waits: list[float] = []
    policy = HttpPolicy(timeout=0.2, max_retries=1, sleep=waits.append)
    client = GraphClient(silent_server, FixedToken(), build_session(policy), policy)  # type: ignore[arg-type]
    with pytest.raises(TransientError, match="timed out"):
        client.reset_password(ADELE, NEW_PASSWORD)
    assert waits == []
    with pytest.raises(TransientError, match="timed out"):
        client.get_user(ADELE)
    assert len(waits) == 1
