"""Sandbox server: generated config, the shipped config/sandbox.toml, the control API, scenarios, TLS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from mailunblock.plugin.config import load_config
from mailunblock.sandbox.scenario import ScenarioError, load_scenario
from mailunblock.sandbox.server import DEFAULT_PORTS, Sandbox, StateLayout
from mailunblock.sandbox.tls import ensure_tls

REPO = Path(__file__).resolve().parents[2]


def test_write_config_validates_and_resolves_secrets(sandbox: Sandbox, tmp_path: Path) -> None:
    path = sandbox.write_config(tmp_path / "mailunblock.toml", policy={"auto_approve": True})
    config = load_config(path)
    contoso, fabrikam = config.tenant("contoso"), config.tenant("fabrikam")
    assert config.policy.auto_approve is True
    assert contoso.graph_url == sandbox.graph_url and contoso.authority_host == sandbox.authority_host
    assert contoso.certificate_path == sandbox.microsoft.tenants["contoso"].credentials.files.pfx
    assert contoso.certificate_passphrase is not None
    assert config.secret(contoso.certificate_passphrase)
    assert fabrikam.client_secret is not None
    assert config.secret(fabrikam.client_secret) == (
        sandbox.microsoft.tenants["fabrikam"].credentials.client_secret
    )
    assert config.jira.url == sandbox.jira_url and config.jira.ca_bundle == sandbox.ca_path
    assert "helpdesk-agents" in config.jira.approver_groups
    text = path.read_text()
    for state in sandbox.microsoft:  # secrets are referenced, never written inline
        files = state.credentials.files
        assert state.credentials.client_secret is None or state.credentials.client_secret not in text
        assert not files.pfx_passphrase.exists() or files.pfx_passphrase.read_text().strip() not in text


def test_write_config_can_choose_the_secret(sandbox: Sandbox, tmp_path: Path) -> None:
    config = load_config(
        sandbox.write_config(tmp_path / "secret.toml", credential={"contoso": "secret"})
    )
    assert config.tenant("contoso").client_secret is not None
    assert config.tenant("contoso").certificate_path is None


def test_shipped_sandbox_config_matches_defaults() -> None:
    config = load_config(REPO / "config" / "sandbox.toml")
    layout = StateLayout(REPO / "var" / "sandbox")
    scenario = load_scenario("default")
    assert config.jira.url == f"https://127.0.0.1:{DEFAULT_PORTS['jira']}"
    assert config.jira.ca_bundle is not None
    assert config.path(config.jira.ca_bundle).resolve() == layout.ca_path.resolve()
    for spec in scenario.tenants:
        tenant = config.tenant(spec.name)
        assert tenant.tenant_id == spec.tenant_id and tenant.client_id == spec.app.client_id
        assert tenant.authority_host == f"https://127.0.0.1:{DEFAULT_PORTS['identity']}"
        assert tenant.graph_url == f"https://127.0.0.1:{DEFAULT_PORTS['graph']}"
        assert tenant.exchange_url == f"https://127.0.0.1:{DEFAULT_PORTS['exchange']}"
        files = layout.credentials(spec.name)
        if tenant.certificate_path is not None:
            assert config.path(tenant.certificate_path).resolve() == files.pfx.resolve()
        else:
            ref = str(tenant.client_secret).removeprefix("file:")
            assert (REPO / "config" / ref).resolve() == files.client_secret.resolve()


def test_control_api(sandbox: Sandbox) -> None:
    base = sandbox.control_url
    before = requests.get(f"{base}/clock", timeout=10).json()["now"]
    assert before
    calls = requests.get(f"{base}/calls", params={"service": "identity"}, timeout=10).json()
    assert all(c["service"] == "identity" for c in calls)
    queued = requests.post(
        f"{base}/faults", json={"service": "graph", "status": 503, "count": 1}, timeout=10
    )
    assert queued.status_code == 201
    faulted = requests.get(f"{sandbox.graph_url}/v1.0/users/x", verify=str(sandbox.ca_path),
                           timeout=10)
    assert faulted.status_code == 503
    assert faulted.json()["error"]["code"] == "serviceNotAvailable"
    blocked = requests.post(
        f"{base}/exchange/block",
        json={"tenant": "fabrikam", "address": "sophie.bernard@fabrikam.fr"},
        timeout=10,
    )
    assert blocked.status_code == 201
    assert sandbox.microsoft.is_listed("fabrikam", "sophie.bernard@fabrikam.fr")
    unknown = requests.post(
        f"{base}/exchange/block", json={"tenant": "nope", "address": "a@b.c"}, timeout=10
    )
    assert unknown.status_code == 404


def test_control_moves_a_private_clock(make_sandbox: Callable[..., Sandbox]) -> None:
    box = make_sandbox()
    before = box.clock.now()
    after = requests.post(f"{box.control_url}/clock/advance", json={"hours": 4}, timeout=10)
    assert after.status_code == 200
    assert (box.clock.now() - before).total_seconds() >= 4 * 3600


def test_jira_is_wired_with_the_bot_token(sandbox: Sandbox) -> None:
    assert sandbox.jira is not None
    token = sandbox.layout.jira_token.read_text().strip()
    bot = sandbox.jira.user(sandbox.jira.bot_account)
    assert sandbox.jira.authenticate_basic(bot.email, token) is bot


def test_default_scenario_covers_the_cases() -> None:
    scenario = load_scenario("default")
    contoso = next(t for t in scenario.tenants if t.name == "contoso")
    fabrikam = next(t for t in scenario.tenants if t.name == "fabrikam")
    users = {u.user_principal_name: u for u in contoso.users}
    listed = {b.sender_address for b in contoso.blocked}
    assert fabrikam.locale == "fr" and fabrikam.time_zone == "Europe/Paris"
    assert "Global Administrator" in users["ben.walters@contoso.com"].directory_roles
    assert any(u.user_type == "Guest" for u in contoso.users)
    assert not users["erin.old@contoso.com"].account_enabled
    assert users["frank.synced@contoso.com"].on_premises_sync_enabled
    assert "megan.bowen@contoso.com" not in listed
    henry = users["henry.ng@contoso.com"]
    assert "sales@contoso.com" in henry.smtp_addresses and henry.mail not in listed


def test_jira_reporters_exist_in_their_tenants(sandbox: Sandbox) -> None:
    assert sandbox.jira is not None
    checked = 0
    for issue in sandbox.jira.issues.values():
        email = sandbox.jira.users[issue.reporter].email
        tenant = sandbox.microsoft.tenant(email.split("@")[1])
        if tenant is not None:
            assert tenant.user(email) is not None, email
            checked += 1
    assert checked >= 4


def test_bad_scenario_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[tenants]]\nname = "x"\ntenant_id = "t"\ndomains = ["x.com"]\n'
        '[tenants.app]\nclient_id = "c"\nservice_principal_id = "s"\n'
        'directory_roles = ["Supreme Leader"]\n'
    )
    with pytest.raises(ScenarioError, match="Supreme Leader"):
        load_scenario(path)


def test_tls_files_are_reused_while_valid(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path)
    ca, server = first.ca_cert.read_bytes(), first.server_cert.read_bytes()
    again = ensure_tls(tmp_path)
    assert again.ca_cert.read_bytes() == ca and again.server_cert.read_bytes() == server
    first.server_cert.unlink()
    renewed = ensure_tls(tmp_path)
    assert renewed.ca_cert.read_bytes() == ca
    assert renewed.server_cert.read_bytes() != server


def test_connections_are_kept_alive_and_cut_when_the_sandbox_stops(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    """Real services keep connections open (one TLS handshake per connection); a stopped sandbox answers none."""
    box = make_sandbox()
    session = requests.Session()
    session.trust_env = False
    session.verify = str(box.ca_path)
    url = f"{box.graph_url}/v1.0/users"
    first = session.post(f"{box.authority_host}/unknown-tenant/oauth2/v2.0/token", data={"a": "b" * 5000})
    assert first.status_code >= 400 and first.headers.get("Connection", "").lower() != "close"
    for _ in range(3):  # a body the emulator ignores is read off the connection, not left for the next request
        answer = session.get(url)
        assert answer.status_code == 401
        assert answer.headers.get("Connection", "").lower() != "close"
    pools = session.get_adapter(url).poolmanager.pools
    opened = {pools[key].port: pools[key].num_connections for key in pools.keys()}  # noqa: SIM118 - not iterable
    assert opened == {int(box.authority_host.rsplit(":", 1)[1]): 1, int(box.graph_url.rsplit(":", 1)[1]): 1}
    box.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url, timeout=5)
