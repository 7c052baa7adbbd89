"""Burst benchmark: a phishing wave — N restricted accounts over T tenants — from first sight to the ETA comment.

The sandbox (EMULATORS) runs in a child process, so the CPU time and memory printed are mailunblock's own.
Every call gets an injected latency (default 100 ms; the Exchange admin API 500 ms) and unblocks propagate at
once. An agent approves each plan as soon as it appears. The real poller runs until every ticket has its
ETA comment. Printed: a table and one JSON line.

    .venv/bin/python bench/burst.py [--tickets 1000] [--tenants 10] [--small 50] [--profile FILE]

``saves_per_ticket`` counts the state saves the workflow asked for; ``commits_per_ticket`` the store
transactions that reached the database (each a synchronous SQLite commit): a save that changes nothing is
not written. ``--profile FILE`` writes a cProfile (CPU time) of the measured process (the poller and this driver) and
prints its top functions.

``bound_s`` is a lower bound on the wall time from the calls actually made: with one request in flight at a
time (mailunblock today) it is the sum of their injected latencies, so ``wall_to_bound`` is the overhead
on top of waiting. ``throughput_ratio`` compares the small workload at concurrency 1 with the configured
concurrency; mailunblock has no concurrency setting yet (the scale issue), so it is reported as 1.0.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import pstats
import resource
import sys
import tempfile
import time
import tomllib
from collections import Counter
from datetime import UTC, datetime
from importlib.resources import files
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import requests
from mailunblock.plugin.config import load_config
from mailunblock.plugin.db import tickets as ticket_rows
from mailunblock.plugin.services import build_runtime
from mailunblock.workflows.state import Stage, TicketState
from sqlalchemy import event, func, select

EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)
SERVICES = ("jira", "identity", "graph", "exchange")


def scenario(tickets: int, tenants: int) -> dict[str, Any]:
    """The default scenario's first tenant cloned ``tenants`` times, ``tickets`` blocked users spread over them."""
    base = tomllib.loads((files("mailunblock.sandbox") / "scenarios" / "default.toml").read_text(encoding="utf-8"))
    template = base["tenants"][0]
    base["exchange"]["propagation_minutes"] = 0
    base["tenants"] = []
    for t in range(tenants):
        domain = f"tenant{t:02d}.example"
        users, blocked = [], []
        for i in range(t, tickets, tenants):
            address = f"user{i:05d}@{domain}"
            users.append({"id": f"00000000-0000-4000-8000-{i:012d}", "user_principal_name": address,
                          "display_name": f"User {i}", "mail": address, "proxy_addresses": [f"SMTP:{address}"]})
            blocked.append({"sender_address": address, "blocked_hours_ago": 1})
        base["tenants"].append({
            **{k: v for k, v in template.items() if k not in ("users", "blocked")},
            "name": f"tenant{t:02d}", "display_name": f"Tenant {t}", "domains": [domain],
            "tenant_id": f"10000000-0000-4000-8000-{t:012d}",
            "app": {**template["app"], "client_id": f"20000000-0000-4000-8000-{t:012d}",
                    "service_principal_id": f"30000000-0000-4000-8000-{t:012d}"},
            "users": users, "blocked": blocked,
        })
    return base


def serve(folder: str, tickets: int, tenants: int, latency: float, exchange_latency: float,
          pipe: Connection) -> None:
    """Child process: the sandbox with the burst's tickets; sends the config path, serves until told to stop."""
    from mailunblock.sandbox.server import Sandbox, to_toml  # only here: the measured process never loads it

    work = Path(folder)
    path = work / "burst-scenario.toml"
    path.write_text(to_toml(scenario(tickets, tenants)), encoding="utf-8")
    with Sandbox(path, work / "sandbox", ports=EPHEMERAL, speed=1.0) as box:  # real time, as the poller's
        jira: Any = box.jira
        for issue in list(jira.issues.values()):
            jira.set_labels(issue.key, [])
        keys = [jira.create_issue(f"cannot send {i}", "megan.bowen@contoso.com", labels=["mail-blocked"],
                                  affected_account=f"user{i:05d}@tenant{i % tenants:02d}.example")
                for i in range(tickets)]
        config = box.write_config(work / "mailunblock.toml", store={"data_dir": str(work / "data")})
        box.faults.latency.update(dict.fromkeys(("jira", "identity", "graph"), latency), exchange=exchange_latency)
        pipe.send({"config": str(config), "control": box.control_url, "keys": keys})
        pipe.recv()  # stop


