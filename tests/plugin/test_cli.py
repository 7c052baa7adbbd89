from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from mailunblock.plugin.cli import main
from mailunblock.sandbox.core import FaultRule
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
    assert "FAILED: Jira could not be searched" in output and "retrying next cycle" in output
    assert output.strip().splitlines()[-1].startswith("cycle FAILED: Jira could not be searched: jira: ")


def test_run_once_exits_non_zero_when_a_tenant_cannot_be_reached(
    sandbox: tuple[Sandbox, Path], tmp_path: Path
) -> None:
    box, config = sandbox
    config.write_text(config.read_text() + "\n[http]\nmax_retries = 0\n")
    box.faults.add(FaultRule("graph", status=503, count=1000))
    code, output = _cli("run", "--once", "--config", str(config))
    assert code == 1, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("cycle FAILED: ") and "ticket(s) failed: HELP-" in last
    assert "tenant(s) not reached: graph (tenant not known yet)" in last  # triage could not look anyone up


def test_unknown_config_is_a_clear_error(tmp_path: Path) -> None:
    code, output = _cli("run", "--once", "--config", str(tmp_path / "nope.toml"))
    assert code == 1 and "cannot read configuration" in output


def test_sandbox_option_validation() -> None:
    code, output = _cli("sandbox", "--without-permission", "contoso")
    assert code == 2 and "expected TENANT:PERMISSION" in output


def test_dry_run_reads_for_real_and_writes_nothing(sandbox: tuple[Sandbox, Path]) -> None:
    box, config = sandbox
    box.jira.add_comment("HELP-1", "alice", "/approve")  # before the plan: ignored, and said so
    before = {key: len(box.jira.comments(key)) for key in ("HELP-1", "HELP-2", "HELP-4")}
    code, output = _cli("run", "--dry-run", "--config", str(config))
    assert code == 0, output
    assert output.startswith("DRY RUN")
    assert "HELP-1: would post PUBLIC comment (emailed to the reporter)" in output
    assert "HELP-1: would post internal note: mailunblock — remediation plan" in output
    assert "HELP-4: would post internal note: mailunblock — not handled automatically" in output
    assert {key: len(box.jira.comments(key)) for key in before} == before
    # A Graph JSON batch is judged by its requests (logged one by one), not by its envelope's POST.
    writes = [c for c in box.calls.records() if c.method in ("POST", "PUT", "PATCH", "DELETE")
              and c.service in ("jira", "graph") and "search" not in c.path and not c.path.endswith("/$batch")]
    assert writes == []
    assert box.microsoft.reset_count("contoso", "adele.vance@contoso.com") == 0
    code, output = _cli("status", "--config", str(config))
    assert "no tickets yet" in output  # the real store was not touched


def test_dry_run_of_an_approved_ticket_describes_the_remediation(sandbox: tuple[Sandbox, Path]) -> None:
    box, config = sandbox
    assert _cli("run", "--once", "--config", str(config))[0] == 0
    box.jira.add_comment("HELP-1", "alice", "/approve")
    code, output = _cli("run", "--dry-run", "--config", str(config))
    assert code == 0, output
    assert "tenant contoso: would reset the password of user" in output
    assert "tenant contoso: would revoke the sign-in sessions" in output
    assert "tenant contoso: would remove adele.vance@contoso.com from the Restricted users list" in output
    assert box.microsoft.reset_count("contoso", "adele.vance@contoso.com") == 0
    assert box.microsoft.is_listed("contoso", "adele.vance@contoso.com")
    code, output = _cli("status", "--config", str(config))
    assert any(line.startswith("HELP-1") and "awaiting_approval" in line for line in output.splitlines())


def test_sandbox_startup_problems_are_one_line_errors(tmp_path: Path) -> None:
    code, output = _cli("sandbox", "--state-dir", str(tmp_path), "--scenario", str(tmp_path / "nope.toml"))
    assert code == 1 and "cannot read scenario" in output
    code, output = _cli("sandbox", "--state-dir", str(tmp_path), "--without-permission", "contoso:Nope")
    assert code == 1 and "has no permission or role 'Nope'" in output


