"""The sandbox: Jira, identity, Graph and Exchange EMULATORS on loopback TLS, plus a control API.

EMULATOR CODE — not Microsoft, not Atlassian. ``Sandbox`` loads a scenario, generates the CA, the
server certificate and the app credentials into a state directory, serves every emulator from a
background thread, and writes a mailunblock configuration that points at them. ``serve`` runs it in
the foreground for newcomers and the demo.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from flask import Flask
from mailunblock.sandbox.control import create_control_app
from mailunblock.sandbox.core import CallLog, Faults, SandboxClock, SandboxContext
from mailunblock.sandbox.exchange import create_exchange_app
from mailunblock.sandbox.graph import create_graph_app
from mailunblock.sandbox.identity import create_identity_app
from mailunblock.sandbox.scenario import (
    CredentialFiles,
    MicrosoftState,
    Scenario,
    load_scenario,
    provision_credentials,
)
from mailunblock.sandbox.tls import TlsFiles, ensure_tls

HOST = "127.0.0.1"
DEFAULT_PORTS: Mapping[str, int] = {
    "control": 8440, "jira": 8441, "identity": 8442, "graph": 8443, "exchange": 8444,
}
DEFAULT_STATE_DIR = Path("var/sandbox")
BANNER = "EMULATOR — not Microsoft, not Atlassian"


@dataclass(frozen=True)
class StateLayout:
    """Where the sandbox keeps its generated files under the state directory."""

    root: Path

    @property
    def tls_dir(self) -> Path:
        """CA and server certificate."""
        return self.root / "tls"

    @property
    def ca_path(self) -> Path:
        """The CA clients must trust."""
        return self.tls_dir / "ca.pem"

    def credentials(self, tenant: str) -> CredentialFiles:
        """The app credential files of one tenant."""
        return CredentialFiles(self.root / "tenants" / tenant)

    @property
    def jira_token(self) -> Path:
        """The Jira bot's API token (Cloud) or personal access token (Data Center)."""
        return self.root / "jira" / "api_token.txt"

    @property
    def data_dir(self) -> Path:
        """The data directory mailunblock uses when run against the sandbox."""
        return self.root / "mailunblock"

    @property
    def config_path(self) -> Path:
        """Where ``serve`` writes the mailunblock configuration."""
        return self.root / "mailunblock.toml"


SERVER_NAME = "mailunblock-sandbox (EMULATOR - not Microsoft, not Atlassian)"


def _quiet(msg: str = "", level: int = 20, traceback: bool = False) -> None:
    """Leave request and connection logging to the call log (a client that hangs up is no error here)."""


def _make_server(port: int, app: Flask, tls: TlsFiles | None, threads: int) -> wsgi.Server:
    """An HTTP/1.1 server that keeps connections alive, as Jira, Entra ID, Graph and Exchange Online do.

    (Werkzeug's development server closes every connection: each call would cost a TCP and TLS handshake
    that the real services do not.) ``threads`` requests are served at once; idle connections wait without
    holding a thread.
    """
    server = wsgi.Server((HOST, port), app, numthreads=threads, server_name=SERVER_NAME, timeout=30,
                         request_queue_size=64)
    server.keep_alive_conn_limit = 4096  # a client's whole connection pool may stay open
    server.expiration_interval = 0.05  # how often the connection loop looks up: stopping waits for it
    server.error_log = _quiet  # type: ignore[method-assign]
    if tls is not None:
        adapter = BuiltinSSLAdapter(str(tls.server_cert), str(tls.server_key))
        adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
        server.ssl_adapter = adapter
    server.prepare()  # binds now: a taken port fails here, and an ephemeral one is known
    return server


def _read_or_create_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        token = ""
    if not token:
        path.parent.mkdir(parents=True, exist_ok=True)
        token = "sbx-jira-" + secrets.token_urlsafe(24)
        path.write_text(token + "\n", encoding="utf-8")
        path.chmod(0o600)
    return token


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Serialise nested tables, arrays of tables and scalars (the subset configs use)."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping) or (
            isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value)
        ):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += f"\n[{name}]\n" + to_toml(value, f"{name}.")
        else:
            for item in value:
                out += f"\n[[{name}]]\n" + to_toml(item, f"{name}.")
    return out


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class SandboxError(Exception):
    """The sandbox cannot start (port taken, unreadable scenario ...); the message says why."""


