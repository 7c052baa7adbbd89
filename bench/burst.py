"""Burst benchmark: a phishing wave — N restricted accounts over T tenants — from first sight to the ETA comment.

The sandbox (EMULATORS) runs in a child process, so the CPU time and memory printed are mailunblock's own.
Every call gets an injected latency (default 100 ms; the Exchange admin API 500 ms) and unblocks propagate at
once. An agent (in the sandbox's process) approves each plan the moment it is posted. The real poller
(``run_forever``, as ``mailunblock run``) runs until every ticket has its ETA comment. Printed: a table and
one JSON line.

    .venv/bin/python bench/burst.py [--tickets 1000] [--tenants 10] [--small 50] [--workers 64] [--cpus auto]
                                    [--scheduling batch]

With two CPUs or more (``--cpus auto``), mailunblock runs as ``[poller] cpus = [<first CPU>]`` configures it
and the emulators on the other CPUs: they stand for services that run elsewhere, and do not take
mailunblock's core. ``--cpus none`` leaves both where the system puts them (about a sixth more CPU per
ticket on a 2-core machine, twice the context switches). ``--scheduling batch`` (the default) runs it as
``[poller] batch_scheduling = true`` does (SCHED_BATCH); ``normal`` leaves the kernel's default policy.

``saves_per_ticket`` counts the state saves the workflow asked for; ``commits_per_ticket`` the store
transactions that reached the database (each a synchronous SQLite commit; claims and releases included): a
save that changes nothing is not written.

64 workers by default: they are threads waiting on I/O, and Jira's lane (8 requests in flight) stays full
only with enough of them while the others wait on the Exchange admin API's 500 ms (32 left it idle a third of
the time: 1.41-1.57 times the bound, against 1.30 with 64).

``bound_s`` is a lower bound on the wall time from the calls actually made, the injected latencies and the
configured limits: no limited lane (Jira; each tenant's identity, Graph and Exchange; the worker pool) can
finish sooner than the latency it carried divided by its concurrency. ``wall_to_bound`` is how far above
that the run was. ``throughput_ratio``: a small workload (``--small`` tickets) run at concurrency 1 and at
the configured concurrency, in the same invocation; the ratio of their wall times.

``jira_lane_use_5s``: per 5 seconds, the share of Jira's lane (its in-flight limit) that the calls answered
in those seconds spent in the injected latency. Below 1.0 the lane stood idle (the first seconds: the
selection's pages, read one after the other, and the first triage) or its calls took longer than the
latency (the emulator's own work, the client reading the answer): where the wall time exceeds the bound.

``http_floor_ms_per_call`` is this run's CPU baseline: one plain ``requests`` keep-alive GET to the Jira
emulator, with the run's workers and latency, measured in this process right after the burst.
``cpu_to_http_floor`` is ``cpu_ms_per_ticket`` over that floor times the calls per ticket: 1.0 would mean
mailunblock costs nothing beyond its HTTP calls. ``cpu_system_ms_per_ticket`` is the kernel's part of
that CPU and ``context_switches_per_ticket`` how often a thread of this process gave up its core (mostly
to wait for the interpreter lock another thread held: the cost of many threads in one interpreter).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.resources import files
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import requests
from mailunblock.plugin.affinity import place
from mailunblock.plugin.collector import settle
from mailunblock.plugin.config import Config, load_config
from mailunblock.plugin.metrics import Metrics
from mailunblock.plugin.poller import run_forever
from mailunblock.plugin.services import build_runtime
from mailunblock.workflows.state import TicketState
from sqlalchemy import event

EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)
SERVICES = ("jira", "identity", "graph", "exchange")
APPROVER = "alice"


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


def _marker(properties: Any) -> str:
    value = properties.get("mailunblock") if isinstance(properties, dict) else None
    return str(value.get("marker", "")) if isinstance(value, dict) else ""


def _agent(jira: Any, with_eta: Synchronized[int]) -> None:
    """In the sandbox's process: approve each plan as soon as it is posted; count the ETA comments."""
    plans: list[str] = []
    wake = threading.Condition()
    seen_eta: set[str] = set()

    def noticed(key: str, marker: str) -> None:
        name = marker.rpartition(":")[2]
        if name.startswith("plan"):
            with wake:
                plans.append(key)
                wake.notify()
        elif name == "eta" and key not in seen_eta:
            seen_eta.add(key)
            with with_eta.get_lock():
                with_eta.value += 1

    add_comment, set_property = jira.add_comment, jira.set_comment_property

    def comment_added(key: str, author: str, body: str, **kwargs: Any) -> str:
        comment_id: str = add_comment(key, author, body, **kwargs)
        if marker := _marker(kwargs.get("properties")):
            noticed(key, marker)
        return comment_id

    def property_set(comment_id: str, prop_key: str, value: Any) -> Any:
        created = set_property(comment_id, prop_key, value)
        if prop_key == "mailunblock" and (marker := _marker({prop_key: value})):
            noticed(marker.split(":")[1], marker)
        return created

    def approve() -> None:
        while True:
            with wake:
                while not plans:
                    wake.wait()
                key = plans.pop(0)
            add_comment(key, APPROVER, "/approve")

    jira.add_comment, jira.set_comment_property = comment_added, property_set
    threading.Thread(target=approve, name="agent", daemon=True).start()