def test_run_once_leaves_a_ticket_another_mailunblock_works_on_alone(
    sandbox: tuple[Sandbox, Path],
) -> None:
    from mailunblock.plugin.config import load_config
    from mailunblock.plugin.store import StateStore, ticket_claim

    box, config = sandbox
    other = StateStore.from_url(load_config(config).database_url)  # another replica, working on HELP-1
    assert other.claim(ticket_claim("HELP-1"))
    code, output = _cli("run", "--once", "--config", str(config))
    assert code == 0 and "HELP-1: another mailunblock is working on it" in output
    assert box.jira.comments("HELP-1") == []
    assert box.jira.comments("HELP-2")  # the others are worked on


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ('url = "env:MU_DATABASE_URL"', "Connection refused"),
        ('url = "mysql://db.example/x"', "No module named"),
        ('url = "not a url"', "not a valid SQLAlchemy URL"),
        ('data_dir = "/proc/mailunblock"', "/proc/mailunblock"),
    ],
)
def test_a_state_store_that_cannot_be_opened_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, expected: str
) -> None:
    monkeypatch.setenv("T", "token")
    monkeypatch.setenv("S", "secret")
    monkeypatch.setenv("MU_DATABASE_URL", "postgresql+psycopg://mailunblock:s3cret-pw@127.0.0.1:1/nope")
    config = tmp_path / "c.toml"
    config.write_text(
        '[jira]\nurl = "https://127.0.0.1:9"\nemail = "bot@example.com"\napi_token = "env:T"\n'
        'approver_groups = ["helpdesk"]\n\n[[tenants]]\nname = "contoso"\ntenant_id = "t"\n'
        'domains = ["contoso.com"]\nclient_id = "c"\nclient_secret = "env:S"\n\n'
        f"[store]\n{store}\n"
    )
    for command in (("status",), ("run", "--once"), ("reveal", "HELP-1")):
        result = CliRunner().invoke(main, [*command, "--config", str(config)])
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
        assert result.output.startswith("Error: state store") and expected in result.output
        assert len(result.output.strip().splitlines()) == 1 and "s3cret-pw" not in result.output


def test_status_and_reveal_need_only_the_store_not_the_service_secrets(
    sandbox: tuple[Sandbox, Path], tmp_path: Path
) -> None:
    _, config = sandbox
    code, output = _cli("run", "--once", "--config", str(config))
    assert code == 0, output
    # An operator's shell on the host rarely has the service's environment (Jira token, client secrets).
    offline = tmp_path / "offline.toml"
    offline.write_text(re.sub(r'"file:[^"]*(api_token|client_secret|passphrase)[^"]*"', '"env:UNSET_IN_THIS_SHELL"',
                              config.read_text()))
    assert "UNSET_IN_THIS_SHELL" in offline.read_text()
    code, output = _cli("status", "--config", str(offline))
    assert code == 0 and "HELP-1" in output, output
    code, output = _cli("reveal", "HELP-1", "--config", str(offline))
    assert code == 1 and "no password is stored for HELP-1" in output, output


def _local_config(tmp_path: Path, store: str) -> Path:
    config = tmp_path / "local.toml"
    config.write_text(
        '[jira]\nurl = "https://127.0.0.1:9"\nemail = "bot@example.com"\napi_token = "env:T"\n'
        'approver_groups = ["helpdesk"]\n\n[[tenants]]\nname = "contoso"\ntenant_id = "t"\n'
        'domains = ["contoso.com"]\nclient_id = "c"\nclient_secret = "env:S"\n\n'
        f"[store]\n{store}\n"
    )
    return config


@pytest.mark.parametrize("command", [("status",), ("reveal", "HELP-1"), ("config", "check")])
def test_read_only_commands_create_no_store_folder_or_vault_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv("T", "token")
    monkeypatch.setenv("S", "secret")
    data = tmp_path / "missing" / "data"
    config = _local_config(tmp_path, f'data_dir = "{data}"')
    result = CliRunner().invoke(main, [*command, "--config", str(config)])
    assert not (tmp_path / "missing").exists(), "a folder, database or key was created"
    if command != ("config", "check"):
        assert result.exit_code == 1
        assert result.output.startswith("Error: state store: the data folder") and str(data) in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_status_on_a_folder_without_a_store_says_so_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T", "token")
    monkeypatch.setenv("S", "secret")
    data = tmp_path / "data"
    data.mkdir()
    config = _local_config(tmp_path, f'data_dir = "{data}"')
    for command in (("status",), ("reveal", "HELP-1")):
        result = CliRunner().invoke(main, [*command, "--config", str(config)])
        assert result.exit_code == 1 and "no state store at" in result.output and "data_dir is wrong" in result.output
    assert list(data.iterdir()) == []