class Sandbox:
    """Every emulator of a scenario, served on loopback; use as a context manager."""

    def __init__(
        self,
        scenario: str | Path = "default",
        state_dir: Path | str = DEFAULT_STATE_DIR,
        *,
        ports: Mapping[str, int] | None = None,
        speed: float = 1.0,
        start_time: datetime | None = None,
        revoke: Sequence[tuple[str, str]] = (),
        jira_deployment: str | None = None,
        threads: int = 16,
    ) -> None:
        """``threads``: requests each emulator serves at once (each waits out its injected latency)."""
        self.scenario: Scenario = load_scenario(scenario)
        self._threads_per_service = threads
        self._jira_deployment = jira_deployment
        self.layout = StateLayout(Path(state_dir).resolve())
        self._ports = {**DEFAULT_PORTS, **(ports or {})}
        self.tls: TlsFiles = ensure_tls(self.layout.tls_dir)
        self.clock = SandboxClock(start_time, speed)
        self.context = SandboxContext(self.clock, CallLog(), Faults())
        credentials = {
            t.name: provision_credentials(t, self.layout.credentials(t.name).directory)
            for t in self.scenario.tenants
        }
        self.microsoft = MicrosoftState(self.scenario, credentials, self.clock)
        for tenant, permission in revoke:
            try:
                self.microsoft.revoke(tenant, permission)
            except KeyError as exc:
                raise SandboxError(f"cannot remove {permission!r} from {tenant!r}: {exc.args[0]}") from None
        self.jira: Any | None = None
        self._create_jira_app: Any | None = None
        self._load_jira()
        self._servers: dict[str, wsgi.Server] = {}
        self._threads: list[threading.Thread] = []

    def _load_jira(self) -> None:
        try:
            from mailunblock.sandbox.jira import JiraState, create_jira_app, demo_scenario
        except ImportError:
            return
        section = dict(self.scenario.jira) or demo_scenario()
        if self._jira_deployment is not None:  # e.g. the demo service desk on Data Center
            section["deployment"] = self._jira_deployment
        self.jira = JiraState.from_scenario(section, self.clock)
        self.jira.set_bot_token(_read_or_create_token(self.layout.jira_token))
        self._create_jira_app = create_jira_app

    @property
    def calls(self) -> CallLog:
        """Every request the emulators served (secrets redacted)."""
        return self.context.calls

    @property
    def faults(self) -> Faults:
        """Fault injection and latency knobs."""
        return self.context.faults

    @property
    def ca_path(self) -> Path:
        """PEM file of the CA that signed the emulators' certificate."""
        return self.tls.ca_cert

    def _url(self, service: str, scheme: str = "https") -> str:
        server = self._servers.get(service)
        port = server.bind_addr[1] if server else self._ports[service]
        return f"{scheme}://{HOST}:{port}"

    @property
    def jira_url(self) -> str:
        """Base URL of the Jira emulator."""
        return self._url("jira")

    @property
    def authority_host(self) -> str:
        """Base URL of the identity emulator (MSAL authority = this + '/' + tenant id)."""
        return self._url("identity")

    @property
    def graph_url(self) -> str:
        """Base URL of the Graph emulator."""
        return self._url("graph")

    @property
    def exchange_url(self) -> str:
        """Base URL of the Exchange admin API emulator."""
        return self._url("exchange")

    @property
    def control_url(self) -> str:
        """Base URL of the control API (plain HTTP, loopback)."""
        return self._url("control", "http")

    def _apps(self) -> dict[str, Flask]:
        apps = {
            "identity": create_identity_app(self.microsoft, self.context),
            "graph": create_graph_app(self.microsoft, self.context),
            "exchange": create_exchange_app(self.microsoft, self.context),
            "control": create_control_app(self.context, self.microsoft, self.jira),
        }
        if self.jira is not None and self._create_jira_app is not None:
            apps["jira"] = self._create_jira_app(self.jira, self.context)
        return apps

    def start(self) -> Sandbox:
        """Bind every port and serve in background threads."""
        if self._servers:
            return self
        service = ""
        try:
            for service, app in self._apps().items():
                self._servers[service] = _make_server(
                    self._ports[service], app, None if service == "control" else self.tls,
                    self._threads_per_service)
        except OSError:
            self._close_servers()
            raise SandboxError(
                f"the {service} emulator cannot listen on {HOST}:{self._ports[service]} — is another "
                "sandbox (or program) using it? Stop it, or choose other ports."
            ) from None
        urls = self.microsoft.urls
        urls.identity, urls.graph, urls.exchange = (
            self.authority_host, self.graph_url, self.exchange_url
        )
        for service, server in self._servers.items():
            # A short poll interval makes stop() quick (shutdown waits for the loop to notice).
            thread = threading.Thread(target=server.serve, name=f"sandbox-{service}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _close_servers(self) -> None:
        # Each stop closes the listening socket and every connection still open, and waits for its loop
        # and threads: all at once.
        stopping = [threading.Thread(target=server.stop) for server in self._servers.values()]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        self._servers.clear()

    def stop(self) -> None:
        """Stop serving and release the ports."""
        self._close_servers()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def config_data(self, credential: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The mailunblock configuration for this sandbox, as TOML-ready data (absolute paths).

        ``credential`` maps a tenant name to "certificate" or "secret" to override the scenario's
        ``config_credential``.
        """
        jira: dict[str, Any] = {
            "url": self.jira_url,
            "ca_bundle": self.ca_path,
            "approver_groups": list(self.scenario.approver_groups),
            "projects": ["HELP"],
            # The emulated Jira's "Affected account" custom field (a ticket filed for a colleague).
            "affected_account_field": "customfield_10050",
        }
        token_ref = f"file:{self.layout.jira_token}"
        if self.jira is not None and self.jira.deployment == "datacenter":
            jira.update(deployment="datacenter", personal_access_token=token_ref)
        else:
            bot = self.jira.user(self.jira.bot_account).email if self.jira is not None else None
            jira.update(deployment="cloud", email=bot or "mailunblock@sandbox.invalid",
                        api_token=token_ref)
        tenants = []
        for state in self.microsoft:
            spec = state.spec
            files = state.credentials.files
            kind = (credential or {}).get(spec.name, spec.app.config_credential)
            tenant: dict[str, Any] = {
                "name": spec.name,
                "tenant_id": spec.tenant_id,
                "domains": list(spec.domains),
                "client_id": spec.app.client_id,
                # The emulators' URLs; tokens stay for the real resources of the global cloud.
                "cloud": "global",
                "authority_host": self.authority_host,
                "graph_url": self.graph_url,
                "exchange_url": self.exchange_url,
                "ca_bundle": self.ca_path,
                "time_zone": spec.time_zone,
                "locale": spec.locale,
            }
            if kind == "certificate":
                tenant.update(
                    certificate_path=files.pfx,
                    certificate_passphrase=f"file:{files.pfx_passphrase}",
                )
            else:
                tenant["client_secret"] = f"file:{files.client_secret}"
            tenants.append(tenant)
        return {"jira": jira, "tenants": tenants, "store": {"data_dir": self.layout.data_dir}}

    def write_config(
        self, path: Path, *, credential: Mapping[str, str] | None = None, **overrides: Any
    ) -> Path:
        """Write a mailunblock config TOML pointing at this sandbox; sections in ``overrides`` merge."""
        data = _merge(self.config_data(credential), overrides)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# mailunblock configuration for the sandbox ({BANNER}).\n"
            f"# Generated for scenario {self.scenario.name!r}; secrets are file references.\n"
        )
        path.write_text(header + to_toml(data), encoding="utf-8")
        return path

    def banner(self, config_path: Path) -> str:
        """The text ``serve`` prints: what runs where, and which config to use."""
        rule = "=" * 72
        lines = [
            rule,
            f"  mailunblock sandbox — {BANNER}",
            f"  scenario {self.scenario.name!r}, clock {self.clock.now():%Y-%m-%d %H:%M} UTC, "
            f"speed x{self.clock.speed:g}",
            rule,
            f"  Jira       {self.jira_url}" + ("" if self.jira else "  (not available)"),
            f"  identity   {self.authority_host}/<tenant id>",
            f"  Graph      {self.graph_url}",
            f"  Exchange   {self.exchange_url}",
            f"  control    {self.control_url}   (clock, calls, faults)",
            f"  CA         {self.ca_path}",
            "",
            f"  config     {config_path}",
            f"  store      {self.layout.data_dir}   (emptied at every start: the emulated Jira starts afresh)",
            "",
            f"  check      mailunblock doctor --config {shlex.quote(str(config_path))}",
            f"  run        mailunblock run --config {shlex.quote(str(config_path))} --once",
            f"  approve    curl -s -XPOST {self.control_url}/jira/comment -H 'content-type: application/json' "
            """-d '{"key": "HELP-1", "author": "alice", "body": "/approve"}'""",
            f"  time       curl -s -XPOST {self.control_url}/clock/advance -H 'content-type: application/json' "
            """-d '{"hours": 4}'""",
            rule,
        ]
        return "\n".join(lines)

    def serve_forever(self, config_path: Path | None = None) -> None:
        """Start, write the config, print the banner, and block until SIGINT or SIGTERM.

        The handler only appends to a list: a handler that takes a lock (an Event, logging) deadlocks
        when the signal lands while the main thread holds that lock.
        """
        received: list[int] = []
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in stops}
        try:
            with self:
                # The store describes tickets of the previous run's Jira, which this start re-seeds: stale.
                shutil.rmtree(self.layout.data_dir, ignore_errors=True)
                path = self.write_config(config_path or self.layout.config_path)
                print(self.banner(path), flush=True)
                while not received:
                    time.sleep(0.2)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        print(f"mailunblock sandbox stopped (pid {os.getpid()}).", flush=True)


def serve(
    state_dir: Path | str = DEFAULT_STATE_DIR,
    scenario: str | Path = "default",
    ports: Mapping[str, int] | None = None,
    speed: float = 1.0,
    revoke: Sequence[tuple[str, str]] = (),
) -> None:
    """Run the sandbox in the foreground until SIGINT/SIGTERM (the CLI's ``sandbox`` command)."""
    Sandbox(scenario, state_dir, ports=ports, speed=speed, revoke=revoke).serve_forever()