def serve(folder: str, tickets: int, tenants: int, latency: float, exchange_latency: float,
          with_eta: Synchronized[int], pipe: Connection, cpus: list[int] | None) -> None:
    """Child process: the sandbox with the burst's tickets; sends the config path, serves until told to stop."""
    from mailunblock.sandbox.server import Sandbox, to_toml  # only here: the measured process never loads it

    if cpus is not None:  # before the sandbox starts its threads: they inherit it
        os.sched_setaffinity(0, cpus)

    work = Path(folder)
    path = work / "burst-scenario.toml"
    path.write_text(to_toml(scenario(tickets, tenants)), encoding="utf-8")
    # Real time, as the poller's; enough threads that no request waits for one (each waits out its latency).
    with Sandbox(path, work / "sandbox", ports=EPHEMERAL, speed=1.0, threads=96) as box:
        jira: Any = box.jira
        for issue in list(jira.issues.values()):
            jira.set_labels(issue.key, [])
        for i in range(tickets):
            jira.create_issue(f"cannot send {i}", "megan.bowen@contoso.com", labels=["mail-blocked"],
                              affected_account=f"user{i:05d}@tenant{i % tenants:02d}.example")
        _agent(jira, with_eta)
        config = box.write_config(work / "mailunblock.toml", store={"data_dir": str(work / "data")},
                                  jira={"page_size": 100}, poller={"interval_seconds": 5})
        box.faults.latency.update(dict.fromkeys(("jira", "identity", "graph"), latency), exchange=exchange_latency)
        pipe.send({"config": str(config), "control": box.control_url})
        pipe.recv()  # the calls are asked for, then stop
        # A request inside a Graph JSON batch is logged too, but the batch is the call.
        pipe.send([(c.service, c.method, c.path, c.query, c.at.timestamp())
                   for c in box.calls.records() if not c.batched])
        pipe.recv()


@dataclass(frozen=True)
class Placement:
    """Which CPUs mailunblock (``[poller] cpus``) and the emulators run on."""

    mailunblock: list[int]
    emulators: list[int]


def placement(choice: str) -> Placement | None:
    """``auto``: with two CPUs or more, mailunblock on the first, the emulators on the others; ``none``: no pinning.

    The emulators stand for services that run elsewhere: on CPUs of their own they do not take mailunblock's.
    """
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if choice == "none" or len(allowed) < 2:
        return None
    return Placement(mailunblock=allowed[:1], emulators=allowed[1:])


def run(tickets: int, tenants: int, latency: float, exchange_latency: float, workers: int | None,
        timeout: float, cpus: Placement | None = None, batch: bool = False) -> dict[str, Any]:
    """One burst; the figures of mailunblock's process (``workers``: None for the configuration's)."""
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="mailunblock-burst-") as tmp:
        parent, child = context.Pipe()
        with_eta = context.Value("i", 0)
        server = context.Process(target=serve, daemon=True,
                                 args=(tmp, tickets, tenants, latency, exchange_latency, with_eta, child,
                                       cpus.emulators if cpus else None))
        server.start()
        if not parent.poll(300):
            server.kill()
            raise RuntimeError("the sandbox did not start within 300 s")
        ready = parent.recv()
        try:
            config = load_config(ready["config"])
            poller: dict[str, Any] = {"workers": workers} if workers is not None else {}
            poller["batch_scheduling"] = batch
            if cpus is not None:
                poller["cpus"] = cpus.mailunblock
            config = config.model_copy(update={"poller": config.poller.model_copy(update=poller)})
            result = _drive(config, tickets, with_eta, timeout)
            parent.send("calls")
            calls = parent.recv()
            result["http_floor_ms_per_call"] = _http_floor(config)  # after the log is read: not counted there
        finally:
            parent.send("stop")
            server.join(timeout=30)
    figures = _figures(calls, result, config, latency, exchange_latency)
    return {**result, **figures}


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


