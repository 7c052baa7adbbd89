from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from mailunblock.plugin.cli import main
from mailunblock.sandbox.server import Sandbox

EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)


@pytest.fixture
def sandbox_config(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    started: list[Sandbox] = []

    def start(revoke: tuple[tuple[str, str], ...] = (), **overrides: object) -> Path:
        box = Sandbox("default", tmp_path / f"sandbox{len(started)}", ports=EPHEMERAL, revoke=revoke).start()
        started.append(box)
        return box.write_config(tmp_path / f"config{len(started)}.toml", **overrides)

    yield start
    for box in started:
        box.stop()


def _doctor(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["doctor", "--config", str(config)])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_all_checks_pass_against_the_sandbox(sandbox_config: Callable[..., Path]) -> None:
    code, output = _doctor(sandbox_config())
    assert code == 0, output
    assert "FAIL" not in output
    for expected in ("jira: reachable and authenticated", "jira: JQL valid", "approver group 'helpdesk-agents'",
                     "jira: resolve transition", "jira: deployment", "approver membership readable",
                     "tenant contoso: token for Graph",
                     "tenant fabrikam: permission Exchange.ManageAsApp",
                     "tenant fabrikam: Exchange admin API (Get-BlockedSenderAddress)",
                     "tenant contoso: Entra roles of the app (Exchange)"):
        assert any(line.startswith("PASS") and expected in line for line in output.splitlines()), expected
    assert output.rstrip().endswith("all checks passed")


@pytest.mark.parametrize(
    ("tenant", "permission"),
    [("contoso", "User.RevokeSessions.All"), ("fabrikam", "User-PasswordProfile.ReadWrite.All"),
     ("contoso", "Exchange.ManageAsApp")],
)
def test_a_missing_app_permission_is_named_with_its_fix(
    sandbox_config: Callable[..., Path], tenant: str, permission: str
) -> None:
    code, output = _doctor(sandbox_config(revoke=((tenant, permission),)))
    assert code == 1
    failures = [line for line in output.splitlines() if line.startswith("FAIL")]
    assert failures, output
    assert any(f"tenant {tenant}" in line and permission in line for line in failures), output
    assert f"Application permissions > {permission}, then 'Grant admin consent'" in output


def test_a_missing_entra_role_is_named(sandbox_config: Callable[..., Path]) -> None:
    code, output = _doctor(sandbox_config(revoke=(("contoso", "User Administrator"),)))
    assert code == 1
    assert "FAIL  tenant contoso: Entra roles of the app (password reset): MISSING role User Administrator" in output


def test_wrong_credentials_fail_without_leaking_them(sandbox_config: Callable[..., Path], tmp_path: Path) -> None:
    config = sandbox_config(credential={"fabrikam": "secret"})
    secret_file = next(tmp_path.glob("sandbox0/**/fabrikam/client_secret*"))
    real_secret = secret_file.read_text().strip()
    secret_file.write_text("not-the-secret-" + real_secret[::-1])
    code, output = _doctor(config)
    assert code == 1
    assert "FAIL  tenant fabrikam: token for Graph" in output and "AADSTS7000215" in output
    assert real_secret not in output and "not-the-secret" not in output
    assert "PASS  tenant contoso: token for Graph" in output


def test_unreachable_jira_is_a_clear_failure(sandbox_config: Callable[..., Path]) -> None:
    code, output = _doctor(sandbox_config(jira={"url": "https://127.0.0.1:9"}))
    assert code == 1
    assert "FAIL  jira: reachable and authenticated" in output
    assert "check jira.url" in output
