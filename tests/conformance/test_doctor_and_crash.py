"""``mailunblock doctor`` against the fakes, and comment crash recovery with a real ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conformance_fakes import Fakes, marker_of, write_config

MAILUNBLOCK = str(Path(sys.executable).with_name("mailunblock"))
LEASE = 2.0  # seconds: a claim held by a killed process lapses this soon


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    return subprocess.run([MAILUNBLOCK, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


@pytest.mark.parametrize("deployment", ["cloud", "datacenter"])
def test_doctor_passes_every_check_for_the_connector_app(deployment: str, tmp_path: Path,
                                                         fakes_available: None) -> None:
    (tmp_path / "fakes").mkdir()
    fakes = Fakes(tmp_path / "fakes", deployment)
    try:
        done = _cli("doctor", "--config", str(write_config(fakes, tmp_path / "config")))
    finally:
        fakes.stop()
    lines = [line for line in done.stdout.splitlines() if line[:4] in ("PASS", "FAIL", "WARN", "SKIP")]
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines and all(line.startswith("PASS") for line in lines), done.stdout
    assert any("deployment" in line and deployment in line for line in lines)
    assert any("approver membership readable" in line for line in lines)


def test_doctor_names_every_missing_permission_and_role_of_the_readonly_probe(cloud_fakes: Fakes,
                                                                               tmp_path: Path) -> None:
    done = _cli("doctor", "--config", str(write_config(cloud_fakes, tmp_path / "config", app="probe")))
    assert done.returncode != 0
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    for missing in ("User-PasswordProfile.ReadWrite.All", "User.RevokeSessions.All", "Directory.Read.All",
                    "MailboxSettings.Read", "Exchange.ManageAsApp", "role User Administrator",
                    "role Exchange Administrator"):
        assert any(f"MISSING {'' if missing.startswith('role') else 'application permission '}{missing}" in line
                   for line in failures), f"{missing} not named:\n{done.stdout}"
    assert any(line.startswith("PASS") and "User.Read.All" in line for line in done.stdout.splitlines())


def test_doctor_says_which_deployment_to_set(dc_fakes: Fakes, tmp_path: Path) -> None:
    config = write_config(dc_fakes, tmp_path / "config")
    text = config.read_text(encoding="utf-8").replace('deployment = "datacenter"', 'deployment = "cloud"')
    text = text.replace('personal_access_token = "file:jira_pat.txt"',
                        'email = "mailunblock-bot@contoso.com"\napi_token = "file:jira_pat.txt"')
    config.write_text(text, encoding="utf-8")
    done = _cli("doctor", "--config", str(config))
    assert done.returncode != 0
    assert "set deployment = 'datacenter'" in done.stdout, done.stdout


def _wait_for(log: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text(encoding="utf-8").splitlines():
                if line.strip() and predicate(call := json.loads(line)):
                    return dict(call)
        time.sleep(0.02)
    raise AssertionError("the awaited request never reached the fakes")


def test_a_kill_while_the_comment_post_is_in_flight_never_duplicates_the_comment(cloud_fakes: Fakes,
                                                                                  tmp_path: Path) -> None:
    config = str(write_config(cloud_fakes, tmp_path / "config", lease_seconds=LEASE))
    # Every Jira request is held 1 s before the fakes process it: the first comment POST is in flight for
    # that second, and the fakes still create the comment after its client is gone.
    cloud_fakes.control("faults", {"jira": {"latency_ms": 1000}})
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    proc = subprocess.Popen([MAILUNBLOCK, "run", "--once", "--config", config], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The comment POST follows the reporter's profile read (GET /user) for the first ticket.
        lookup = _wait_for(cloud_fakes.log, lambda c: c["service"] == "jira" and c["path"] == "/rest/api/2/user")
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    cloud_fakes.control("faults", {"reset": True})
    posted = _wait_for(cloud_fakes.log, lambda c: c["method"] == "POST" and c["path"].endswith("/comment"))
    key = posted["ticket"]
    assert posted["seq"] > lookup["seq"] and posted["status"] == 201
    assert [marker_of(c) for c in cloud_fakes.issue(key)["comments"] if marker_of(c)] == ["ack"], \
        "the comment was created although its poster died"

    time.sleep(LEASE)  # the killed process's claim lapses: the restart takes its ticket over
    rerun = _cli("run", "--once", "--config", config)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    markers = [marker_of(c) for c in cloud_fakes.issue(key)["comments"] if marker_of(c)]
    assert markers.count("ack") == 1 and ("plan" in markers or "refused" in markers), markers
    rc, summary = cloud_fakes.check_calls()
    print(f"check_calls.py [crash recovery]:\n{summary}")
    assert rc == 0 and "duplicate comment" not in summary, summary


def test_an_approval_below_twenty_other_comments_is_not_missed(cloud_fakes: Fakes, tmp_path: Path) -> None:
    # search/jql embeds only the first 20 comments (total says more): the rest is read from the comment
    # resource, so the approval written as the 30th-odd comment still counts.
    from datetime import timedelta

    from conformance_fakes import APPROVER, START, Product, ProductClock

    clock = ProductClock(cloud_fakes)
    clock.set(START)
    product = Product(write_config(cloud_fakes, tmp_path / "config"), clock)
    try:
        product.cycle()
        clock.advance(timedelta(minutes=5))
        for n in range(25):
            cloud_fakes.control("comment", {"issue": "HELP-1", "as": "reporter", "body": f"Any news? ({n})"})
        cloud_fakes.control("comment", {"issue": "HELP-1", "as": APPROVER, "body": "/approve", "internal": True})
        clock.advance(timedelta(minutes=1))
        product.cycle()
        state = product.state("HELP-1")
        assert state is not None and state.stage.value != "awaiting_approval", state
        paged = [c for c in cloud_fakes.calls() if c["method"] == "GET"
                 and c["path"] == "/rest/api/2/issue/HELP-1/comment"]
        assert paged, "the comment resource was read"
    finally:
        product.close()
