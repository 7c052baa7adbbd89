"""Connector tests replay vcrpy cassettes recorded against the sandbox emulators.

Replay (the default, ``--record-mode=none`` from pyproject): no server runs, every request must match a
recorded one on method + path + query + body (host and port are ignored, so cassettes recorded on any
port replay). Re-record after changing a connector:

    .venv/bin/pytest tests/connectors --record-mode=rewrite

Any record mode other than ``none`` starts a fresh ``mailunblock.sandbox.server.Sandbox`` on ephemeral
loopback ports for each test. Before anything is written, authorization headers, cookies, client
secrets, client assertions, passwords and access-token signatures are redacted (``test_cassettes.py``
scans every cassette to prove it).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from mailunblock.connectors.http import HttpPolicy, build_session
from mailunblock.connectors.identity import TokenProvider
from mailunblock.sandbox.core import FaultRule
from mailunblock.sandbox.scenario import load_scenario

REDACTED = "***"
SIGNATURE_REDACTED = "REDACTED"  # valid base64url, so a recorded token still decodes
SECRET_FIELDS = frozenset(
    {"client_secret", "client_assertion", "password", "access_token", "refresh_token", "id_token",
     "passphrase", "api_token"}
)
_SANDBOX_ORIGIN = re.compile(r"https://127\.0\.0\.1:\d+")
_JWT = re.compile(r"^(eyJ[\w-]+\.eyJ[\w-]+)\.[\w-]+$")
REPLAY_ORIGIN = "https://127.0.0.1:9"  # never contacted: vcrpy answers every request in replay


def _normalise(text: str) -> str:
    return _SANDBOX_ORIGIN.sub("https://sandbox", text)


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (_redact_token(v) if k == "access_token" else REDACTED)
            if k in SECRET_FIELDS else _redact_json(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return value


def _redact_token(token: Any) -> str:
    """Keep a JWT's header and claims (the doctor reads them) but never its signature."""
    match = _JWT.match(str(token))
    return f"{match.group(1)}.{SIGNATURE_REDACTED}" if match else REDACTED


def _redact_body(body: bytes | str | None, content_type: str) -> bytes | str | None:
    if not body:
        return body
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    try:
        redacted = json.dumps(_redact_json(json.loads(text)), sort_keys=True)
    except ValueError:
        if "=" not in text or "form" not in content_type:
            return _normalise(text).encode()
        pairs = [(k, REDACTED if k in SECRET_FIELDS else _normalise(v)) for k, v in parse_qsl(text)]
        redacted = urlencode(pairs)
    return _normalise(redacted).encode()


def redact_request(request: Any) -> Any:
    """Redact secrets in a request body and drop the sandbox port from it (vcrpy hook)."""
    content_type = str(request.headers.get("Content-Type", ""))
    request.body = _redact_body(request.body, content_type)
    return request


def redact_response(response: dict[str, Any]) -> dict[str, Any]:
    """Redact tokens in a response body and drop cookies (vcrpy hook)."""
    headers = response.get("headers", {})
    for name in list(headers):
        if name.lower() == "set-cookie":
            del headers[name]
    body = response.get("body", {})
    content = body.get("string")
    if content:
        content_type = " ".join(
            v for k, vs in headers.items() if k.lower() == "content-type" for v in vs
        )
        if "json" in content_type:
            body["string"] = _redact_body(content, content_type)
    return response


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    """pytest-recording configuration shared by every connector test."""
    return {
        "filter_headers": ["authorization", "cookie", "x-anchormailbox"],
        "before_record_request": redact_request,
        "before_record_response": redact_response,
        "match_on": ["method", "path", "query", "body"],
        "decode_compressed_response": True,
    }


class SleepingClock:
    """Real time plus every wait the HTTP policy asked for: a throttle gate opens after a recorded sleep."""

    def __init__(self, sleeps: list[float]) -> None:
        self.sleeps = sleeps
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds


