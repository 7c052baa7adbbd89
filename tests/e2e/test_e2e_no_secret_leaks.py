"""No secret leaves where it belongs: the new password, access tokens, client secrets, the Jira token.

A full remediation, including a failed password reset that is retried with the vaulted password and a
reveal at the end, runs with every logger at DEBUG. Then the secrets are searched for in every Jira
comment and notification, every log record, every request the emulators received, and the state store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from e2e_world import World
from mailunblock.connectors.identity import TokenProvider
from mailunblock.plugin.cli import main
from mailunblock.plugin.logs import JsonFormatter
from mailunblock.sandbox.core import FaultRule
from mailunblock.workflows.markup import wiki_literal
from mailunblock.workflows.state import Stage

ACCOUNT = "adele.vance@contoso.com"


@pytest.fixture
def issued_tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Every access token a token provider hands out during the test."""
    tokens: set[str] = set()
    original = TokenProvider.token

    def spy(self: TokenProvider, resource_url: str) -> str:
        token = original(self, resource_url)
        tokens.add(token)
        return token

    monkeypatch.setattr(TokenProvider, "token", spy)
    yield tokens


def credential_secrets(world: World) -> dict[str, str]:
    """The app secrets, certificate passphrases and the Jira API token the sandbox generated."""
    files: dict[str, Path] = {"jira api token": world.sandbox.layout.jira_token}
    for tenant in world.sandbox.microsoft:
        credentials = tenant.credentials.files
        files[f"{tenant.spec.name} client secret"] = credentials.client_secret
        files[f"{tenant.spec.name} pfx passphrase"] = credentials.pfx_passphrase
    secrets = {name: path.read_text(encoding="utf-8").strip() for name, path in files.items() if path.exists()}
    assert "jira api token" in secrets and "fabrikam client secret" in secrets
    return secrets


def everything_jira_holds(world: World) -> str:
    """Every comment (body and properties) and every notification email, of every ticket."""
    parts: list[str] = []
    for issue in list(world.jira.issues.values()):
        for comment in world.comments(issue.key):
            # Both as stored and as Jira shows it: escaping would hide a leaked password's symbols.
            parts += [comment.body, wiki_literal(comment.body), json.dumps(comment.properties)]
        parts += [f"{n.subject}\n{n.body}\n{wiki_literal(n.body)}" for n in world.jira.notifications(issue.key)]
        parts.append(json.dumps(world.jira.properties(issue.key)))
    return "\n".join(parts)


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record, formatted with its arguments and traceback, as text and as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    as_json = logging.StreamHandler()
    as_json.setFormatter(JsonFormatter())  # ``--log-format json``
    return "\n".join([caplog.text, *(handler.format(r) for r in caplog.records),
                      *(as_json.format(r) for r in caplog.records)])


def everything_sent(world: World) -> str:
    """Path, query, headers and body of every request the emulators received."""
    return "\n".join(
        json.dumps([c.path, c.query, c.headers, c.body], default=str) for c in world.sandbox.calls
    )


def audit_export(world: World) -> str:
    """What ``mailunblock audit --format jsonl`` prints for the whole run."""
    result = CliRunner().invoke(main, ["audit", "--config", str(world.config_path), "--since", "2000-01-01"])
    assert result.exit_code == 0, result.output
    return result.output


def test_no_secret_reaches_jira_logs_requests_or_the_state_store(
    shared_world: World, caplog: pytest.LogCaptureFixture, issued_tokens: set[str]
) -> None:
    world = shared_world
    caplog.set_level(logging.DEBUG)
    world.restart()  # connectors built with the spy and the DEBUG level in place
    key = world.new_ticket(ACCOUNT)
    world.cycle()
    world.approve(key)
    world.sandbox.faults.add(FaultRule("graph", status=503, method="PATCH"))  # the reset fails once
    world.cycle()
    assert world.state(key).stage is Stage.APPROVED and world.state(key).password_intent_at is not None
    world.advance(timedelta(minutes=10))
    world.cycle()
    assert world.finish(key).stage is Stage.RESOLVED
    password = world.runtime.vault.reveal(key, "test")
    assert len(password) == world.runtime.config.policy.password_length
    patches = [c for c in world.sandbox.calls.records("graph") if c.method == "PATCH"]
    assert [c.status for c in patches] == [503, 204]

    places: dict[str, Any] = {
        "jira": everything_jira_holds(world),
        "logs": everything_logged(caplog),
        "requests": everything_sent(world),
        "state store": json.dumps([s.to_dict() for s in world.runtime.store.all_states()]),
        "audit export": audit_export(world),
    }
    databases = sorted(world.runtime.config.data_dir.glob("mailunblock.db*"))  # with -wal / -journal
    assert databases
    places["database file"] = "\n".join(path.read_bytes().decode("latin-1") for path in databases)
    # The search must look at real material: debug records, the reset request, the ETA comment.
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert "passwordProfile" in places["requests"]
    assert "has been secured and unblocked" in places["jira"]
    assert '"action": "reset-password"' in places["audit export"]

    assert issued_tokens, "the spy saw no access token"
    secrets = {"password": password, **credential_secrets(world)}
    secrets.update({f"access token {i}": token for i, token in enumerate(sorted(issued_tokens))})
    leaks = [f"{name} in {where}" for name, secret in secrets.items()
             for where, text in places.items() if secret in text]
    assert leaks == []