def _drive(config: Config, tickets: int, with_eta: Synchronized[int], timeout: float) -> dict[str, Any]:
    place(config.poller)  # as ``mailunblock run`` does with ``[poller] cpus`` and ``batch_scheduling``
    metrics = Metrics(_Clock(), config.poller.interval_seconds)
    runtime = build_runtime(config, _Clock(), metrics=metrics)
    counter = _SaveCounter(runtime)
    settle()  # as ``mailunblock run`` does once start-up is done
    usage0, cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
    cycles = [0]

    def finished() -> bool:
        return bool(with_eta.value >= tickets or time.perf_counter() - wall0 > timeout)

    def counted(_report: object) -> None:
        cycles[0] += 1

    run_forever(runtime.poller, config.poller.interval_seconds, counted, until=finished)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    runtime.store.engine.dispose()
    sent: Counter[tuple[str, str]] = Counter()
    for family in metrics.registry.collect():
        if family.name == "mailunblock_api_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    sent[(sample.labels["service"], sample.labels["tenant"])] += int(sample.value)
    return {
        "tickets": tickets, "with_eta": with_eta.value, "cycles": cycles[0], "wall_s": round(wall, 2),
        "cpu_ms_per_ticket": round(cpu * 1000 / tickets, 1),
        # Where that CPU went: the kernel's share is mostly threads handing the interpreter to each other.
        "cpu_system_ms_per_ticket": round((usage.ru_stime - usage0.ru_stime) * 1000 / tickets, 1),
        "context_switches_per_ticket": round((usage.ru_nvcsw + usage.ru_nivcsw - usage0.ru_nvcsw - usage0.ru_nivcsw)
                                             / tickets),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "workers": config.poller.workers, "_sent": sent,
        "saves_per_ticket": round(counter.saves / tickets, 2),
        "commits_per_ticket": round(counter.commits / tickets, 2),
    }


def _http_floor(config: Config, requests_per_worker: int = 10) -> float:
    """CPU (ms) of one plain ``requests`` keep-alive GET to the Jira emulator: the baseline of this run.

    Measured with the run's workers and latency, from this process, right after the burst: what the HTTP
    library alone costs per call on this machine, whatever mailunblock does around it.
    """
    url = f"{config.jira.url.rstrip('/')}/rest/api/3/serverInfo"
    verify = str(config.path(config.jira.ca_bundle)) if config.jira.ca_bundle else True

    def worker() -> None:
        with requests.Session() as session:
            session.trust_env = False
            for _ in range(requests_per_worker):
                session.get(url, verify=verify, timeout=30).raise_for_status()

    worker()  # the connection and TLS set-up are not the floor
    threads = [threading.Thread(target=worker) for _ in range(config.poller.workers)]
    cpu0 = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = len(threads) * requests_per_worker
    return round((time.process_time() - cpu0) * 1000 / calls, 3)


def _figures(calls: list[tuple[str, str, str, dict[str, str], float]], result: dict[str, Any], config: Config,
             latency: float, exchange_latency: float) -> dict[str, Any]:
    """Calls per ticket (from the sandbox's log) and the lower bound (from our per-tenant request counts)."""
    tickets = result["tickets"]
    by_service = Counter(service for service, *_ in calls if service in SERVICES)
    total = sum(by_service.values()) / tickets
    tokens = sum(1 for service, method, *_ in calls if service == "identity" and method == "POST")
    waits = {"exchange": exchange_latency}
    limits = config.http.in_flight.model_dump()
    sent: Counter[tuple[str, str]] = result.pop("_sent")
    lanes = {f"{service}/{tenant or 'site'}": count * waits.get(service, latency) / limits[service]
             for (service, tenant), count in sent.items() if service in limits}
    lanes["workers"] = sum(n * waits.get(s, latency) for (s, _), n in sent.items()) / config.poller.workers
    bound = max(lanes.values(), default=0.0)
    return {
        "calls_per_ticket": {**{s: round(by_service[s] / tickets, 2) for s in SERVICES},
                             "total": round(total, 2)},
        "token_requests_per_tenant": round(tokens / max(1, len(config.tenants)), 2),
        "bound_s": round(bound, 2), "bound_lane": max(lanes, key=lambda k: lanes[k]) if lanes else "",
        "jira_lane_use_5s": _lane_use([at for service, *_, at in calls if service == "jira"], latency,
                                      limits["jira"]),
        "wall_to_bound": round(result["wall_s"] / bound, 2) if bound else None,
        # Our CPU per ticket over what plain requests calls would cost for the same calls (1.0: nothing else).
        "cpu_to_http_floor": round(result["cpu_ms_per_ticket"] / (result["http_floor_ms_per_call"] * total), 2)
        if total else None,
    }


