"""API economy regression check (not timed): calls per ticket from first sight to the ETA comment.

Runs ``bench/burst.py``'s burst with no injected latency on a handful of tickets and counts the calls in
the sandbox's log. The budget is today's count: a change that makes more calls per ticket fails here and
must say why (the scale issue's target is 10 in all).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BURST = Path(__file__).resolve().parents[2] / "bench" / "burst.py"
BUDGET = {"jira": 6.5, "identity": 1.0, "graph": 10.0, "exchange": 3.0, "total": 20.5}


def test_calls_per_ticket_stay_within_budget() -> None:
    done = subprocess.run(
        [sys.executable, str(BURST), "--tickets", "8", "--tenants", "2", "--small", "0", "--latency", "0",
         "--exchange-latency", "0"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["with_eta"] == 8
    calls = result["calls_per_ticket"]
    assert all(calls[service] <= limit for service, limit in BUDGET.items()), calls
    assert result["token_requests_per_tenant"] <= 2  # one per resource (Graph, Exchange) per token lifetime