@dataclass
class Env:
    """Where the services are and how to authenticate: a live sandbox (recording) or stand-ins."""

    ca_bundle: str
    authority_host: str
    graph_url: str
    exchange_url: str
    jira_url: str
    tenant_id: str
    client_id: str
    sp_object_id: str
    client_secret: str
    pfx_path: str
    pfx_passphrase: str
    jira_email: str
    jira_token: str
    sandbox: Any = None
    sleeps: list[float] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """True while recording against the sandbox."""
        return self.sandbox is not None

    def fault(self, rule: FaultRule) -> None:
        """Inject a fault while recording (the cassette replays its effect afterwards)."""
        if self.sandbox is not None:
            self.sandbox.faults.add(rule)

    def policy(self, **kwargs: Any) -> HttpPolicy:
        """The HTTP policy for this environment; retry waits are recorded and move its clock, never slept."""
        kwargs.setdefault("timeout", 5)
        clock = SleepingClock(self.sleeps)
        return HttpPolicy(ca_bundle=self.ca_bundle, sleep=clock.sleep, clock=clock, **kwargs)

    def tokens(self, *, certificate: bool = True, policy: HttpPolicy | None = None) -> TokenProvider:
        """A token provider for the first tenant."""
        policy = policy or self.policy()
        credential: dict[str, str] = (
            {"certificate_path": self.pfx_path, "certificate_passphrase": self.pfx_passphrase}
            if certificate else {"client_secret": self.client_secret}
        )
        return TokenProvider(
            tenant_id=self.tenant_id, client_id=self.client_id, session=build_session(policy),
            policy=policy, authority_host=self.authority_host, **credential,
        )


def _stand_in_pfx(directory: Path) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "replay")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now.replace(year=now.year + 1))
        .sign(key, hashes.SHA256())
    )
    passphrase = base64.urlsafe_b64encode(b"replay-passphrase").decode()
    blob = pkcs12.serialize_key_and_certificates(
        b"replay", key, cert, None, serialization.BestAvailableEncryption(passphrase.encode())
    )
    path = directory / "replay.pfx"
    path.write_bytes(blob)
    return str(path), passphrase


@pytest.fixture(scope="session")
def scenario() -> Any:
    """The default sandbox scenario (read from its file; no server needed)."""
    return load_scenario("default")


@pytest.fixture(scope="session")
def sandbox_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state directory for every recording sandbox (CA and credentials are generated once)."""
    return tmp_path_factory.mktemp("sandbox")


def _environment(
    request: pytest.FixtureRequest, scenario: Any, state_dir: Path, tmp_path: Path, jira_deployment: str
) -> Iterator[Env]:
    """Recording: a fresh sandbox (Jira Cloud or Data Center). Replay: stand-in URLs and credentials."""
    tenant = scenario.tenants[0]
    record_mode = request.config.getoption("--record-mode", default="none")
    if record_mode == "none":
        pfx, passphrase = _stand_in_pfx(tmp_path)
        yield Env(
            ca_bundle=certifi.where(), authority_host=REPLAY_ORIGIN, graph_url=REPLAY_ORIGIN,
            exchange_url=REPLAY_ORIGIN, jira_url=REPLAY_ORIGIN, tenant_id=tenant.tenant_id,
            client_id=tenant.app.client_id, sp_object_id=tenant.app.service_principal_id,
            client_secret="replay-secret", pfx_path=pfx, pfx_passphrase=passphrase,
            jira_email="mailunblock@replay.invalid", jira_token="replay-token",
        )
        return
    from mailunblock.sandbox.server import Sandbox

    ports = dict.fromkeys(("control", "jira", "identity", "graph", "exchange"), 0)
    with Sandbox("default", state_dir, ports=ports, jira_deployment=jira_deployment) as sandbox:
        files = sandbox.layout.credentials(tenant.name)
        jira = sandbox.config_data()["jira"]
        yield Env(
            ca_bundle=str(sandbox.ca_path), authority_host=sandbox.authority_host,
            graph_url=sandbox.graph_url, exchange_url=sandbox.exchange_url,
            jira_url=sandbox.jira_url, tenant_id=tenant.tenant_id, client_id=tenant.app.client_id,
            sp_object_id=tenant.app.service_principal_id,
            client_secret=files.client_secret.read_text(encoding="utf-8").strip(),
            pfx_path=str(files.pfx),
            pfx_passphrase=files.pfx_passphrase.read_text(encoding="utf-8").strip(),
            jira_email=jira.get("email", ""), jira_token=sandbox.layout.jira_token.read_text().strip(),
            sandbox=sandbox,
        )


@pytest.fixture
def env(
    request: pytest.FixtureRequest, scenario: Any, sandbox_state_dir: Path, tmp_path: Path
) -> Iterator[Env]:
    """Recording: a fresh sandbox per test (Jira Cloud). Replay: stand-in URLs and credentials."""
    yield from _environment(request, scenario, sandbox_state_dir, tmp_path, "cloud")


@pytest.fixture
def dc_env(
    request: pytest.FixtureRequest, scenario: Any, sandbox_state_dir: Path, tmp_path: Path
) -> Iterator[Env]:
    """Like ``env``, with the Jira emulator in Data Center mode (``jira_token`` is the bot's PAT)."""
    yield from _environment(request, scenario, sandbox_state_dir, tmp_path, "datacenter")
