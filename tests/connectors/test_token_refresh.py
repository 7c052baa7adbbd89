"""A token the service refuses (401) is replaced once, even though MSAL's cache still holds it (live sandbox)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from mailunblock.connectors.errors import AuthenticationError
from mailunblock.connectors.exchange import ExchangeClient
from mailunblock.connectors.graph import GraphClient
from mailunblock.connectors.http import HttpPolicy, build_session
from mailunblock.connectors.identity import TokenProvider
from mailunblock.sandbox.server import Sandbox

ADELE = "adele.vance@contoso.com"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    ports = dict.fromkeys(("control", "jira", "identity", "graph", "exchange"), 0)
    with Sandbox("default", tmp_path, ports=ports) as box:
        yield box


def _clients(box: Sandbox, secret: str | None = None) -> tuple[TokenProvider, GraphClient, ExchangeClient]:
    tenant = box.scenario.tenants[0]
    files = box.layout.credentials(tenant.name)
    policy = HttpPolicy(ca_bundle=str(box.ca_path), timeout=5, max_retries=0)
    session = build_session(policy)
    tokens = TokenProvider(
        tenant_id=tenant.tenant_id, client_id=tenant.app.client_id, session=session, policy=policy,
        authority_host=box.authority_host,
        client_secret=secret or files.client_secret.read_text(encoding="utf-8").strip(),
    )
    return (tokens, GraphClient(box.graph_url, tokens, session, policy),
            ExchangeClient(box.exchange_url, tenant.tenant_id, tokens, session, policy))


def _token_requests(box: Sandbox) -> int:
    return sum(1 for c in box.calls.records("identity") if c.path.endswith("/oauth2/v2.0/token"))


def test_an_expired_cached_token_is_refreshed_once_and_the_write_happens_once(sandbox: Sandbox) -> None:
    _, graph, exchange = _clients(sandbox)
    user = graph.get_user(ADELE)
    assert exchange.blocked_entries(user.smtp_addresses)
    before = _token_requests(sandbox)
    sandbox.clock.advance(timedelta(hours=2))  # the services now see the cached tokens as expired

    graph.reset_password(user.id, "Fresh-Token-Pa55word!")
    exchange.unblock(ADELE, "test")

    assert sandbox.microsoft.reset_count("contoso", ADELE) == 1
    assert sandbox.microsoft.unblock_count("contoso", ADELE) == 1
    # The refusal drops the app's whole cache: one fresh token for Graph, one for Exchange, no loop.
    assert _token_requests(sandbox) == before + 2
    refused = [c for c in sandbox.calls.records() if c.service in ("graph", "exchange") and c.status == 401]
    assert [(c.service, c.method) for c in refused] == [("graph", "PATCH")]  # refused once, then sent again


def test_a_bad_credential_is_not_retried_in_a_loop(sandbox: Sandbox) -> None:
    _, graph, _ = _clients(sandbox, secret="wrong-secret")
    with pytest.raises(AuthenticationError) as caught:
        graph.get_user(ADELE)
    assert "wrong-secret" not in str(caught.value)
    assert _token_requests(sandbox) == 1


def test_workers_asking_at_once_share_one_token_request_per_resource(sandbox: Sandbox) -> None:
    tokens, graph, exchange = _clients(sandbox)
    sandbox.faults.latency.update(identity=0.2)  # widen the window in which every worker finds no token
    barrier = threading.Barrier(8)

    def ask(resource: str) -> str:
        barrier.wait(10)
        return tokens.token(resource)

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(ask, [graph.resource, exchange.resource] * 4))
    assert len(set(got)) == 2
    assert _token_requests(sandbox) == 2  # one per resource, not one per worker


def test_a_valid_token_is_handed_out_from_memory_until_shortly_before_it_expires(sandbox: Sandbox) -> None:
    tokens, _graph, _exchange = _clients(sandbox)
    app = tokens._application()
    asked: list[object] = []
    acquire = app.acquire_token_for_client

    def counted(*args: object, **kwargs: object) -> dict[str, object]:
        asked.append(args)
        return acquire(*args, **kwargs)  # type: ignore[arg-type]

    app.acquire_token_for_client = counted  # type: ignore[method-assign]
    first = tokens.token("https://graph.microsoft.com")
    assert [tokens.token("https://graph.microsoft.com") for _ in range(5)] == [first] * 5
    assert len(asked) == 1, "MSAL's cache is consulted once, not on every request"
    tokens.forget_tokens()  # a 401: the next call asks again
    tokens.token("https://graph.microsoft.com")
    assert len(asked) == 2
