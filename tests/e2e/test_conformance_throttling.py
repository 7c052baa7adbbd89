"""The throttle gate against someone else's Jira: the independent fakes in ../shared/conformance.

Only Jira here: the Microsoft fakes insist on the real resource scopes, which this product derives from
``graph_url``/``exchange_url`` until the tenant ``cloud`` setting lands (fidelity issue §2).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from mailunblock.connectors.errors import ThrottledError
from mailunblock.connectors.http import HttpPolicy
from mailunblock.connectors.jira import JiraClient

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
BOT = ("mailunblock-bot@contoso.com", "fake-jira-api-token-ATATT3xFfGF0-bot")

if not (CONFORMANCE / "server.py").is_file():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"CI=true but the conformance fakes are missing at {CONFORMANCE}")
    pytest.skip(f"independent fakes not found at {CONFORMANCE}", allow_module_level=True)


class FakeClock:
    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def _free_port_base() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + 3 < 65536 and all(_free(base + i) for i in range(4)):
            return base
    raise RuntimeError("no four consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("conformance")
    base = _free_port_base()
    process = subprocess.Popen(
        [sys.executable, str(CONFORMANCE / "server.py"), "--port-base", str(base),
         "--scenario", str(CONFORMANCE / "scenarios" / "basic.json"), "--state", str(work / "state.json"),
         "--ca-out", str(work / "ca.pem"), "--log", str(work / "calls.jsonl")],
        cwd=CONFORMANCE, stdout=subprocess.DEVNULL, stderr=(work / "stderr.txt").open("w"),
    )
    url = f"https://127.0.0.1:{base}"
    try:
        for _ in range(100):
            if process.poll() is not None:
                pytest.fail(f"the fakes did not start: {(work / 'stderr.txt').read_text()[-2000:]}")
            try:
                if requests.get(f"{url}/_control/health", verify=str(work / "ca.pem"), timeout=1).ok:
                    break
            except (requests.RequestException, OSError):
                pass
            time.sleep(0.1)
        yield {"url": url, "ca": str(work / "ca.pem"), "log": work / "calls.jsonl"}
    finally:
        process.terminate()
        process.wait(timeout=10)


def _jira_calls(log: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if r.get("service") == "jira"]


def test_no_jira_request_reaches_the_independent_fake_before_its_retry_after(fakes: dict[str, Any]) -> None:
    requests.post(f"{fakes['url']}/_control/faults", verify=fakes["ca"], timeout=5, json={
        "reset": True,
        "script": [{"service": "jira", "method": "POST", "path": "search/jql", "status": 429, "times": 1,
                    "retry_after": 60}],
    }).raise_for_status()
    clock = FakeClock()
    policy = HttpPolicy(ca_bundle=fakes["ca"], clock=clock, sleep=clock.sleep, max_retry_wait=5, timeout=10)
    jira = JiraClient.connect(fakes["url"], policy=policy, email=BOT[0], api_token=BOT[1])
    before = len(_jira_calls(fakes["log"]))

    with pytest.raises(ThrottledError) as caught:
        list(jira.search('labels = "mail-blocked" ORDER BY key'))
    assert 55 <= caught.value.retry_after <= 60
    clock.sleep(30)
    for attempt in (lambda: jira.get_issue("HELP-1"),
                    lambda: jira.post_comment("HELP-1", "failure note", internal=True, marker="m:1")):
        with pytest.raises(ThrottledError):
            attempt()
    calls = _jira_calls(fakes["log"])[before:]
    assert [c["status"] for c in calls] == [429], "nothing but the throttled search reached the fake"

    clock.sleep(31)
    assert any(issue.key == "HELP-1" for issue in jira.search('labels = "mail-blocked" ORDER BY key'))
    calls = _jira_calls(fakes["log"])[before:]
    assert calls[0]["status"] == 429 and calls[1]["status"] == 200
