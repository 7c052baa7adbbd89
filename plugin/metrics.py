"""Prometheus metrics and a health check for ``mailunblock run --metrics-port``.

Counters fed as things happen (HTTP requests through the connectors' observer hook, poll cycles), and
figures read from the state store at each scrape (tickets by stage, stage durations, vault), so a restart
loses no history. ``/healthz`` answers 503 once cycles keep failing or none ran for three intervals.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from mailunblock.connectors.http import HttpObserver
from mailunblock.plugin.poller import CycleReport
from mailunblock.plugin.store import StateStore
from mailunblock.plugin.vault import PasswordVault
from mailunblock.plugin.web import Environ, StartResponse
from mailunblock.workflows.ports import Clock
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

FAILED_CYCLES_UNHEALTHY = 3  # consecutive failed cycles that make /healthz answer 503
STALE_INTERVALS = 3  # intervals without any cycle that make /healthz answer 503
STAGE_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0)


class _StoreCollector(Collector):
    """Tickets by stage and outcome, stage durations and pending vault items, read at scrape time."""

    def __init__(self, store: StateStore, vault: PasswordVault) -> None:
        self._store = store
        self._vault = vault

    def collect(self) -> Iterator[Metric]:
        """The figures of the state store now."""
        states = self._store.all_states()
        tickets = GaugeMetricFamily("mailunblock_tickets", "Tickets in the state store, by stage and outcome.",
                                    labels=["stage", "outcome", "tenant"])
        counts = Tally((str(s.stage), "done" if s.is_terminal else "open", s.tenant or "") for s in states)
        for labels, count in sorted(counts.items()):
            tickets.add_metric(list(labels), count)
        yield tickets
        durations: dict[str, list[float]] = {}
        for state in states:
            for entered, left in zip(state.history, state.history[1:], strict=False):
                durations.setdefault(str(entered.stage), []).append((left.at - entered.at).total_seconds())
        histogram = HistogramMetricFamily("mailunblock_stage_duration_seconds",
                                          "Time tickets spent in each stage they have left.", labels=["stage"])
        for stage, values in sorted(durations.items()):
            buckets = [(f"{bound:g}", float(sum(v <= bound for v in values))) for bound in STAGE_BUCKETS]
            histogram.add_metric([stage], [*buckets, ("+Inf", float(len(values)))], sum_value=sum(values))
        yield histogram
        yield GaugeMetricFamily("mailunblock_vault_passwords_pending",
                                "Passwords in the vault not yet revealed, wiped or expired.",
                                value=self._vault.pending())


class Metrics:
    """Every metric of one running mailunblock, and its health."""

    def __init__(self, clock: Clock, interval_seconds: float) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._interval = timedelta(seconds=interval_seconds)
        self._lock = threading.Lock()
        self._started = clock.now()
        self._last_cycle: datetime | None = None
        self._failed_in_a_row = 0
        self.api_requests = Counter("mailunblock_api_requests", "HTTP requests sent, by service, tenant and status.",
                                    ["service", "tenant", "status"], registry=self.registry)
        self.api_errors = Counter("mailunblock_api_errors",
                                  "HTTP requests that failed (status >= 400, no answer, or held back by a throttle).",
                                  ["service", "tenant", "status"], registry=self.registry)
        self.cycles = Counter("mailunblock_poll_cycles", "Poll cycles, by result.", ["result"], registry=self.registry)
        self.cycle_seconds = Histogram("mailunblock_poll_cycle_duration_seconds", "Duration of a poll cycle.",
                                       registry=self.registry)
        self.last_success = Gauge("mailunblock_last_successful_cycle_timestamp_seconds",
                                  "When the last poll cycle that reached Jira ended (Unix time).",
                                  registry=self.registry)

    def watch(self, store: StateStore, vault: PasswordVault) -> None:
        """Also expose the figures of this state store and vault."""
        self.registry.register(_StoreCollector(store, vault))

    def http_observer(self, tenant: str) -> HttpObserver:
        """The connectors' hook for one tenant ("" for the ticketing system)."""

        def observe(service: str, outcome: str) -> None:
            if outcome != "not_sent":
                self.api_requests.labels(service, tenant, outcome).inc()
            if not outcome.isdigit() or int(outcome) >= 400:
                self.api_errors.labels(service, tenant, outcome).inc()

        return observe

    def cycle_done(self, report: CycleReport, seconds: float) -> None:
        """Count a finished poll cycle (the poller's observer)."""
        self.cycle_seconds.observe(seconds)
        self.cycles.labels("ok" if report.ok else "failed").inc()
        with self._lock:
            self._last_cycle = self._clock.now()
            self._failed_in_a_row = 0 if report.ok else self._failed_in_a_row + 1
        if report.ok:
            self.last_success.set(self._clock.now().timestamp())

    def health(self) -> tuple[bool, str]:
        """Whether the poller is alive and working, and why not."""
        with self._lock:
            failed, last = self._failed_in_a_row, self._last_cycle
        if failed >= FAILED_CYCLES_UNHEALTHY:
            return False, f"the last {failed} poll cycles failed"
        since = last or self._started
        if self._clock.now() - since > STALE_INTERVALS * self._interval:
            return False, f"no poll cycle {'ended' if last else 'ran'} since {since:%Y-%m-%d %H:%M:%S} UTC"
        return True, "ok"

    def app(self) -> MetricsApp:
        """The WSGI application serving ``/metrics`` and ``/healthz``."""
        return MetricsApp(self)


class MetricsApp:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (200 ok, 503 with the reason)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._prometheus = make_wsgi_app(metrics.registry)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Route one request."""
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            healthy, why = self._metrics.health()
            start_response("200 OK" if healthy else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{why}\n".encode()]
        if path == "/metrics":
            body: Iterable[bytes] = self._prometheus(environ, start_response)
            return body
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /healthz\n"]
