"""``/healthz``: healthy while cycles run and succeed; 503 after failed cycles in a row or a silent poller."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from mailunblock.connectors.errors import ThrottledError
from mailunblock.connectors.http import HttpPolicy, build_session
from mailunblock.plugin.metrics import Metrics
from mailunblock.plugin.poller import CycleReport
from mailunblock.plugin.web import serve_in_background
from werkzeug.test import Client

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        """The current fake time."""
        return self.at


def _healthz(metrics: Metrics) -> tuple[int, str]:
    answer = Client(metrics.app()).get("/healthz")
    return answer.status_code, answer.get_data(as_text=True)


def test_the_server_answers_healthz_and_metrics_over_http() -> None:
    metrics = Metrics(FakeClock(), interval_seconds=60)
    metrics.cycle_done(CycleReport(seen=2), 0.25)
    server = serve_in_background(metrics.app(), "127.0.0.1:0")
    try:
        health = requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
        page = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10)
    finally:
        server.shutdown()
    assert (health.status_code, health.text) == (200, "ok\n")
    assert 'mailunblock_poll_cycles_total{result="ok"} 1.0' in page.text
    assert "mailunblock_poll_cycle_duration_seconds_sum 0.25" in page.text


def test_healthz_turns_unhealthy_after_three_failed_cycles_and_recovers() -> None:
    clock = FakeClock()
    metrics = Metrics(clock, interval_seconds=60)
    assert _healthz(metrics) == (200, "ok\n")
    for _ in range(2):
        metrics.cycle_done(CycleReport(error="Jira could not be searched"), 0.1)
    assert _healthz(metrics)[0] == 200
    metrics.cycle_done(CycleReport(error="Jira could not be searched"), 0.1)
    assert _healthz(metrics) == (503, "the last 3 poll cycles failed\n")
    metrics.cycle_done(CycleReport(seen=1), 0.1)
    assert _healthz(metrics)[0] == 200


def test_healthz_turns_unhealthy_when_no_cycle_ran_for_three_intervals() -> None:
    clock = FakeClock()
    metrics = Metrics(clock, interval_seconds=60)
    clock.at += timedelta(seconds=180)
    assert _healthz(metrics)[0] == 200
    clock.at += timedelta(seconds=1)
    status, text = _healthz(metrics)
    assert status == 503 and "no poll cycle ran since" in text
    metrics.cycle_done(CycleReport(), 0.1)
    assert _healthz(metrics)[0] == 200
    clock.at += timedelta(seconds=181)
    assert _healthz(metrics)[0] == 503


def test_requests_held_back_by_a_throttle_are_errors_not_requests() -> None:
    clock = FakeClock()
    metrics = Metrics(clock, interval_seconds=60)
    policy = HttpPolicy(clock=clock, observer=metrics.http_observer("contoso"), max_retries=0)
    policy.gates.close("graph", T0 + timedelta(seconds=30))
    session = build_session(policy, "graph")
    with pytest.raises(ThrottledError, match="not sent"):
        session.get("http://127.0.0.1:9/v1.0/users")
    value = metrics.registry.get_sample_value
    labels = {"service": "graph", "tenant": "contoso", "status": "not_sent"}
    assert value("mailunblock_api_errors_total", labels) == 1
    assert value("mailunblock_api_requests_total", labels) is None
