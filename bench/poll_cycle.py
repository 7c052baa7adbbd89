"""Benchmark: what a polling cycle costs, as ratios to a plain Jira search of the same tickets.

Runs everything on the bundled sandbox (EMULATORS on loopback, in this process): N tickets for N blocked
accounts. Measured in the same run:
  baseline      one paged JQL search returning the N tickets (what any poller must pay)
  first cycle   triage of N new tickets: Graph lookups, acknowledgement + plan comments
  steady cycle  nothing changed since the last cycle (the common case while agents decide)
  remediation   N approvals: reset, revoke, inbox rules, list check, unblock, summary + ETA comments
Figures are printed as milliseconds and as ratios to the baseline; peak Python memory (tracemalloc) as a
ratio to the baseline search's peak.

    .venv/bin/python bench/poll_cycle.py [--tickets 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from mailunblock.plugin.config import load_config
from mailunblock.plugin.services import build_runtime
from mailunblock.sandbox.server import Sandbox

EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)


def scenario_with(accounts: int, folder: Path) -> Path:
    """The default scenario plus ``accounts`` blocked users in the last tenant (fabrikam)."""
    text = (files("mailunblock.sandbox") / "scenarios" / "default.toml").read_text(encoding="utf-8")
    for i in range(accounts):
        address = f"bench{i:04d}@fabrikam.fr"
        text += (
            f'\n[[tenants.users]]\nid = "00000000-0000-4000-8000-{i:012d}"\n'
            f'user_principal_name = "{address}"\ndisplay_name = "Bench {i}"\nmail = "{address}"\n'
            f'proxy_addresses = ["SMTP:{address}"]\n'
            f'\n[[tenants.blocked]]\nsender_address = "{address}"\nblocked_hours_ago = 1\n'
        )
    path = folder / "bench-scenario.toml"
    path.write_text(text, encoding="utf-8")
    return path


def timed(action: Callable[[], Any]) -> float:
    """Wall time (s) of one call."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def peak_memory(action: Callable[[], Any]) -> int:
    """Peak traced Python memory (bytes) of one call (traced separately: tracing slows everything)."""
    tracemalloc.start()
    action()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailunblock-bench-") as tmp:
        work = Path(tmp)
        with Sandbox(scenario_with(args.tickets, work), work / "sandbox", ports=EPHEMERAL, speed=0) as box:
            jira: Any = box.jira
            for issue in list(jira.issues.values()):
                jira.set_labels(issue.key, [])  # keep only the benchmark's tickets in the selection
            keys = [
                jira.create_issue(f"bench {i}", "megan.bowen@contoso.com", labels=["mail-blocked"],
                                  affected_account=f"bench{i:04d}@fabrikam.fr")
                for i in range(args.tickets)
            ]
            config = box.write_config(work / "mailunblock.toml", store={"data_dir": str(work / "data")},
                                      jira={"affected_account_field": "customfield_10050"})
            runtime = build_runtime(load_config(config), box.clock)
            jql = runtime.config.jira.search_jql
            poller = runtime.poller

            assert len(list(runtime.tickets.search(jql))) == args.tickets  # warm-up: TLS, tokens, imports
            calls = [len(box.calls.records())]
            first = timed(poller.run_cycle)
            calls.append(len(box.calls.records()))
            # The baseline reads the same tickets as the steady cycle (with their comments by now).
            search = [timed(lambda: list(runtime.tickets.search(jql))) for _ in range(args.repeat)]
            search_peak = peak_memory(lambda: list(runtime.tickets.search(jql)))
            calls.append(len(box.calls.records()))
            steady = [timed(poller.run_cycle) for _ in range(args.repeat)]
            calls.append(len(box.calls.records()))
            steady_peak = peak_memory(poller.run_cycle)
            for key in keys:
                jira.add_comment(key, "alice", "/approve")
            calls.append(len(box.calls.records()))
            remediation = timed(poller.run_cycle)
            calls.append(len(box.calls.records()))
            states = runtime.store.all_states()
            waiting = sum(1 for s in states if s.stage.value == "waiting_for_send")

    base_time = statistics.median(search)
    rows = [("baseline: JQL search", base_time), ("first cycle (triage)", first),
            ("steady cycle", statistics.median(steady)), ("remediation cycle", remediation)]
    print(f"mailunblock poll-cycle benchmark — {args.tickets} tickets, sandbox EMULATORS on loopback, "
          f"median of {args.repeat} where repeated")
    print(f"{'measure':24} {'ms':>9} {'ms/ticket':>10} {'x baseline':>11}")
    for name, seconds in rows:
        print(f"{name:24} {seconds * 1000:9.1f} {seconds * 1000 / args.tickets:10.2f} {seconds / base_time:11.2f}")
    per_ticket = [(calls[1] - calls[0]) / args.tickets, (calls[3] - calls[2]) / args.repeat / args.tickets,
                  (calls[5] - calls[4]) / args.tickets]
    print("HTTP requests per ticket: triage {:.1f}, steady {:.2f}, remediation {:.1f}".format(*per_ticket))
    print(f"peak traced memory: search {search_peak / 2**20:.2f} MiB, steady cycle {steady_peak / 2**20:.2f} MiB "
          f"(x{steady_peak / search_peak:.1f})")
    print(f"after the remediation cycle: {waiting}/{args.tickets} tickets waiting for the sending window")


if __name__ == "__main__":
    main()
