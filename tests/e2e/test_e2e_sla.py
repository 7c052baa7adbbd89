"""SLA on a sandbox run: the ``mailunblock.sla`` ticket property (Cloud and Data Center), ``report``, and the
HTML report in a real browser (headless Chromium: skipped when absent, a failure in CI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from e2e_world import World
from mailunblock.plugin.cli import main
from mailunblock.plugin.report import BREACH_COLOUR, FUNNEL_COLOUR, MET_COLOUR, P50_COLOUR, P90_COLOUR

SLA = {"targets": [
    {"name": "acknowledge", "start": "created", "end": "acknowledged", "minutes": 15},
    {"name": "restore", "start": "created", "end": "restored", "minutes": 240},
]}


def remediate(world: World, reporter: str) -> str:
    key = world.new_ticket(reporter)
    world.cycle()
    world.advance(timedelta(minutes=20))
    world.approve(key)
    world.finish(key)
    return key


@pytest.mark.parametrize("deployment", ["cloud", "datacenter"])
def test_a_resolved_ticket_carries_its_sla_summary(make_world: Callable[..., World], deployment: str) -> None:
    world = make_world(jira_deployment=deployment, sla=SLA)
    key = remediate(world, "adele.vance@contoso.com")

    value = world.jira.find_issue(key).properties["mailunblock.sla"]
    assert value["outcome"] == "resolved" and value["tenant"] == "contoso"
    assert value["approvedBy"] == "Alice Martin" and value["approvalKind"] == "comment"
    state = world.state(key)
    assert value["milestones"]["created"] == world.jira.find_issue(key).created.isoformat()
    assert state.ticket_created_at == world.jira.find_issue(key).created
    assert value["targets"]["acknowledge"]["breached"] is False
    # Filed, approved 20 minutes later, then 3-4 h of waiting for Exchange: more than the 4 h target.
    assert value["targets"]["restore"]["seconds"] > 4 * 3600 and value["breached"] == ["restore"]
    calls = [c for c in world.sandbox.calls.records("jira") if c.method == "PUT" and "/properties/" in c.path]
    assert [c.path.rsplit("/", 1)[1] for c in calls] == ["mailunblock.sla"]  # once, at the end


@pytest.fixture(scope="module")
def sandbox_run(shared_world: World) -> World:
    """Two remediated tickets and one refused, in the module's sandbox."""
    remediate(shared_world, "adele.vance@contoso.com")
    remediate(shared_world, "chloe.dupont@fabrikam.fr")
    refused = shared_world.new_ticket("megan.bowen@contoso.com", affected="ben.walters@contoso.com")
    shared_world.cycle()
    shared_world.finish(refused)
    return shared_world


def report(world: World, *args: str) -> str:
    result = CliRunner().invoke(main, ["report", "--config", str(world.config_path), "--since", "2000-01-01",
                                       "--until", "2100-01-01", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_report_command_on_a_sandbox_run(sandbox_run: World) -> None:
    document = json.loads(report(sandbox_run, "--format", "json"))
    assert document["outcomes"]["resolved"] == 2
    assert sum(document["outcomes"].values()) == 3
    refused = next(t for t in document["tickets"] if t["outcome"] == "refused")
    assert {t["name"] for t in document["tenants"]} == {"contoso", "fabrikam", refused["tenant"] or "(no tenant)"}
    assert [a["name"] for a in document["approvers"]] == ["Alice Martin"]
    assert report(sandbox_run, "--tenant", "fabrikam", "--format", "csv").count("\n") == 2  # header + 1

    table = report(sandbox_run)
    assert "acknowledge" in table and "awaiting_approval" in table


def test_report_refuses_an_unknown_tenant(sandbox_run: World) -> None:
    result = CliRunner().invoke(main, ["report", "--config", str(sandbox_run.config_path), "--tenant", "nope"])
    assert result.exit_code == 2 and "no tenant named 'nope'" in result.output


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--hide-scrollbars", "--window-size=1280,2000",
)
CONSOLE_ERROR = re.compile(r"Uncaught|CONSOLE\(\d+\)|Refused to|ERR_|Failed to load", re.IGNORECASE)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("headless Chromium is required in CI (.ci/run installs Debian's chromium package)")
    pytest.skip("Chromium not installed (apt-get install chromium) - the browser check of the HTML report is skipped")


def screenshot(page: Path, shot: Path, profile: Path) -> list[str]:
    """Open the page in headless Chromium, save a screenshot; return the console error lines it logged."""
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if CONSOLE_ERROR.search(line)]


def colour_pixels(shot: Path) -> dict[str, int]:
    from PIL import Image

    with Image.open(shot) as image:
        counts = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    by_colour = {f"#{r:02x}{g:02x}{b:02x}": n for n, (r, g, b) in counts}
    return {c: by_colour.get(c, 0) for c in (P50_COLOUR, P90_COLOUR, FUNNEL_COLOUR, MET_COLOUR, BREACH_COLOUR)}


def test_console_errors_are_seen(tmp_path: Path) -> None:
    """The check below can fail: a page that throws is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>throw new Error('boom')</script></body></html>")
    errors = screenshot(page, tmp_path / "broken.png", tmp_path / "profile")
    assert any("boom" in line for line in errors)


def test_html_report_renders_its_charts_in_chromium(sandbox_run: World, tmp_path: Path) -> None:
    page = tmp_path / "sla.html"
    report(sandbox_run, "--format", "html", "--output", str(page))
    html = page.read_text(encoding="utf-8")
    assert len(re.findall(r"<svg id=\"chart-", html)) == 4
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html  # self-contained

    shot = Path(os.environ.get("MAILUNBLOCK_REPORT_SCREENSHOT", tmp_path / "sla.png"))
    errors = screenshot(page, shot, tmp_path / "profile")

    assert errors == []
    pixels = colour_pixels(shot)
    # Every chart drew: funnel bars, p50 and p90 stage bars, restored tickets' dots, tenant breach bars.
    assert pixels[FUNNEL_COLOUR] > 2000, pixels
    assert pixels[P50_COLOUR] > 1000 and pixels[P90_COLOUR] > 200, pixels
    assert pixels[MET_COLOUR] + pixels[BREACH_COLOUR] > 100, pixels
