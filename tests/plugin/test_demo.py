from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from mailunblock.plugin.cli import main
from mailunblock.plugin.demo import run_demo, story_start
from mailunblock.sandbox.server import Sandbox

README = Path(__file__).parents[2] / "README.md"
EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    workdir = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    code = run_demo(lines.append, workdir)
    return code, "\n".join(lines), workdir


def test_demo_tells_the_whole_story_and_exits_zero(demo: tuple[int, str, Path]) -> None:
    code, story, tmp_path = demo
    assert code == 0
    assert "EMULATORS of Jira and Microsoft 365" in story
    assert "Approval by Adele Vance ignored: the reporter cannot approve their own request." in story
    assert "Approval by Mallory Stone ignored: Mallory Stone is not an approver." in story
    assert "entre " in story and "(heure de Paris)" in story  # the French ETA window
    assert "(Eastern Time)" in story
    summary = story.split("Summary (sandbox time)")[1]
    rows = {line.split()[0]: line.split() for line in summary.splitlines() if line.strip().startswith("HELP-")}
    assert rows["HELP-1"][1:5] == ["adele.vance@contoso.com", "resolved", "1", "1"]
    assert rows["HELP-2"][1:5] == ["chloe.dupont@fabrikam.fr", "resolved", "1", "1"]
    assert rows["HELP-3"][1:5] == ["lidia.holloway@contoso.com", "resolved", "1", "1"]
    assert rows["HELP-4"][2] == rows["HELP-5"][2] == "refused"
    assert rows["HELP-3"][0] == "HELP-3" and "the account lidia.holloway@contoso.com" in story  # a colleague's
    assert rows["HELP-7"][2] == "not_listed" and rows["HELP-7"][3:5] == ["0", "0"]  # not listed: no reset
    assert "none of the 3 new passwords appears in any" in story
    report = tmp_path / "sla-report.html"
    assert f"SLA report (charts, breaches, per approver): {report}" in story
    page = report.read_text(encoding="utf-8")
    assert page.count('<svg id="chart-') == 4 and "HELP-1" in page


def test_demo_shows_the_reset_revocation_and_unblock_of_each_remediated_account(
        demo: tuple[int, str, Path]) -> None:
    story = demo[1]
    for account in ("adele.vance@contoso.com", "chloe.dupont@fabrikam.fr", "lidia.holloway@contoso.com"):
        assert f"(/) Password reset for {account}, with a change required at next sign-in." in story
        assert f"(/) Removed from the Restricted users list: {account}." in story
    assert story.count("(/) Sign-in sessions revoked.") == 3


def test_demo_names_users_to_try_and_how_to_move_time(demo: tuple[int, str, Path]) -> None:
    story = demo[1]
    assert "approvers  alice (Alice Martin), bob (Bob Nguyen); mallory (Mallory Stone) is not one" in story
    assert re.search(r"ben\.walters@contoso\.com +on the Restricted users list, Global Administrator", story)
    assert re.search(r"megan\.bowen@contoso\.com +NOT on the list", story)
    assert "/clock/advance" in story and "--speed 60" in story


def test_the_story_starts_at_the_same_time_of_day_whenever_it_runs(demo: tuple[int, str, Path]) -> None:
    assert re.search(r"^\[cycle 1, sandbox time \w{3} 10:55 UTC\]", demo[1], re.M)
    evening = datetime(2026, 12, 1, 19, 5, tzinfo=UTC)  # the ETA of a story started now would pass midnight in Paris
    assert story_start(evening) == datetime(2026, 12, 2, 10, 55, tzinfo=UTC)
    assert story_start(datetime(2026, 12, 1, 8, 0, tzinfo=UTC)) == datetime(2026, 12, 1, 10, 55, tzinfo=UTC)


def normalised(line: str) -> str:
    """A line without what changes from run to run: sandbox times, weekdays, ports, temporary paths."""
    line = line.replace("\u202f", " ").replace("\u00a0", " ").rstrip()
    line = re.sub(r"\d{1,2}:\d{2}( [AP]M)?", "<time>", line)
    line = re.sub(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) <time>", "<day> <time>", line)
    line = re.sub(r"(127\.0\.0\.1|localhost):\d+", r"\1:<port>", line)
    return re.sub(r"(?<=\s)/tmp/\S+", "<path>", line)


def readme_sample() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("```\n", text.index("The demo takes a few seconds")) + 4
    return text[start:text.index("```\n", start)].splitlines()


def test_the_readme_sample_is_what_the_demo_prints(demo: tuple[int, str, Path]) -> None:
    printed = [normalised(line) for line in demo[1].splitlines()]
    sample = [line for line in readme_sample() if line.strip() not in ("", "...")]
    assert len(sample) > 30
    missing = [line for line in sample if normalised(line) not in printed]
    assert not missing, missing
    # In the demo's order, too.
    positions = [printed.index(normalised(line)) for line in sample]
    assert positions == sorted(positions)


def test_the_sample_check_fails_on_a_stale_line(demo: tuple[int, str, Path]) -> None:
    printed = [normalised(line) for line in demo[1].splitlines()]
    stale = "  HELP-1   public, emailed to reporter  When sending works again: sending should work again between"
    assert normalised(stale) not in printed


def test_the_sandbox_banner_commands_work_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox("default", tmp_path / "sb", ports=EPHEMERAL) as box:
        config = box.write_config(tmp_path / "sandbox config.toml")  # a space: the banner must quote it
        banner = box.banner(config)
        commands = [line.split(None, 1)[1] for line in banner.splitlines()
                    if re.match(r"  (check|run|approve|time) ", line)]
        assert [c.split()[0] for c in commands] == ["mailunblock", "mailunblock", "curl", "curl"]
        monkeypatch.chdir(tmp_path)
        for command in commands:
            argv = shlex.split(command)
            if argv[0] == "mailunblock":
                result = CliRunner().invoke(main, argv[1:])
                assert result.exit_code == 0, (command, result.output)
            else:
                curl = shutil.which("curl")
                if curl is None:
                    pytest.skip("curl is not installed")
                done = subprocess.run([curl, "--fail", *argv[1:]], capture_output=True, text=True, check=False,
                                      timeout=30)
                assert done.returncode == 0, (command, done.stderr)
        assert box.jira is not None
        assert any(c.body == "/approve" for c in box.jira.issue("HELP-1").comments)


def test_a_sandbox_restart_empties_the_state_store(tmp_path: Path) -> None:
    import signal
    import threading

    box = Sandbox("default", tmp_path / "sb", ports=EPHEMERAL)
    stale = box.layout.data_dir / "mailunblock.db"
    stale.parent.mkdir(parents=True)
    stale.write_text("tickets of the previous run")
    timer = threading.Timer(1.0, lambda: signal.raise_signal(signal.SIGTERM))
    timer.start()
    box.serve_forever(tmp_path / "mailunblock.toml")
    timer.join()
    assert not stale.exists()