def _lane_use(ends: list[float], latency: float, limit: int, bucket: float = 5.0) -> list[float]:
    """Per ``bucket`` seconds from the first call, the share of a lane's capacity spent in injected latency.

    From when each call was answered (the sandbox's log) and the latency it carried: 1.0 is ``limit`` calls
    in flight all the time, each taking no longer than its latency.
    """
    if not ends:
        return []
    first = min(ends)
    used = [0.0] * (int((max(ends) - first) // bucket) + 1)
    for end in ends:
        used[int((end - first) // bucket)] += latency
    return [round(u / (bucket * limit), 2) for u in used]


class _Clock:
    """The poller's clock: real time, as the sandbox's (speed 1): nothing here waits for the ETA window."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def main() -> None:
    """Run the burst and the throughput comparison; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--small", type=int, default=50, help="tickets of the throughput comparison (0: skip)")
    parser.add_argument("--workers", type=int, default=64, help="the configured concurrency (poller.workers)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per call (Jira, identity, Graph)")
    parser.add_argument("--exchange-latency", type=float, default=0.5, help="seconds per Exchange admin call")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds per run")
    parser.add_argument("--cpus", choices=("auto", "none"), default="auto",
                        help="auto: mailunblock ([poller] cpus) on the first CPU, the emulators on the others")
    parser.add_argument("--scheduling", choices=("batch", "normal"), default="batch",
                        help="batch: mailunblock as [poller] batch_scheduling = true runs it; normal: the default")
    args = parser.parse_args()
    cpus, batch = placement(args.cpus), args.scheduling == "batch"
    result = run(args.tickets, args.tenants, args.latency, args.exchange_latency, args.workers, args.timeout, cpus,
                 batch)
    if args.small:
        serial = run(args.small, args.tenants, args.latency, args.exchange_latency, 1, args.timeout, cpus, batch)
        parallel = run(args.small, args.tenants, args.latency, args.exchange_latency, args.workers, args.timeout,
                       cpus, batch)
        result["throughput_ratio"] = round(serial["wall_s"] / parallel["wall_s"], 2)
        result["small"] = {"tickets": args.small, "serial_wall_s": serial["wall_s"],
                           "parallel_wall_s": parallel["wall_s"]}
    result["cpus"] = asdict(cpus) if cpus else None
    result["scheduling"] = args.scheduling
    print(f"mailunblock burst — {args.tickets} tickets over {args.tenants} tenants, {args.workers} workers, "
          f"{args.latency * 1000:.0f} ms per call ({args.exchange_latency * 1000:.0f} ms Exchange), EMULATORS")
    for name in ("wall_s", "bound_s", "bound_lane", "wall_to_bound", "throughput_ratio", "cpu_ms_per_ticket",
                 "cpu_system_ms_per_ticket", "context_switches_per_ticket", "http_floor_ms_per_call",
                 "cpu_to_http_floor", "peak_rss_mb", "saves_per_ticket",
                 "commits_per_ticket", "token_requests_per_tenant", "cycles", "with_eta", "cpus", "scheduling"):
        if name in result:
            print(f"  {name:28} {result[name]}")
    print("  calls_per_ticket             " + ", ".join(f"{k} {v}" for k, v in result["calls_per_ticket"].items()))
    print("  jira_lane_use_5s             " + " ".join(f"{u:.2f}" for u in result["jira_lane_use_5s"]))
    print(json.dumps(result, sort_keys=True))
    sys.exit(0 if result["with_eta"] == args.tickets else 1)


if __name__ == "__main__":
    main()