def run(tickets: int, tenants: int, latency: float, exchange_latency: float,
        profile: Path | None = None) -> dict[str, Any]:
    """One burst; the figures of mailunblock's process."""
    with tempfile.TemporaryDirectory(prefix="mailunblock-burst-") as tmp:
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.get_context("spawn").Process(
            target=serve, args=(tmp, tickets, tenants, latency, exchange_latency, child), daemon=True)
        server.start()
        if not parent.poll(300):
            server.kill()
            raise RuntimeError("the sandbox did not start within 300 s")
        ready = parent.recv()
        try:
            return _drive(ready, tickets, latency, exchange_latency, profile)
        finally:
            parent.send("stop")
            server.join(timeout=30)


class _SaveCounter:
    """Counts the saves the workflow asks for and the store transactions committed."""

    def __init__(self, runtime: Any) -> None:
        self.saves = self.commits = 0
        store = runtime.store
        save = store.save

        def counted(state: TicketState) -> None:
            self.saves += 1
            save(state)

        store.save = counted
        event.listen(store.engine, "commit", self._committed)

    def _committed(self, _conn: Any) -> None:
        self.commits += 1


def _progress(runtime: Any) -> list[tuple[str, str, bool]]:
    """(key, stage, has its ETA comment) of every ticket, without rebuilding states (SQLite's JSON)."""
    eta = func.json_extract(ticket_rows.c.state, "$.posted.eta").is_not(None)
    with runtime.store.engine.connect() as conn:
        return [(k, s, bool(e)) for k, s, e in conn.execute(select(ticket_rows.c.issue_key, ticket_rows.c.stage,
                                                                          eta))]


def _drive(ready: dict[str, Any], tickets: int, latency: float, exchange_latency: float,
           profile: Path | None) -> dict[str, Any]:
    runtime = build_runtime(load_config(ready["config"]), _Clock())
    poller = runtime.poller
    control = ready["control"]
    counter = _SaveCounter(runtime)
    approved: set[str] = set()
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU time, not waits
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    cycles = 0
    while True:
        cycles += 1
        poller.run_cycle()
        progress = _progress(runtime)
        for key, stage, _ in progress:
            if stage == Stage.AWAITING_APPROVAL and key not in approved:
                requests.post(f"{control}/jira/comment", json={"key": key, "author": "alice", "body": "/approve"},
                              timeout=30).raise_for_status()
                approved.add(key)
        done = sum(1 for _, _, eta in progress if eta)
        if done == tickets or cycles > 50:
            break
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if profiler and profile:
        profiler.dump_stats(profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(60)
    calls = requests.get(f"{control}/calls", timeout=60).json()
    by_service = Counter(c["service"] for c in calls if c["service"] in SERVICES)
    tokens = Counter(c["service"] for c in calls if c["service"] == "identity" and c["method"] == "POST")
    waits = {"exchange": exchange_latency}
    bound = sum(waits.get(c["service"], latency) for c in calls if c["service"] in SERVICES)
    runtime.store.engine.dispose()
    return {
        "tickets": tickets, "with_eta": done, "cycles": cycles, "wall_s": round(wall, 2),
        "calls_per_ticket": {**{s: round(by_service[s] / tickets, 2) for s in SERVICES},
                             "total": round(sum(by_service.values()) / tickets, 2)},
        "token_requests_per_tenant": round(tokens["identity"] / max(1, len(runtime.tenants)), 2),
        "cpu_ms_per_ticket": round(cpu * 1000 / tickets, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "saves_per_ticket": round(counter.saves / tickets, 2),
        "commits_per_ticket": round(counter.commits / tickets, 2),
        "bound_s": round(bound, 2), "wall_to_bound": round(wall / bound, 2) if bound else None,
    }


class _Clock:
    """The poller's clock: real time, as the sandbox's (speed 1): nothing here waits for the ETA window."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def main() -> None:
    """Run the burst and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--small", type=int, default=50, help="tickets of the throughput comparison run")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per call (Jira, identity, Graph)")
    parser.add_argument("--exchange-latency", type=float, default=0.5, help="seconds per Exchange admin call")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the measured process to this file")
    args = parser.parse_args()
    result = run(args.tickets, args.tenants, args.latency, args.exchange_latency, args.profile)
    result["throughput_ratio"] = 1.0  # no concurrency setting yet: concurrency 1 is the configured one
    print(f"mailunblock burst — {args.tickets} tickets over {args.tenants} tenants, "
          f"{args.latency * 1000:.0f} ms per call ({args.exchange_latency * 1000:.0f} ms Exchange), EMULATORS")
    for name in ("wall_s", "bound_s", "wall_to_bound", "cpu_ms_per_ticket", "peak_rss_mb", "saves_per_ticket",
                 "commits_per_ticket", "token_requests_per_tenant", "cycles", "with_eta"):
        print(f"  {name:26} {result[name]}")
    print("  calls_per_ticket           " + ", ".join(f"{k} {v}" for k, v in result["calls_per_ticket"].items()))
    print(json.dumps(result, sort_keys=True))
    sys.exit(0 if result["with_eta"] == args.tickets else 1)


if __name__ == "__main__":
    main()
