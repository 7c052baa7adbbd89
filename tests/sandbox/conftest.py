"""Fixtures: a sandbox on ephemeral loopback ports, HTTP sessions trusting its CA, token helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from mailunblock.sandbox.server import DEFAULT_PORTS, Sandbox

EPHEMERAL = {name: 0 for name in DEFAULT_PORTS}
START = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def sandbox_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state dir for every sandbox of the run, so keys and certificates are generated once."""
    return tmp_path_factory.mktemp("sandbox-state")


@pytest.fixture(scope="session")
def sandbox(sandbox_state_dir: Path) -> Iterator[Sandbox]:
    """The shared sandbox: tests using it must not move its clock or touch others' users."""
    with Sandbox("default", sandbox_state_dir, ports=EPHEMERAL, start_time=START) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").faults.clear()


@pytest.fixture
def make_sandbox(sandbox_state_dir: Path) -> Iterator[Callable[..., Sandbox]]:
    """Start a private sandbox (own clock and state) for tests that advance time or revoke."""
    started: list[Sandbox] = []

    def _make(**kwargs: Any) -> Sandbox:
        kwargs.setdefault("start_time", START)
        box = Sandbox("default", sandbox_state_dir, ports=EPHEMERAL, **kwargs).start()
        started.append(box)
        return box

    yield _make
    for box in started:
        box.stop()


def _http_session(box: Sandbox) -> requests.Session:
    """A session trusting only the sandbox CA, ignoring REQUESTS_CA_BUNDLE and proxies."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(box.ca_path)
    return session


@pytest.fixture(scope="session")
def http(sandbox: Sandbox) -> requests.Session:
    """HTTP session for the shared sandbox."""
    return _http_session(sandbox)


def _get_token(box: Sandbox, tenant: str, resource: str) -> str:
    """An access token from the identity emulator with the tenant's client secret."""
    state = box.microsoft.tenants[tenant]
    base = "https://graph.microsoft.com" if resource == "graph" else "https://outlook.office365.com"
    response = _http_session(box).post(
        f"{box.authority_host}/{state.spec.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": state.spec.app.client_id,
            "client_secret": state.credentials.client_secret,
            "scope": f"{base}/.default",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="session")
def session_for() -> Callable[[Sandbox], requests.Session]:
    """Build a CA-trusting session for any sandbox."""
    return _http_session


@pytest.fixture(scope="session")
def token_for() -> Callable[[Sandbox, str, str], str]:
    """Get a token: token_for(sandbox, tenant name, "graph" | "exchange")."""
    return _get_token


@pytest.fixture(scope="session")
def graph_token(sandbox: Sandbox) -> str:
    """Contoso's Graph token on the shared sandbox."""
    return _get_token(sandbox, "contoso", "graph")


@pytest.fixture(scope="session")
def exchange_token(sandbox: Sandbox) -> str:
    """Contoso's Exchange token on the shared sandbox."""
    return _get_token(sandbox, "contoso", "exchange")
