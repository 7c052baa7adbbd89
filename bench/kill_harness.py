"""Kill harness: real ``mailunblock run`` replicas, SIGKILLed at random moments, until every ticket is done.

The sandbox (EMULATORS) runs in this process with N tickets over T tenants; an agent approves every plan
as soon as it appears (the sandbox's auto-approving agent). ``--replicas`` copies of ``mailunblock run``
share one state store (SQLite in a shared data folder, or a private PostgreSQL database created for the
run and dropped afterwards). The harness SIGKILLs a replica every ``--kill-interval`` seconds — often
while one of its requests is in flight (the sandbox lists pending requests with the client's port; the
password PATCH, the session revocation and Remove-BlockedSenderAddress are slowed to widen that window)
— restarts it, and repeats until every ticket has its ETA comment. ``--faults`` adds 429 (Retry-After),
5xx, timeouts (a delay longer than the client timeout; the request is then served, its answer lost) and
token-endpoint failures on every service.

Then it checks, from the sandbox's state and call log and from the state store:
  resets     exactly one applied password reset per approved ticket's account
  reveal     the password the vault reveals (``mailunblock reveal`` for a few tickets) is the one in effect
  unblocks   exactly one applied unblock per account (at most one: never twice)
  comments   each mailunblock comment (by marker) once per ticket
  finished   every ticket has its ETA comment and stands at waiting_for_send (none lost, stuck or escalated),
             or is parked by design: it waits out the unblock grace (an unblock a kill left uncertain is
             settled 30 minutes later by reading the list), the reset grace (a reset PATCH a kill may have
             cut is looked at again 2 minutes later) or a step's retry backoff after a fault (5 min,
             then 10 ...); parked tickets are counted, and checked for at most one reset and one unblock.
             ``--wait-parked`` waits for them too.
  takeover   every ticket whose request was cut by a kill was carried on by another process

    .venv/bin/python bench/kill_harness.py --kills 300 --replicas 3 --store postgres [--faults]

Prints its counts and one JSON line; exits 1 when an invariant fails (the violations are printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from burst import EPHEMERAL, scenario
from mailunblock.plugin.clock import SystemClock
from mailunblock.plugin.config import ConfigError, StoreConfig, load_config
from mailunblock.plugin.services import open_store, open_vault
from mailunblock.plugin.store import StateStore
from mailunblock.sandbox.core import CallRecord, FaultRule, InFlightRequest
from mailunblock.sandbox.server import Sandbox, to_toml
from mailunblock.workflows.state import Stage, TicketState

MAILUNBLOCK = Path(sys.executable).with_name("mailunblock")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REPORTER = "megan.bowen@contoso.com"
SERVICES = ("jira", "identity", "graph", "exchange")
HTTP_TIMEOUT = 2.0  # the replicas' http.timeout_seconds: the timeout faults wait longer than this
WINDOW_SECONDS = 0.4  # extra latency on the side-effect requests, so kills land while they are pending
DONE_STAGE = "waiting_for_send"
# The tag of a double reset that re-sent the vaulted password because a kill cut the first PATCH in flight.
RESENT_AFTER_CUT = "[same password re-sent after a kill cut the PATCH in flight]"


def side_effect(request: InFlightRequest) -> str:
    """What a pending request does, in the harness's words ("reset", "revoke", "unblock", "comment", ...)."""
    if request.service == "graph" and request.method == "PATCH" and "/users/" in request.path:
        return "reset"
    if request.service == "graph" and request.path.endswith("/revokeSignInSessions"):
        return "revoke"
    if request.service == "exchange":
        return "unblock" if request.cmdlet == "Remove-BlockedSenderAddress" else "list"
    if request.service == "jira" and request.method == "POST" and request.path.endswith("/comment"):
        return "comment"
    if request.service == "identity":
        return "token"
    return "read" if request.method == "GET" else "other"


def subject(request: InFlightRequest | CallRecord) -> str | None:
    """The ticket key, user or address a request is about, when its path or body names one."""
    if found := re.search(r"/issue/([A-Z][A-Z0-9]*-\d+)", request.path):
        return found.group(1)
    if found := re.search(r"/users/([^/]+)", request.path):
        return found.group(1).lower()
    parameters = request.body.get("CmdletInput", {}).get("Parameters", {}) if isinstance(request.body, dict) else {}
    address = parameters.get("SenderAddress") if isinstance(parameters, dict) else None
    return address.lower() if isinstance(address, str) else None


