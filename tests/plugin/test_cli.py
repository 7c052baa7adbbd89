from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from mailunblock.plugin.cli import main
from mailunblock.sandbox.server import Sandbox

EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Sandbox, Path]]:
    with Sandbox("default", tmp_path / "sb", ports=EPHEMERAL) as box:
        config = box.write_config(tmp_path / "mailunblock.toml", jira={"affected_account_field": "customfield_10050"},
                                  store={"data_dir": str(tmp_path / "data")})
        yield box, config


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_run_once_status_and_reveal(sandbox: tuple[Sandbox, Path]) -> None:
    box, config = sandbox
    code, output = _cli("run", "--once", "--config", str(config))
    assert code == 0, output
    assert "cycle: 5 ticket(s) selected" in output
    assert "HELP-1: awaiting_approval" in output and "HELP-5: refused" in output

    box.jira.add_comment("HELP-1", "alice", "/approve")
    code, output = _cli("run", "--once", "--config", str(config))
    assert "HELP-1: waiting_for_send" in output

    code, output = _cli("status", "--config", str(config))
    assert code == 0
    assert any(line.startswith("HELP-1") and "waiting_for_send" in line for line in output.splitlines())

    code, output = _cli("reveal", "help-1", "--config", str(config))
    assert code == 0
    password = output.strip().splitlines()[-1]
    assert len(password) >= 20
    assert all(password not in c.body for c in box.jira.comments("HELP-1"))
    code, output = _cli("reveal", "HELP-1", "--config", str(config))
    assert code == 1 and "already revealed" in output and password not in output


def test_run_once_with_jira_down_fails_the_cycle_cleanly(sandbox: tuple[Sandbox, Path], tmp_path: Path) -> None:
    _, config = sandbox
    broken = tmp_path / "broken.toml"
    jira_url = re.search(r'url = "(https://127\.0\.0\.1:\d+)"', config.read_text())
    assert jira_url
    text = config.read_text().replace(jira_url.group(1), "https://127.0.0.1:9")
    broken.write_text(text + "\n[http]\nmax_retries = 0\n")
    code, output = _cli("run", "--once", "--config", str(broken))
    assert code == 1
    assert "FAILED: ticket search failed" in output and "retrying next cycle" in output


def test_unknown_config_is_a_clear_error(tmp_path: Path) -> None:
    code, output = _cli("run", "--once", "--config", str(tmp_path / "nope.toml"))
    assert code == 1 and "cannot read configuration" in output


def test_sandbox_option_validation() -> None:
    code, output = _cli("sandbox", "--without-permission", "contoso")
    assert code == 2 and "expected TENANT:PERMISSION" in output
