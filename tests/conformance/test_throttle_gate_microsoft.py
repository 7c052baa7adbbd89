"""The throttle gate against the independent Microsoft fakes: after a 429 with Retry-After from Graph or the
Exchange admin API, nothing reaches that service (in that tenant) before the deadline; other services go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conformance_fakes import START, Fakes, ProductClock, write_config
from mailunblock.connectors.errors import ThrottledError
from mailunblock.plugin.config import load_config
from mailunblock.plugin.services import Runtime, build_runtime

ALICE = "alice@contoso.com"


@pytest.fixture
def runtime(cloud_fakes: Fakes, tmp_path: Path) -> Iterator[tuple[Fakes, ProductClock, Runtime]]:
    clock = ProductClock(cloud_fakes)
    clock.set(START)
    built = build_runtime(load_config(write_config(cloud_fakes, tmp_path / "config")), clock, clock.advance_seconds)
    yield cloud_fakes, clock, built
    built.store.engine.dispose()


def _calls(fakes: Fakes, service: str, since: int) -> list[dict[str, Any]]:
    return [c for c in fakes.calls()[since:] if c["service"] == service]


CASES: dict[str, tuple[str, str, Callable[[Runtime], object], Callable[[Runtime], object]]] = {
    # service: (method, path regex of the throttled call, the throttled call, another call to the same service)
    "graph": ("GET", r"/v1\.0/users", lambda r: r.tenants["contoso"].graph.find_users_by_address(ALICE),
              lambda r: r.tenants["contoso"].graph.directory_roles("a1000000-0000-4000-8000-000000000001")),
    "exchange": ("POST", r"InvokeCommand", lambda r: r.tenants["contoso"].exchange.blocked_entries([ALICE]),
                 lambda r: r.tenants["contoso"].exchange.blocked_entries(["bob@contoso.com"])),
}


@pytest.mark.parametrize("service", sorted(CASES))
def test_nothing_reaches_a_throttled_microsoft_service_before_its_deadline(runtime: Any, service: str) -> None:
    fakes, clock, built = runtime
    method, path, throttled, other = CASES[service]
    other_service = "exchange" if service == "graph" else "graph"
    fakes.control("faults", {"reset": True, "script": [
        {"service": service, "method": method, "path": path, "status": 429, "times": 1, "retry_after": 120}]})
    since = len(fakes.calls())
    with pytest.raises(ThrottledError) as caught:
        throttled(built)
    assert 110 <= caught.value.retry_after <= 120
    clock.advance(timedelta(seconds=60))
    for attempt in (throttled, other):
        with pytest.raises(ThrottledError):
            attempt(built)
    assert [c["status"] for c in _calls(fakes, service, since)] == [429], "only the throttled call got through"
    CASES[other_service][3](built)  # another service of the same tenant is not held back
    assert _calls(fakes, other_service, since)[-1]["status"] == 200
    clock.advance(timedelta(seconds=61))
    throttled(built)
    assert [c["status"] for c in _calls(fakes, service, since)] == [429, 200]