def client_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets process ``pid`` holds (Linux /proc): who sent a pending request."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass
class Replica:
    """One ``mailunblock run`` slot: the process now running in it (or when it restarts)."""

    slot: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    starts: int = 0

    def alive(self) -> bool:
        """Whether its process runs."""
        return self.process is not None and self.process.poll() is None


@dataclass
class Kill:
    """One SIGKILL: when, whom, and the requests that process had pending."""

    at: datetime
    slot: int
    uptime: float
    pending: list[InFlightRequest] = field(default_factory=list)
    sniped: bool = False  # chosen because a side-effect request of its was pending


@dataclass
class Settings:
    """One harness run."""

    tickets: int = 30
    tenants: int = 3
    replicas: int = 3
    store: str = "sqlite"
    pg_url: str = DEFAULT_PG
    kills: int = 20
    kill_interval: tuple[float, float] = (0.4, 1.6)
    in_flight_share: float = 0.6
    faults: bool = False
    fault_probability: float = 0.03
    latency: float = 0.01
    timeout: float = 300.0
    reveal_cli: int = 2
    seed: int = 1
    wait_parked: bool = False


class Harness:
    """The sandbox, the replicas and the kill loop of one run."""

    def __init__(self, settings: Settings, work: Path, store_url: str | None) -> None:
        self.settings = settings
        self.work = work
        self.random = random.Random(settings.seed)
        path = work / "kill-scenario.toml"
        # Accounts for the first tickets and for later waves: when every ticket is done before the kills
        # are, another wave is filed (a third of the first one), so a run always makes its kills.
        self.accounts_total = settings.tickets * 4
        path.write_text(to_toml(scenario(self.accounts_total, settings.tenants)), encoding="utf-8")
        self.box = Sandbox(path, work / "sandbox", ports=EPHEMERAL, speed=1.0, threads=64)  # the replicas' time
        self.box.faults.seed(settings.seed)
        self.store_url = store_url
        self.replicas = [Replica(i, work / f"replica-{i}.log") for i in range(settings.replicas)]
        self.kill_log: list[Kill] = []
        self.unexpected_exits: list[tuple[int, int | None, str]] = []
        self.keys: list[str] = []
        self._why: dict[str, str] = {}  # ticket -> why it stopped (escalated, refused), from `mailunblock status`
        self.accounts: dict[str, tuple[str, str]] = {}  # key -> (tenant, address)
        self._store: StateStore | None = None
        self.finished: set[str] = set()
        self.waves = 0
        self.parked_keys: dict[str, str] = {}

    # ------------------------------------------------------------------ setup

    def prepare(self) -> Path:
        """Tickets, the auto-approving agent, latency, faults and the replicas' configuration."""
        jira: Any = self.box.jira
        for issue in list(jira.issues.values()):
            jira.set_labels(issue.key, [])
        self.file_tickets(self.settings.tickets)
        control = self.box.control_url
        requests.post(f"{control}/jira/auto-approve", json={"agent": "alice"}, timeout=10).raise_for_status()
        self.box.faults.latency.update(dict.fromkeys(SERVICES, self.settings.latency))
        if self.settings.faults:
            self._inject_faults()
        windows = [
            FaultRule("graph", status=None, method="PATCH", path_contains="/users/", label="window-reset"),
            FaultRule("graph", status=None, method="POST", path_contains="/revokeSignInSessions",
                      label="window-revoke"),
            FaultRule("exchange", status=None, cmdlet="Remove-BlockedSenderAddress", label="window-unblock"),
            FaultRule("jira", status=None, method="POST", path_contains="/comment", label="window-comment"),
        ]
        for rule in windows:
            rule.count, rule.delay_seconds = 10**9, WINDOW_SECONDS / (2 if rule.service == "jira" else 1)
            self.box.faults.add(rule)
        store: dict[str, Any] = {"data_dir": str(self.work / "data")}
        if self.store_url:
            store["url"] = self.store_url
        if "lease_seconds" in StoreConfig.model_fields:  # the per-ticket claims' lease, when the store has one
            store["lease_seconds"] = 3
        return self.box.write_config(
            self.work / "mailunblock.toml", store=store, poller={"interval_seconds": 1},
            http={"timeout_seconds": HTTP_TIMEOUT, "max_retries": 3, "max_retry_wait_seconds": 5})

    def file_tickets(self, count: int) -> int:
        """File up to ``count`` more tickets, each for an account no ticket named yet; return how many."""
        jira: Any = self.box.jira
        first = len(self.keys)
        for i in range(first, min(first + count, self.accounts_total)):
            tenant = f"tenant{i % self.settings.tenants:02d}"
            address = f"user{i:05d}@{tenant}.example"
            key = jira.create_issue(f"cannot send {i}", REPORTER, labels=["mail-blocked"], affected_account=address)
            self.keys.append(key)
            self.accounts[key] = (tenant, address)
        self.waves += len(self.keys) > first
        return len(self.keys) - first

    def _inject_faults(self) -> None:
        """Probability rules on every service; the token endpoint's own come first (the first match wins)."""
        p, token = self.settings.fault_probability, "/oauth2/v2.0/token"
        rules = [
            FaultRule("identity", status=503, path_contains=token, probability=0.2, label="token-5xx"),
            FaultRule("identity", status=None, path_contains=token, delay_seconds=HTTP_TIMEOUT + 0.5,
                      probability=0.1, label="token-timeout"),
        ]
        for service in SERVICES:
            rules += [
                FaultRule(service, status=429, retry_after=1, probability=p, label="429"),
                FaultRule(service, status=503, probability=p, label="5xx"),
                FaultRule(service, status=None, delay_seconds=HTTP_TIMEOUT + 0.5, probability=p / 2, label="timeout"),
            ]
        for rule in rules:
            rule.count = 10**9
            self.box.faults.add(rule)

    # ------------------------------------------------------------------ replicas

    def _start(self, replica: Replica, config: Path) -> None:
        handle = replica.log.open("ab")
        replica.process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            [str(MAILUNBLOCK), "run", "--config", str(config)], stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        replica.started = time.monotonic()
        replica.starts += 1

    def _kill(self, replica: Replica, sniped: bool, ports: set[int] | None = None) -> None:
        """SIGKILL, then note the requests of its still pending at the emulators: they were cut mid-flight."""
        assert replica.process is not None
        ports = client_ports(replica.process.pid) if ports is None else ports
        replica.process.send_signal(signal.SIGKILL)
        at, killed = self.box.clock.now(), time.monotonic()
        pending = [r for r in self.box.context.inflight.snapshot() if r.remote_port in ports and r.started < killed]
        replica.process.wait()
        self.kill_log.append(Kill(at, replica.slot, killed - replica.started, pending, sniped))
        replica.process = None
        replica.restart_at = time.monotonic() + self.random.uniform(0.0, 0.5)

    def _snipe(self, alive: list[Replica], comments: bool) -> bool:
        """Kill the replica that has a directory or Exchange write (or, with ``comments``, a comment) pending."""
        snapshot = self.box.context.inflight.snapshot()
        # Directory and Exchange writes first: they are rarer than comments and matter more.
        pending = ([r for r in snapshot if side_effect(r) in ("reset", "revoke", "unblock")]
                   or [r for r in snapshot if comments and side_effect(r) == "comment"])
        if not pending:
            return False
        target = self.random.choice(pending)
        for replica in alive:
            assert replica.process is not None
            ports = client_ports(replica.process.pid)
            if target.remote_port in ports:
                self._kill(replica, sniped=True, ports=ports)
                return True
        return False

    # ------------------------------------------------------------------ the loop

    def finished_keys(self, config: Path) -> set[str]:
        """Tickets with mailunblock's ETA comment whose state has moved on to waiting for the first send."""
        jira: Any = self.box.jira
        bot = jira.user(jira.bot_account).account_id
        states = self.states(config)
        for key in set(self.keys) - self.finished:
            state = states.get(key)
            if state is not None and state.stage is Stage.WAITING_FOR_SEND and any(
                    c.author == bot and marker(key, c) == "eta" for c in jira.comments(key)):
                self.finished.add(key)
        return set(self.finished)

    def states(self, config: Path) -> dict[str, TicketState]:
        """The state store's tickets now (none before a replica created the store)."""
        if self._store is None:
            try:
                self._store = open_store(load_config(config), existing=True)
            except ConfigError:
                return {}
        return {state.issue_key: state for state in self._store.all_states()}

    def parked(self, config: Path) -> dict[str, str]:
        """Tickets waiting by design, and why: the unblock or reset grace, or a retry backoff after a fault.

        An unblock a kill left uncertain is settled 30 minutes later by reading the list; a reset whose
        PATCH a kill may have cut is looked at again once it cannot land (``reset_grace``); a step that
        failed after the HTTP layer's retries (a POST is never retried) is tried again 5 minutes later,
        then 10 ... — waits longer than the harness's runs. (A comment whose POST timed out may already be
        on the ticket: the retry finds it by its marker.)
        """
        later = datetime.now(UTC) + timedelta(seconds=30)  # a Retry-After of seconds is no reason to stop
        parked: dict[str, str] = {}
        for key, state in self.states(config).items():
            if state.is_terminal or key in self.finished or state.retry_at is None or state.retry_at <= later:
                continue
            if state.stage is Stage.LIST_CHECKED and set(state.unblock_intents) - set(state.unblocked_addresses):
                parked[key] = "unblock grace"
            elif state.password_intent_at is not None and state.password_reset_at is None and not state.failures:
                parked[key] = "reset grace"  # a kill may have cut its PATCH: looked at again once it cannot land
            elif state.failures:
                parked[key] = "retry backoff"
        return parked

    def run(self, config: Path) -> float:
        """Start the replicas, kill and restart them until every ticket is done; return the wall time."""
        settings = self.settings
        begin = time.monotonic()
        for replica in self.replicas:
            self._start(replica, config)
        next_kill = begin + self.random.uniform(*settings.kill_interval)
        snipe_until: float | None = None
        next_check = begin
        try:
            while True:
                now = time.monotonic()
                if now - begin > settings.timeout:
                    break
                if now >= next_check:
                    next_check = now + 0.5
                    # The reset grace (2 min) is waited for when the run has time: the re-send it leads to
                    # is what a cut PATCH puts at risk. Longer waits by design are left parked.
                    waiting = set() if settings.wait_parked else {
                        key for key, why in self.parked(config).items() if why != "reset grace"}
                    wave = max(1, settings.tickets // 3)
                    if self.finished_keys(config) | waiting >= set(self.keys) and (
                            len(self.kill_log) >= settings.kills or not self.file_tickets(wave)):
                        break
                for replica in self.replicas:
                    if replica.process is not None and replica.process.poll() is not None:
                        code = replica.process.returncode
                        self.unexpected_exits.append((replica.slot, code, _tail(replica.log)))
                        replica.process, replica.restart_at = None, now + 0.2
                    if replica.process is None and now >= replica.restart_at:
                        self._start(replica, config)
                if len(self.kill_log) < settings.kills and now >= next_kill:
                    alive = [r for r in self.replicas if r.alive() and now - r.started > 0.3]
                    if alive:
                        if snipe_until is None:  # wait up to 4 s for a write in flight (a comment after 2.5 s)
                            snipe_until = now + 4.0 if self.random.random() < settings.in_flight_share else now
                        if (now < snipe_until and self._snipe(alive, comments=snipe_until - now < 1.5)) \
                                or now >= snipe_until:
                            if now >= snipe_until:
                                self._kill(self.random.choice(alive), sniped=False)
                            next_kill = time.monotonic() + self.random.uniform(*settings.kill_interval)
                            snipe_until = None
                time.sleep(0.01)
        finally:
            self._stop_all()
        return time.monotonic() - begin

    def _stop_all(self) -> None:
        for replica in self.replicas:
            if replica.alive():
                assert replica.process is not None
                replica.process.terminate()
        for replica in self.replicas:
            if replica.process is not None:
                try:
                    replica.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    replica.process.kill()
                    replica.process.wait()

    # ------------------------------------------------------------------ invariants

    def check(self, config: Path) -> dict[str, list[str]]:
        """Every invariant's violations (an empty list: it holds)."""
        jira: Any = self.box.jira
        microsoft = self.box.microsoft
        bot = jira.user(jira.bot_account).account_id
        alice = jira.user("alice").account_id
        calls = self.box.calls.records()
        finished = self.finished_keys(config)
        violations: dict[str, list[str]] = {name: [] for name in
                                            ("resets", "reveal", "unblocks", "comments", "finished", "takeover")}
        stages = self._stages(config)
        parked = self.parked(config)
        for key in self.keys:
            tenant, address = self.accounts[key]
            approved = any(c.author == alice for c in jira.comments(key))
            resets = microsoft.reset_count(tenant, address)
            if resets > 1 or (approved and resets != 1 and key not in parked):
                user = _user_id(self.box, tenant, address)
                attempts = [f"{c.at:%H:%M:%S.%f} {c.status}" for c in calls if c.service == "graph"
                            and c.method == "PATCH" and (address in c.path.lower() or user in c.path.lower())]
                distinct = microsoft.distinct_passwords(tenant, address)
                cut = any(side_effect(r) == "reset" and subject(r) in (user, address)
                          for k in self.kill_log for r in k.pending)
                why = (f"{RESENT_AFTER_CUT} " if cut and distinct == 1 and resets > 1 else "") + (
                    f"{resets} applied resets, {distinct} distinct password(s); a kill cut a reset PATCH of this "
                    f"account: {'yes' if cut else 'no'}; PATCH calls (answered at, status) {attempts}")
                violations["resets"].append(f"{key} {address}: {why}")
            with microsoft.lock:
                unblocks = len(microsoft.tenants[tenant].unblocks.get(address, []))
            if unblocks != 1 and not (key in parked and unblocks == 0):
                removes = [f"{c.at:%H:%M:%S.%f} {c.status}" for c in calls if c.cmdlet == "Remove-BlockedSenderAddress"
                           and address in json.dumps(c.body).lower()]
                violations["unblocks"].append(f"{key} {address}: {unblocks} applied unblocks; calls {removes}")
            markers = Counter(marker(key, c) for c in jira.comments(key) if c.author == bot)
            twice = {name: n for name, n in markers.items() if n > 1}
            if twice:
                violations["comments"].append(f"{key}: {twice}")
            if key not in parked and (key not in finished or stages.get(key) != DONE_STAGE):
                why = f" ({self._why[key]})" if key in self._why else ""  # a stop's reason, as `status` tells it
                violations["finished"].append(f"{key}: stage {stages.get(key)}{why}, markers {sorted(markers)}")
        violations["reveal"] = self._reveal(config, skip={k for k in parked if self._resets(k) == 0})
        violations["takeover"] = [f"kill at {k.at:%H:%M:%S} of replica {k.slot}: {about} not finished"
                                  for k in self.kill_log for about in self._cut_tickets(k)
                                  if about not in finished | set(parked)]
        self.parked_keys = parked
        return violations

    def _cut_tickets(self, kill: Kill) -> set[str]:
        """The tickets whose requests a kill cut."""
        by_subject = {key: key for key in self.keys}
        for key, (_, address) in self.accounts.items():
            by_subject[address] = key
            by_subject[_user_id(self.box, *self.accounts[key])] = key
        return {by_subject[s] for r in kill.pending if (s := subject(r)) in by_subject}

    def _stages(self, config: Path) -> dict[str, str]:
        done = subprocess.run([str(MAILUNBLOCK), "status", "--json", "--config", str(config)],  # noqa: S603
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            return {}
        stories = json.loads(done.stdout)
        self._why = {story["ticket"]: f"{story.get('reason')}: {story.get('reason_detail')}; failures "
                     f"{story.get('failures')}" for story in stories if story.get("reason")}
        return {story["ticket"]: story["stage"] for story in stories}

    def _resets(self, key: str) -> int:
        return self.box.microsoft.reset_count(*self.accounts[key])

    def _reveal(self, config: Path, skip: set[str]) -> list[str]:
        """Reveal every password (a few with ``mailunblock reveal``) and compare with the one in effect."""
        wrong: list[str] = []
        cfg = load_config(config)
        store = open_store(cfg, existing=True)
        vault = open_vault(cfg, store, SystemClock(), create_key=False)
        try:
            for n, key in enumerate(k for k in self.keys if k not in skip):
                tenant, address = self.accounts[key]
                if n < self.settings.reveal_cli:
                    shown = subprocess.run([str(MAILUNBLOCK), "reveal", key, "--config", str(config)],  # noqa: S603
                                           capture_output=True, text=True, timeout=120, check=False)
                    password = shown.stdout.strip() if shown.returncode == 0 else None
                    why = shown.stderr.strip().splitlines()[-1:] if shown.returncode else []
                else:
                    try:
                        password, why = vault.reveal(key, revealed_by="kill harness"), []
                    except Exception as exc:  # noqa: BLE001 - reported as a violation, whatever it is
                        password, why = None, [f"{type(exc).__name__}: {exc}"]
                if password is None:
                    wrong.append(f"{key}: no password to reveal ({' '.join(why)})")
                elif not microsoft_password(self.box, tenant, address, password):
                    wrong.append(f"{key}: the revealed password is not the one in effect for {address}")
        finally:
            store.engine.dispose()
        return wrong

    def close(self) -> None:
        """Let go of the state store."""
        if self._store is not None:
            self._store.engine.dispose()

    def dump(self, folder: Path) -> None:
        """The call log (one JSON object a line) and the kills, as evidence next to the replicas' logs."""
        with (folder / "calls.jsonl").open("w", encoding="utf-8") as out:
            for c in self.box.calls.records():
                out.write(json.dumps({"at": c.at.isoformat(), "service": c.service, "method": c.method,
                                      "path": c.path, "cmdlet": c.cmdlet, "status": c.status, "body": c.body},
                                     default=str) + "\n")
        with (folder / "kills.jsonl").open("w", encoding="utf-8") as out:
            for k in self.kill_log:
                out.write(json.dumps({"at": k.at.isoformat(), "slot": k.slot, "uptime": round(k.uptime, 2),
                                      "sniped": k.sniped, "pending": [
                                          {"what": side_effect(r), "path": r.path, "about": subject(r)}
                                          for r in k.pending]}) + "\n")

    # ------------------------------------------------------------------ counts

    def takeover_seconds(self) -> list[float]:
        """For each kill that cut requests: seconds until another process's next request about the same thing.

        The call log times a request when it is answered, and the emulators still answer the cut requests
        after the kill: those records (the first matching each cut request) are not the takeover.
        """
        calls = self.box.calls.records()
        waits = []
        for kill in self.kill_log:
            after = [c for c in calls if c.at > kill.at]
            for cut in kill.pending:
                same = next((c for c in after if (c.service, c.method, c.path, c.cmdlet)
                             == (cut.service, cut.method, cut.path, cut.cmdlet)), None)
                if same is not None:
                    after.remove(same)
            about = {subject(r) for r in kill.pending} - {None}
            later = [c.at for c in after if subject(c) in about]
            if about and later:
                waits.append(round((min(later) - kill.at).total_seconds(), 2))
        return sorted(waits)

    def counts(self, wall: float) -> dict[str, Any]:
        """The run's figures."""
        in_flight = [k for k in self.kill_log if k.pending]
        waits = self.takeover_seconds()
        cut = Counter(side_effect(r) for k in in_flight for r in k.pending)
        faults: Counter[str] = Counter()
        for (_, kind), n in self.box.faults.injected.items():
            faults[kind] += n
        by_service = {f"{service}:{kind}": n for (service, kind), n in sorted(self.box.faults.injected.items())
                      if not kind.startswith("window")}
        return {
            "store": self.settings.store, "replicas": self.settings.replicas, "tickets": len(self.keys),
            "waves": self.waves,
            "tenants": self.settings.tenants, "kills": len(self.kill_log), "kills_in_flight": len(in_flight),
            "kills_sniped": sum(k.sniped for k in self.kill_log),
            "kills_mid_side_effect": sum(any(side_effect(r) in ("reset", "revoke", "unblock", "comment")
                                             for r in k.pending) for k in in_flight),
            "requests_cut": dict(sorted(cut.items())),
            "faults": {k: faults[k] for k in sorted(faults) if not k.startswith("window")},
            "faults_by_service": by_service,
            "takeover_s": {"median": waits[len(waits) // 2], "max": waits[-1]} if waits else None,
            "parked": dict(sorted(Counter(self.parked_keys.values()).items())),
            "parked_tickets": dict(sorted(self.parked_keys.items())),
            "starts": sum(r.starts for r in self.replicas), "unexpected_exits": len(self.unexpected_exits),
            "calls": len(self.box.calls.records()), "wall_s": round(wall, 1),
        }


def marker(key: str, comment: Any) -> str:
    """The name in a comment's mailunblock marker property ("" when it has none)."""
    value = comment.properties.get("mailunblock")
    text = str(value.get("marker", "")) if isinstance(value, dict) else ""
    return text.removeprefix(f"mailunblock:{key}:")


def microsoft_password(box: Sandbox, tenant: str, address: str, password: str) -> bool:
    """Whether the directory holds ``password`` for the user now."""
    return box.microsoft.password_in_effect(tenant, address, password)


def _user_id(box: Sandbox, tenant: str, address: str) -> str:
    with box.microsoft.lock:
        user = box.microsoft.tenants[tenant].user(address)
        return user.id.lower() if user is not None else address


def _tail(log: Path, lines: int = 8) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def private_database(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database for one run (dropped afterwards); its URL."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"harness_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        raise SystemExit(f"PostgreSQL not reachable at {admin_url}: {type(exc).__name__} (see --pg-url)") from None
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run(settings: Settings, keep: Path | None = None) -> dict[str, Any]:
    """One harness run: its counts, invariant results and ``ok``; ``keep``: the work folder to leave behind."""
    with contextlib.ExitStack() as stack:
        if keep is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mailunblock-kill-")))
        else:
            work = keep
            work.mkdir(parents=True, exist_ok=True)
        url = stack.enter_context(private_database(settings.pg_url)) if settings.store == "postgres" else None
        harness = Harness(settings, work, url)
        with harness.box:
            config = harness.prepare()
            wall = harness.run(config)
            violations = harness.check(config)
            result = harness.counts(wall)
            if keep is not None:
                harness.dump(keep)
            harness.close()
        result["invariants"] = {name: found or "ok" for name, found in violations.items()}
        result["ok"] = not any(violations.values())
        result["exits"] = [{"slot": slot, "code": code, "log": tail} for slot, code, tail in harness.unexpected_exits]
        return result


def main() -> None:
    """Parse the options, run, print the counts and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=300)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--pg-url", default=os.environ.get("MAILUNBLOCK_TEST_PG", DEFAULT_PG),
                        help="an admin URL; the run creates and drops its own database there")
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--faults", action="store_true", help="429, 5xx, timeouts and token failures everywhere")
    parser.add_argument("--fault-probability", type=float, default=0.03)
    parser.add_argument("--kill-interval", type=float, nargs=2, default=(0.4, 1.6), metavar=("MIN", "MAX"))
    parser.add_argument("--in-flight-share", type=float, default=0.6,
                        help="share of kills that wait (up to 4 s) for a side-effect request in flight")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before unfinished tickets count as stuck")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wait-parked", action="store_true",
                        help="wait for tickets parked by design (unblock grace, retry backoff) to finish too")
    parser.add_argument("--keep", type=Path, help="work in this folder and leave it (logs, config, calls.jsonl)")
    args = parser.parse_args()
    settings = Settings(tickets=args.tickets, tenants=args.tenants, replicas=args.replicas, store=args.store,
                        pg_url=args.pg_url, kills=args.kills, kill_interval=tuple(args.kill_interval),
                        in_flight_share=args.in_flight_share, faults=args.faults,
                        fault_probability=args.fault_probability, timeout=args.timeout, seed=args.seed,
                        wait_parked=args.wait_parked)
    result = run(settings, args.keep)
    print(f"mailunblock kill harness — {result['replicas']} replica(s) on {result['store']}, "
          f"{result['tickets']} tickets over {result['tenants']} tenants, EMULATORS")
    for name in ("tickets", "waves", "kills", "kills_in_flight", "kills_mid_side_effect", "kills_sniped",
                 "requests_cut", "takeover_s", "faults", "parked", "starts", "unexpected_exits", "calls", "wall_s"):
        print(f"  {name:22} {result[name]}")
    for name, verdict in result["invariants"].items():
        print(f"  invariant {name:12} {'ok' if verdict == 'ok' else 'VIOLATED'}")
        for line in [] if verdict == "ok" else verdict:
            print(f"      {line}")
    for exit_ in result["exits"][:5]:
        print(f"  replica {exit_['slot']} exited by itself ({exit_['code']}):\n    "
              + exit_["log"].replace("\n", "\n    "))
    print(json.dumps(result, sort_keys=True))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
