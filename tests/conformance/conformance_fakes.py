"""The independent conformance fakes (``../shared/conformance``) as a subprocess, and mailunblock pointed at them.

The product is configured only through a TOML file of documented keys, as an operator would write it.
The fakes' clock is frozen and moved together with the product's injected clock, so ETA windows,
propagation delays and verification are exact.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from mailunblock.plugin.config import load_config
from mailunblock.plugin.poller import CycleReport, Poller
from mailunblock.plugin.services import Runtime, build_runtime
from mailunblock.workflows.state import TicketState

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
FAKES = SHARED / "conformance"
SCENARIO = FAKES / "scenarios" / "basic.json"
SPEC = SHARED / "specs" / "jira-cloud-platform-v3.openapi.json"

START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CONTOSO = "6e2c3f0a-8b1d-4c55-9a0e-2f7d1c4b8a11"
FABRIKAM = "b9d4a7e2-3c6f-4e81-8d2a-5a1f0e9c7b22"
CONNECTOR_APP = "0c9f8a4e-1b2d-4f6a-9e3c-7d5b2a1f8e01"
CONNECTOR_SECRET = "fake-secret~Contoso.Connector.0001"
PROBE_APP = "3f1e2d4c-5b6a-4789-8c0d-1e2f3a4b5c02"
PROBE_SECRET = "fake-secret~Readonly.Probe.0003"
BOT_EMAIL = "mailunblock-bot@contoso.com"
BOT_API_TOKEN = "fake-jira-api-token-ATATT3xFfGF0-bot"
BOT_USERNAME = "mailunblock-bot"
BOT_PASSWORD = "fake-dc-password-bot"
BOT_PAT = "fake-dc-pat-MDk4NzY1NDMyMTA6Ym90LXRva2Vu"
SECRETS = (CONNECTOR_SECRET, PROBE_SECRET, BOT_API_TOKEN, BOT_PASSWORD, BOT_PAT)
APPROVER = "sam.agent@contoso.com"
MARKER_PROPERTY = "mailunblock"


def missing_reason() -> str | None:
    """Why the fakes cannot run here, or None."""
    if not (FAKES / "server.py").is_file():
        return f"the conformance fakes are not at {FAKES} (../shared beside the checkout)"
    return None


def _ports_free(base: int, count: int = 4) -> bool:
    for port in range(base, base + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class Fakes:
    """One running ``server.py``: its URLs, control API, call log and state file."""

    def __init__(self, workdir: Path, deployment: str) -> None:
        self.workdir = workdir
        self.deployment = deployment
        self.ca = workdir / "ca.pem"
        self.log = workdir / "calls.jsonl"
        self.state_file = workdir / "state.json"
        self.proc: subprocess.Popen[str] | None = None
        self.urls: dict[str, str] = {}
        self._start()

    def _start(self) -> None:
        rng = random.Random()  # ports only: not the scenario's seed
        for _ in range(20):
            base = rng.randrange(20000, 60000, 4)
            if _ports_free(base) and self._launch(base):
                return
        raise RuntimeError("could not start the conformance fakes on free ports")

    def _launch(self, base: int) -> bool:
        cmd = [sys.executable, str(FAKES / "server.py"), "--port-base", str(base), "--scenario", str(SCENARIO),
               "--state", str(self.state_file), "--ca-out", str(self.ca), "--log", str(self.log),
               "--spec", str(SPEC), "--jira-deployment", self.deployment]
        env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
        proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env)
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                try:
                    info = json.loads(line)
                except ValueError:
                    continue
                if info.get("ready"):
                    self.proc = proc
                    self.urls = {k: str(v) for k, v in info.items() if isinstance(v, str)}
                    return True
            if proc.poll() is not None:
                break
        proc.kill()
        proc.wait()
        return False

    def stop(self) -> None:
        """Stop the fakes (SIGTERM, then SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # ------------------------------------------------------------------ control API

    def control(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Call ``/_control/<path>`` (POST with a body, else GET); fail the test on an error status."""
        url = f"{self.urls['jira']}/_control/{path}"
        if body is None:
            response = requests.get(url, verify=str(self.ca), timeout=30)
        else:
            response = requests.post(url, json=dict(body), verify=str(self.ca), timeout=30)
        assert response.ok, f"control {path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def state(self) -> dict[str, Any]:
        """The fakes' full state snapshot."""
        return dict(self.control("state"))

    def issue(self, key: str) -> dict[str, Any]:
        """One Jira issue as the fakes hold it."""
        return dict(next(i for i in self.state()["jira"]["issues"] if i["key"] == key))

    def calls(self) -> list[dict[str, Any]]:
        """Every logged request so far."""
        if not self.log.exists():
            return []
        with self.log.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def check_calls(self, tickets: int = 0) -> tuple[int, str]:
        """Run ``check_calls.py`` over the call log with every fake secret: (exit code, summary)."""
        args = [sys.executable, str(FAKES / "check_calls.py"), str(self.log), "--tickets", str(tickets)]
        for secret in SECRETS:
            args += ["--secret", secret]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        return done.returncode, done.stdout + done.stderr


@dataclass
class ProductClock:
    """The product's injected clock, moved together with the fakes' frozen clock."""

    fakes: Fakes
    current: datetime = START

    def now(self) -> datetime:
        """The shared fake time."""
        return self.current

    def set(self, when: datetime) -> None:
        """Freeze both clocks at ``when``."""
        self.current = when
        self.fakes.control("clock", {"set": when.isoformat().replace("+00:00", "Z"), "running": False})

    def advance(self, delta: timedelta) -> None:
        """Move both clocks ahead."""
        self.current += delta
        self.fakes.control("clock", {"advance": delta.total_seconds()})

    def advance_seconds(self, seconds: float) -> None:
        """The HTTP layer's ``sleep``: a retry wait moves both clocks instead of blocking the test."""
        self.advance(timedelta(seconds=seconds))


def write_config(
    fakes: Fakes,
    directory: Path,
    *,
    jsm_native_approval: bool = False,
    dc_auth: str = "pat",
    app: str = "connector",
    extra: str = "",
    lease_seconds: float | None = None,
) -> Path:
    """A mailunblock configuration (documented keys only) pointing at the fakes; secrets in files."""
    directory.mkdir(parents=True, exist_ok=True)
    client_id, secret = (CONNECTOR_APP, CONNECTOR_SECRET) if app == "connector" else (PROBE_APP, PROBE_SECRET)
    (directory / "client_secret.txt").write_text(secret, encoding="utf-8")
    ca = fakes.ca.as_posix()
    if fakes.deployment == "cloud":
        (directory / "jira_token.txt").write_text(BOT_API_TOKEN, encoding="utf-8")
        auth = f'email = "{BOT_EMAIL}"\napi_token = "file:jira_token.txt"'
    elif dc_auth == "basic":
        (directory / "jira_password.txt").write_text(BOT_PASSWORD, encoding="utf-8")
        auth = f'username = "{BOT_USERNAME}"\npassword = "file:jira_password.txt"'
    else:
        (directory / "jira_pat.txt").write_text(BOT_PAT, encoding="utf-8")
        auth = 'personal_access_token = "file:jira_pat.txt"'
    tenants = [("contoso", CONTOSO, '["contoso.com"]')]
    if app == "connector":
        tenants.append(("fabrikam", FABRIKAM, '["fabrikam.com", "partners.fabrikam.com"]'))
    tenant_blocks = "\n".join(
        f"""[[tenants]]
name = "{name}"
tenant_id = "{tenant_id}"
domains = {domains}
client_id = "{client_id}"
client_secret = "file:client_secret.txt"
cloud = "global"
authority_host = "{fakes.urls['login']}"
graph_url = "{fakes.urls['graph'].removesuffix('/v1.0')}"
exchange_url = "{fakes.urls['exchange']}"
ca_bundle = "{ca}"
"""
        for name, tenant_id, domains in tenants
    )
    text = f"""# mailunblock pointed at the conformance fakes (every secret here is fake)
[jira]
url = "{fakes.urls['jira']}"
deployment = "{fakes.deployment}"
{auth}
ca_bundle = "{ca}"
approver_groups = ["helpdesk-agents"]
projects = ["HELP"]
jsm_native_approval = {str(jsm_native_approval).lower()}

{tenant_blocks}
[store]
data_dir = "data"
{f"lease_seconds = {lease_seconds}" if lease_seconds else ""}

[http]
max_retries = 1
max_retry_wait_seconds = 1
{extra}
"""
    path = directory / "mailunblock.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Product:
    """mailunblock built from its configuration file, on the shared fake clock."""

    config_path: Path
    clock: ProductClock
    runtime: Runtime = field(init=False)
    poller: Poller = field(init=False)

    def __post_init__(self) -> None:
        self.runtime = build_runtime(load_config(self.config_path), self.clock)
        self.poller = self.runtime.poller

    def cycle(self) -> CycleReport:
        """One poller cycle; fails the test when it reports an error."""
        report = self.poller.run_cycle()
        assert report.ok, f"cycle failed: {report.error or report.failed}"
        return report

    def state(self, key: str) -> TicketState | None:
        """The stored remediation state of a ticket."""
        return self.runtime.store.load(key)

    def close(self) -> None:
        """Release the state store."""
        self.runtime.store.engine.dispose()


def comments(fakes: Fakes, key: str) -> list[dict[str, Any]]:
    """The ticket's comments as the fakes store them."""
    return list(fakes.issue(key).get("comments") or [])


def marker_of(comment: Mapping[str, Any]) -> str:
    """The mailunblock marker name of a stored comment ("" when it has none)."""
    props = comment.get("properties") or {}
    if isinstance(props, list):
        props = {p.get("key"): p.get("value") for p in props if isinstance(p, dict)}
    value = props.get(MARKER_PROPERTY)
    marker = str(value.get("marker", "")) if isinstance(value, dict) else ""
    return marker.rsplit(":", 1)[-1] if marker.count(":") >= 2 else marker


def iter_bot_comments(fakes: Fakes, key: str) -> Iterator[dict[str, Any]]:
    """The comments mailunblock posted on a ticket (those carrying its marker)."""
    return (c for c in comments(fakes, key) if marker_of(c))
