"""Operating it on a sandbox run: ``status TICKET``, ``status --json`` and the ``audit`` export."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from e2e_world import START, World
from mailunblock.plugin.cli import main
from mailunblock.plugin.logs import FIELDS, JsonFormatter
from mailunblock.workflows.state import Stage

ACCOUNT = "adele.vance@contoso.com"


def _cli(world: World, *args: str) -> str:
    result = CliRunner().invoke(main, [*args[:1], "--config", str(world.config_path), *args[1:]])
    assert result.exit_code == 0, result.output
    return result.output


def _remediate(world: World) -> str:
    key = world.new_ticket(ACCOUNT)
    world.cycle()
    world.approve(key, "alice")
    world.cycle()
    assert world.finish(key).stage is Stage.RESOLVED
    return key


def test_status_and_audit_tell_a_remediated_tickets_story(world: World) -> None:
    key = _remediate(world)
    state = world.state(key)

    story = json.loads(_cli(world, "status", key, "--json"))
    assert story["ticket"] == key and story["stage"] == "resolved" and story["finished"]
    assert story["tenant"] == "contoso" and story["account"] == state.account_upn
    stages = [s["stage"] for s in story["stages"]]
    assert stages[0] == "new" and stages[-1] == "resolved"
    assert {"awaiting_approval", "approved", "password_reset", "sessions_revoked"} <= set(stages)
    assert story["approval"]["how"] == str(state.approval_kind) and story["approval"]["by"] == state.approved_by
    assert story["done"]["unblocked"] == list(state.unblocked_addresses)
    calls = [(a["action"], a["result"]) for a in story["audit"]]
    for action in ("reset-password", "revoke-sessions", "unblock"):
        assert calls.index((action, "called")) < calls.index((action, "ok")), calls
    assert ("approve", "decided") in calls
    assert {("remove-label", "ok"), ("add-label", "ok"), ("sla-property", "ok"), ("transition", "ok")} <= set(calls)

    text = _cli(world, "status", key)
    assert text.startswith(f"{key}: resolved\n")
    assert f"approved by {state.approved_by} ({state.approval_kind})" in text
    assert "reset-password" in text and "password_reset" in text

    every = json.loads(_cli(world, "status", "--json"))
    assert key in [s["ticket"] for s in every]

    lines = _cli(world, "audit", "--since", START.date().isoformat(), "--format", "jsonl").splitlines()
    entries = [json.loads(line) for line in lines]
    mine = [e for e in entries if e["issue_key"] == key]
    assert mine == story["audit"]
    approve = next(e for e in mine if e["action"] == "approve")
    assert approve["actor"] == state.approved_by and approve["account"] == state.account_upn
    reset = [e for e in mine if e["action"] == "reset-password"]
    assert [e["result"] for e in reset] == ["called", "ok"] and reset[0]["target"] == state.account_upn
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    only = [json.loads(line) for line in _cli(world, "audit", "--since", "2000-01-01", "--ticket", key).splitlines()]
    assert only == mine
    assert _cli(world, "audit", "--since", "2099-01-01") == ""


def test_status_of_an_unknown_ticket_fails(world: World) -> None:
    result = CliRunner().invoke(main, ["status", "--config", str(world.config_path), "NOPE-1"])
    assert result.exit_code == 1 and "no state for this ticket" in result.output


def test_a_runs_json_log_parses_line_by_line_and_names_ticket_tenant_and_stage(make_world: object) -> None:
    world = make_world()  # type: ignore[operator]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        key = _remediate(world)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) == len(lines) > 10
    assert all({"time", "level", "message", *FIELDS} <= set(r) for r in records)
    entered = [r for r in records if r["event"] == "stage-entered" and r["ticket"] == key]
    assert [r["stage"] for r in entered][-1] == "resolved"
    assert all(r["level"] == "INFO" and r["tenant"] == "contoso" for r in entered[1:])
    # Records of the HTTP stack logged while the ticket was worked on carry the ticket too.
    assert any(r["ticket"] == key and r["logger"].startswith("urllib3") for r in records)


def test_run_log_format_json_prints_json_lines(tmp_path: Path, world: World) -> None:
    # Jira on a closed loopback port: the cycle fails and says so in a JSON log line.
    config = world.config_path.read_text(encoding="utf-8")
    jira_url = world.runtime.config.jira.url
    broken = tmp_path / "broken.toml"
    broken.write_text(config.replace(jira_url, "http://127.0.0.1:9") + "\n[http]\nmax_retries = 0\n",
                      encoding="utf-8")
    done = subprocess.run([str(Path(sys.executable).parent / "mailunblock"), "run", "--once", "--config",
                           str(broken), "--log-format", "json"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(r["level"] == "WARNING" and "Jira could not be searched" in r["message"] for r in records), done.stderr


def test_a_scraped_metrics_page_counts_the_calls_the_sandbox_received(make_world: object) -> None:
    from collections import Counter

    import requests
    from mailunblock.plugin.config import load_config
    from mailunblock.plugin.metrics import Metrics
    from mailunblock.plugin.services import build_runtime
    from mailunblock.plugin.web import serve_in_background
    from mailunblock.sandbox.core import FaultRule
    from prometheus_client.parser import text_string_to_metric_families

    world = make_world()  # type: ignore[operator]
    before = len(world.sandbox.calls.records())
    metrics = Metrics(world.sandbox.clock, interval_seconds=60)
    world.runtime = build_runtime(load_config(world.config_path), world.sandbox.clock, sleep=world.sleep,
                                  metrics=metrics)
    world.poller = world.runtime.poller
    metrics.watch(world.runtime.store, world.runtime.vault)
    key = world.new_ticket(ACCOUNT)
    world.cycle()
    world.approve(key)
    world.sandbox.faults.add(FaultRule("graph", status=503, method="PATCH"))  # the reset fails once
    world.cycle()
    world.advance(timedelta(minutes=10))
    world.cycle()
    assert world.finish(key).stage is Stage.RESOLVED

    server = serve_in_background(metrics.app(), "127.0.0.1:0")
    try:
        page = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
        health = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
    finally:
        server.shutdown()
    assert page.status_code == 200 and health.status_code == 200
    samples = [s for family in text_string_to_metric_families(page.text) for s in family.samples]

    def values(name: str) -> Counter[tuple[str, str]]:
        found: Counter[tuple[str, str]] = Counter()
        for sample in samples:
            if sample.name == name:
                found[sample.labels["service"], sample.labels["status"]] += int(sample.value)
        return +found

    received = Counter((c.service, str(c.status)) for c in world.sandbox.calls.records()[before:] if not c.batched)
    assert values("mailunblock_api_requests_total") == received
    assert {"jira", "identity", "graph", "exchange"} <= {service for service, _ in received}
    assert values("mailunblock_api_errors_total")[("graph", "503")] == 1
    tenants = {s.labels["tenant"] for s in samples if s.name == "mailunblock_api_requests_total"}
    assert tenants == {"", "contoso"}
    resolved = [s for s in samples if s.name == "mailunblock_tickets" and s.labels["stage"] == "resolved"]
    assert [(s.labels["outcome"], s.labels["tenant"], s.value) for s in resolved] == [("done", "contoso", 1.0)]
    cycles = {s.labels["result"]: s.value for s in samples if s.name == "mailunblock_poll_cycles_total"}
    assert cycles["ok"] >= 4
    stage_counts = {s.labels["stage"]: s.value for s in samples
                    if s.name == "mailunblock_stage_duration_seconds_count"}
    assert stage_counts["awaiting_approval"] == 1 and "resolved" not in stage_counts
    assert any(s.name == "mailunblock_last_successful_cycle_timestamp_seconds"
               and s.value == world.now().timestamp() for s in samples)
    assert any(s.name == "mailunblock_vault_passwords_pending" and s.value == 1 for s in samples)
