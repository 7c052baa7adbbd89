"""The throttle gate against someone else's Jira: the independent fakes in ../shared/conformance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conformance_fakes import BOT_API_TOKEN, BOT_EMAIL, Fakes
from mailunblock.connectors.errors import ThrottledError
from mailunblock.connectors.http import HttpPolicy
from mailunblock.connectors.jira import JiraClient


class FakeClock:
    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def _jira_calls(fakes: Fakes) -> list[dict[str, Any]]:
    return [c for c in fakes.calls() if c.get("service") == "jira"]


def test_no_jira_request_reaches_the_independent_fake_before_its_retry_after(cloud_fakes: Fakes) -> None:
    fakes = cloud_fakes
    fakes.control("faults", {
        "reset": True,
        "script": [{"service": "jira", "method": "POST", "path": "search/jql", "status": 429, "times": 1,
                    "retry_after": 60}],
    })
    clock = FakeClock()
    policy = HttpPolicy(ca_bundle=str(fakes.ca), clock=clock, sleep=clock.sleep, max_retry_wait=5, timeout=10)
    jira = JiraClient.connect(fakes.urls["jira"], policy=policy, email=BOT_EMAIL, api_token=BOT_API_TOKEN)
    before = len(_jira_calls(fakes))

    with pytest.raises(ThrottledError) as caught:
        list(jira.search('labels = "mail-blocked" ORDER BY key'))
    assert 55 <= caught.value.retry_after <= 60
    clock.sleep(30)
    for attempt in (lambda: jira.get_issue("HELP-1"),
                    lambda: jira.post_comment("HELP-1", "failure note", internal=True, marker="m:1")):
        with pytest.raises(ThrottledError):
            attempt()
    calls = _jira_calls(fakes)[before:]
    assert [c["status"] for c in calls] == [429], "nothing but the throttled search reached the fake"

    clock.sleep(31)
    assert any(issue.key == "HELP-1" for issue in jira.search('labels = "mail-blocked" ORDER BY key'))
    calls = _jira_calls(fakes)[before:]
    assert calls[0]["status"] == 429 and calls[1]["status"] == 200
