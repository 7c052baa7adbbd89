"""TLS trust against the live sandbox with REQUESTS_CA_BUNDLE set elsewhere; no secret in any cassette."""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
import yaml
from mailunblock.connectors.errors import PermanentError
from mailunblock.connectors.exchange import ExchangeClient
from mailunblock.connectors.graph import GraphClient
from mailunblock.connectors.http import HttpPolicy, build_session
from mailunblock.connectors.identity import TokenProvider
from mailunblock.connectors.jira import JiraClient

CASSETTES = Path(__file__).parent / "cassettes"
ADELE = "4f1c2a9e-0b6d-4e55-8a11-2c3d4e5f6a01"
PASSWORDS_USED_IN_TESTS = ("Correct-Horse-Battery-9!",)
_SIGNED_JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.(?!REDACTED\b)[\w-]{8,}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real sandbox on ephemeral loopback ports (TLS cannot be replayed from a cassette)."""
    from mailunblock.sandbox.server import Sandbox

    ports = dict.fromkeys(("control", "jira", "identity", "graph", "exchange"), 0)
    with Sandbox("default", tmp_path_factory.mktemp("tls-sandbox"), ports=ports) as sandbox:
        yield sandbox


@pytest.fixture
def foreign_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point requests' environment variables at a bundle that does NOT contain the sandbox CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())


def _tokens(live: Any, policy: HttpPolicy) -> TokenProvider:
    tenant = live.scenario.tenants[0]
    files = live.layout.credentials(tenant.name)
    return TokenProvider(
        tenant_id=tenant.tenant_id, client_id=tenant.app.client_id, session=build_session(policy),
        policy=policy, authority_host=live.authority_host,
        certificate_path=str(files.pfx),
        certificate_passphrase=files.pfx_passphrase.read_text(encoding="utf-8").strip(),
    )


@pytest.mark.usefixtures("foreign_ca_env")
def test_configured_ca_wins_for_msal_graph_and_exchange(live: Any) -> None:
    policy = HttpPolicy(ca_bundle=str(live.ca_path), timeout=10, max_retries=0)
    tokens = _tokens(live, policy)
    session = build_session(policy)
    assert GraphClient(live.graph_url, tokens, session, policy).get_user(ADELE).id == ADELE
    exchange = ExchangeClient(
        live.exchange_url, live.scenario.tenants[0].tenant_id, tokens, session, policy
    )
    assert exchange.blocked_entries(["adele.vance@contoso.com"])


@pytest.mark.usefixtures("foreign_ca_env")
def test_configured_ca_wins_for_jira(live: Any) -> None:
    jira = live.config_data()["jira"]
    client = JiraClient.connect(
        live.jira_url, policy=HttpPolicy(ca_bundle=str(live.ca_path), timeout=10, max_retries=0),
        email=jira["email"], api_token=live.layout.jira_token.read_text().strip(),
    )
    assert client.myself().account_id


@pytest.mark.usefixtures("foreign_ca_env")
def test_without_the_configured_ca_tls_fails_as_a_permanent_error(live: Any) -> None:
    """Proves the test above is meaningful: the environment's bundle alone does not trust the sandbox."""
    policy = HttpPolicy(timeout=10, max_retries=0)
    with pytest.raises(PermanentError, match="TLS"):
        JiraClient.connect(live.jira_url, policy=policy, email="x@y.z", api_token="t").myself()


def test_a_configured_bundle_is_read_once_however_many_connections(
    live: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox closes every connection; the bundle is still read once, and still required."""
    loads: list[Any] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(kwargs.get("cafile", args[0] if args else None))
        load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    session = build_session(HttpPolicy(ca_bundle=str(live.ca_path), timeout=10, max_retries=0))
    for _ in range(3):
        assert session.get(f"{live.jira_url}/status").status_code < 500
    assert loads == [str(live.ca_path)]
    strangers = build_session(HttpPolicy(ca_bundle=certifi.where(), timeout=10, max_retries=0))
    with pytest.raises(requests.exceptions.SSLError):
        strangers.get(f"{live.jira_url}/status")


def test_the_trust_store_is_looked_up_on_disk_once_however_many_requests(
    live: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``requests`` alone checks the bundle's path three times per request; here once per origin at most."""
    looked: list[str] = []

    def counting(name: str) -> Callable[[Any], bool]:
        real = getattr(os.path, name)

        def counted(path: Any) -> bool:
            if str(path) == str(live.ca_path):
                looked.append(name)
            return bool(real(path))

        return counted

    for name in ("exists", "isdir"):
        monkeypatch.setattr(os.path, name, counting(name))
    session = build_session(HttpPolicy(ca_bundle=str(live.ca_path), timeout=10, max_retries=0))
    assert session.get(f"{live.jira_url}/status").status_code < 500
    first = len(looked)
    for _ in range(4):
        assert session.get(f"{live.jira_url}/status").status_code < 500
    assert first > 0
    assert len(looked) == first
    for _ in range(3):  # another origin: its pool's key is worked out once (one look), nothing more
        assert session.get(f"{live.graph_url}/v1.0/$metadata").status_code < 600
    assert len(looked) == first + 1


def _cassette_files() -> list[Path]:
    return sorted(CASSETTES.glob("**/*.yaml"))


def test_cassettes_exist() -> None:
    assert len(_cassette_files()) >= 20


@pytest.mark.parametrize("cassette", _cassette_files(), ids=lambda p: p.stem)
def test_no_secret_in_cassette(cassette: Path) -> None:
    text = cassette.read_text(encoding="utf-8")
    assert "sbx~" not in text and "sbx-jira-" not in text  # sandbox client secret / Jira token prefixes
    assert not _SIGNED_JWT.search(text), "an access token kept its signature"
    for password in PASSWORDS_USED_IN_TESTS:
        assert password not in text
    for interaction in yaml.safe_load(text)["interactions"]:
        headers = {name.lower() for name in interaction["request"]["headers"]}
        assert not headers & {"authorization", "cookie"}, cassette.name
        assert "set-cookie" not in {n.lower() for n in interaction["response"]["headers"]}
        body = str(interaction["request"]["body"] or "")
        for name in ("client_secret", "client_assertion", "password"):
            for value in re.findall(rf'"?{name}"?\s*[=:]\s*"?([^&",}}]*)', body):
                assert value in ("***", "%2A%2A%2A", ""), f"{name} recorded in {cassette.name}"


def test_sandbox_secrets_are_absent_from_every_cassette(live: Any) -> None:
    secrets = [live.layout.jira_token.read_text().strip()]
    for tenant in live.scenario.tenants:
        files = live.layout.credentials(tenant.name)
        for path in (files.client_secret, files.pfx_passphrase):
            if path.exists():
                secrets.append(path.read_text(encoding="utf-8").strip())
    # Fresh sandboxes generate fresh secrets; the prefixes above catch recorded ones, and this
    # catches a leak of whatever this machine's sandbox state holds.
    for cassette in _cassette_files():
        text = cassette.read_text(encoding="utf-8")
        assert not any(secret and secret in text for secret in secrets), cassette.name