def test_config_check_reports_a_data_dir_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T", "token")
    monkeypatch.setenv("S", "secret")
    (tmp_path / "afile").write_text("x")
    config = _local_config(tmp_path, f'data_dir = "{tmp_path / "afile"}"')
    result = CliRunner().invoke(main, ["config", "check", "--config", str(config)])
    assert result.exit_code == 1 and "store.data_dir" in result.output and "is not a folder" in result.output


def test_reveal_finds_no_vault_key_without_creating_one(sandbox: tuple[Sandbox, Path], tmp_path: Path) -> None:
    _, config = sandbox
    assert _cli("run", "--once", "--config", str(config))[0] == 0
    key = tmp_path / "data" / "vault.key"
    key.unlink()
    code, output = _cli("reveal", "HELP-1", "--config", str(config))
    assert code == 1 and "no vault key at" in output and not key.exists()


def test_run_once_notes_point_to_reveal_not_to_an_unserved_link(sandbox: tuple[Sandbox, Path]) -> None:
    box, config = sandbox
    config.write_text(config.read_text() + '\n[web]\nenabled = true\nlisten = "127.0.0.1:9"\n')
    assert _cli("run", "--once", "--config", str(config))[0] == 0
    box.jira.add_comment("HELP-1", "alice", "/approve")
    _cli("run", "--once", "--config", str(config))
    notes = [c.body for c in box.jira.comments("HELP-1") if "mailunblock reveal HELP-1" in c.body]
    assert notes, "the summary tells how to get the password"
    assert all("/reveal/" not in body and "127.0.0.1:9" not in body for body in notes)


def test_a_production_install_runs_without_flask_or_the_jira_package() -> None:
    import subprocess
    import sys
    from importlib.metadata import requires

    required = [r for r in requires("mailunblock") or [] if "extra ==" not in r]
    assert not [r for r in required if r.lower().startswith(("flask", "jira"))], required
    blocked = "import sys; sys.modules['flask'] = None; sys.modules['jira'] = None; "  # import fails
    run_help = subprocess.run(
        [sys.executable, "-c", blocked + "from mailunblock.plugin.cli import main; main(['run', '--help'])"],
        capture_output=True, text=True, timeout=60, check=False)
    assert run_help.returncode == 0 and "--dry-run" in run_help.stdout, run_help.stderr
    demo = subprocess.run(
        [sys.executable, "-c", blocked + "from mailunblock.plugin.cli import main; main(['demo'])"],
        capture_output=True, text=True, timeout=60, check=False)
    assert demo.returncode == 1 and "pip install 'mailunblock[sandbox]'" in demo.stderr, demo.stderr


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_command_help_has_an_example_and_its_exit_codes() -> None:
    commands = list(_commands(main))
    assert len(commands) >= 9
    for path, _ in [((), main), *commands]:
        code, output = _cli(*path, "--help")
        assert code == 0, (path, output)
        example = re.search(r"^  Example: (mailunblock .+)$", output, re.MULTILINE)
        assert example, (path, output)
        assert example.group(1).split()[1:len(path) + 1] == list(path) or not path, (path, example.group(1))
        assert re.search(r"^  Exit codes: 0 ", output, re.MULTILINE), (path, output)
        assert "\\b" not in output, output


@pytest.mark.parametrize("argv", [["config", "schema", "-vv"], ["-v", "config", "schema", "-v"],
                                  ["-vv", "config", "schema"]])
def test_global_options_work_before_and_after_the_command(argv: list[str]) -> None:
    root = logging.getLogger()
    before = root.level
    try:
        code, output = _cli(*argv)
        assert code == 0, output
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(before)


def test_verbose_after_run_is_accepted(tmp_path: Path) -> None:
    code, output = _cli("run", "--once", "-v", "--config", str(tmp_path / "nope.toml"))
    assert code == 1 and "cannot read configuration" in output  # not "No such option" (exit 2)


def test_dry_run_prints_whole_comments_and_label_changes_as_text(sandbox: tuple[Sandbox, Path]) -> None:
    _, config = sandbox
    code, output = _cli("run", "--dry-run", "--config", str(config))
    assert code == 0, output
    plan = output.split("HELP-1: would post internal note: mailunblock — remediation plan")[1]
    assert "\n      *Account:* Adele Vance — adele.vance@contoso.com\n" in plan  # the whole comment, as text
    assert "{{/approve}}" in plan and "\\" not in plan.split("  HELP-2")[0]  # Jira's escapes resolved
    assert "would change labels: " in output
    assert "HELP-4: would change labels: add mailunblock-refused" in output
    assert not re.search(r"\['|'\]|\+\[|-\[", output), output  # no Python list reprs (JSON is fine)
