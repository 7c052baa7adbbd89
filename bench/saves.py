"""Benchmark: what the state store costs per save, on a SQLite file (synchronous=FULL) as in production.

Replays the saves of one remediation — first sight to the ETA comment, as the workflow makes them — for N
tickets, interleaved as a poll cycle interleaves them, and prints the CPU time and wall time per save and
per ticket, beside a baseline measured in the same run: one bare ``UPDATE`` of the ticket's row per save
(what any durable store must pay: the statement and the synchronous commit).

Then the same replay from ``--workers`` threads at once (each ticket's saves in order, on one thread, as a
worker pool makes them), on the store as ``mailunblock run`` opens it (this process's writes take turns and
those that waited share one commit) and on the same store over an engine without those turns (each write
its own transaction, SQLite's busy handler between them): saves per second, CPU per save and commits per
save of each, and their ratios.

    .venv/bin/python bench/saves.py [--tickets 200] [--workers 64]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailunblock.plugin.db import SQLITE_CONNECTIONS, create_store_engine, sqlite_pragmas
from mailunblock.plugin.db import tickets as ticket_rows
from mailunblock.plugin.store import StateStore
from mailunblock.workflows.state import Stage, TicketState
from sqlalchemy import create_engine, event, update

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
Step = Callable[[TicketState, datetime], None]


def _posted(name: str) -> Step:
    def step(state: TicketState, _at: datetime) -> None:
        state.pending = (*state.pending, name)

    return step


def _triaged(state: TicketState, _at: datetime) -> None:
    state.tenant, state.account_id = "contoso", f"id-{state.issue_key}"
    state.account_upn = f"{state.issue_key.lower()}@contoso.com"
    state.account_addresses = (state.account_upn,)
    state.has_mailbox, state.listed_at_triage = True, state.account_addresses


def _confirm(name: str, stage: Stage | None = None) -> Step:
    def step(state: TicketState, at: datetime) -> None:
        state.pending = tuple(p for p in state.pending if p != name)
        state.posted[name] = f"c-{name}"
        if stage is not None:
            state.enter(stage, at)

    return step


def _password(state: TicketState, at: datetime) -> None:
    state.enter(Stage.APPROVED, at)
    state.password_intent_at, state.password_changed_before = at, at - timedelta(days=30)


def _sessions(state: TicketState, at: datetime) -> None:
    state.password_reset_at = at
    state.enter(Stage.PASSWORD_RESET, at)
    state.sessions_intent_at, state.sessions_valid_before = at, at - timedelta(days=30)


def _unblock(state: TicketState, at: datetime) -> None:
    state.sessions_revoked_at = at
    for stage in (Stage.SESSIONS_REVOKED, Stage.MAILBOX_CHECKED, Stage.LIST_CHECKED):
        state.enter(stage, at)
    state.inbox_rules_checked, state.listed_addresses = True, state.account_addresses
    state.unblock_intents, state.unblocked_at = state.account_addresses, at


def _unblocked(state: TicketState, _at: datetime) -> None:
    state.unblocked_addresses = state.account_addresses


def _eta(state: TicketState, at: datetime) -> None:
    state.eta_start, state.eta_end = at + timedelta(hours=3), at + timedelta(hours=4)
    state.next_check_at = state.eta_start


def _then(*steps: Step) -> Step:
    def step(state: TicketState, at: datetime) -> None:
        for one in steps:
            one(state, at)

    return step


# One remediation's saves, as the workflow makes them (each entry: what changed since the previous save):
# an intent before each side effect, carrying the confirmations held back since the previous one.
SAVES: tuple[Step, ...] = (
    _triaged, _posted("ack"), _then(_confirm("ack"), _posted("plan")), _confirm("plan", Stage.AWAITING_APPROVAL),
    _password, _sessions, _unblock, _then(_unblocked, _eta, _posted("summary")),
    _then(_confirm("summary"), _posted("eta")), _confirm("eta", Stage.WAITING_FOR_SEND),
)


def _replay(tickets: int) -> Iterator[TicketState]:
    """Every ticket through each save in turn (a cycle advances every ticket by one save, here)."""
    states = [TicketState.first_seen(f"HELP-{i}", T0) for i in range(tickets)]
    for number, step in enumerate(SAVES):
        at = T0 + timedelta(minutes=number)
        for state in states:
            step(state, at)
            yield state


def _measure(save: Callable[[TicketState], None], tickets: int) -> tuple[float, float, int]:
    """CPU seconds, wall seconds and saves of one replay."""
    snapshots = [deepcopy(s) for s in _replay(tickets)]  # each state as it is at its save, made beforehand
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for state in snapshots:
        save(state)
    return time.process_time() - cpu0, time.perf_counter() - wall0, len(snapshots)


def _measure_concurrent(store: StateStore, tickets: int, workers: int) -> tuple[float, float, float]:
    """Saves per second, CPU seconds per save and commits per save of the replay from ``workers`` threads."""
    snapshots = [deepcopy(s) for s in _replay(tickets)]
    shares = [[s for s in snapshots if int(s.issue_key.rpartition("-")[2]) % workers == w] for w in range(workers)]
    commits = [0]

    def committed(_conn: object) -> None:
        commits[0] += 1

    event.listen(store.engine, "commit", committed)
    threads = [threading.Thread(target=lambda share=share: [store.save(s) for s in share]) for share in shares]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return len(snapshots) / wall, cpu / len(snapshots), commits[0] / len(snapshots)


def _concurrent(folder: Path, tickets: int, workers: int) -> None:
    """The replay from many threads: the store's writer turns against the same store without them."""
    connections = workers + 4  # as ``mailunblock run`` sizes the pool (SQLite caps it)
    with_turns = StateStore(create_store_engine(f"sqlite:///{folder / 'turns.db'}", connections))
    plain = create_engine(f"sqlite:///{folder / 'plain.db'}", pool_size=min(connections, SQLITE_CONNECTIONS),
                          max_overflow=0, pool_timeout=60, pool_reset_on_return=None)
    event.listen(plain, "connect", sqlite_pragmas)
    without = StateStore(plain)
    figures = {name: _measure_concurrent(store, tickets, workers)
               for name, store in (("writer turns", with_turns), ("own commits", without))}
    for store in (with_turns, without):
        store.engine.dispose()
    print(f"  the same from {workers} threads at once:")
    print(f"  {'':14} {'saves/s':>12} {'cpu us/save':>13} {'commits/save':>14}")
    for name, (rate, cpu, commits) in figures.items():
        print(f"  {name:14} {rate:12.0f} {cpu * 1e6:13.0f} {commits:14.2f}")
    (rate, cpu, _), (base_rate, base_cpu, _) = figures.values()
    print(f"  writer turns to own commits: saves/s {rate / base_rate:.2f}, cpu per save {cpu / base_cpu:.2f}")


def main() -> None:
    """Run the replay on the store and on the baseline, then from many threads; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--workers", type=int, default=64, help="threads saving at once (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailunblock-saves-") as tmp:
        store = StateStore.from_url(f"sqlite:///{Path(tmp) / 'state.db'}")
        cpu, wall, saves = _measure(store.save, args.tickets)

        baseline_store = StateStore.from_url(f"sqlite:///{Path(tmp) / 'baseline.db'}")
        for i in range(args.tickets):
            baseline_store.save(TicketState.first_seen(f"HELP-{i}", T0))  # the row each bare UPDATE updates

        def bare_update(state: TicketState) -> None:
            with baseline_store.engine.begin() as conn:
                conn.execute(update(ticket_rows).where(ticket_rows.c.issue_key == state.issue_key)
                             .values(stage=str(state.stage), updated_at=T0))

        base_cpu, base_wall, _ = _measure(bare_update, args.tickets)
        store.engine.dispose()
        baseline_store.engine.dispose()
    per_ticket = saves / args.tickets
    print(f"state store saves — {args.tickets} tickets, {per_ticket:g} saves per ticket, SQLite synchronous=FULL")
    print(f"  {'':14} {'cpu us/save':>12} {'wall us/save':>13} {'cpu ms/ticket':>14}")
    for name, c, w in (("store.save", cpu, wall), ("bare UPDATE", base_cpu, base_wall)):
        print(f"  {name:14} {c / saves * 1e6:12.0f} {w / saves * 1e6:13.0f} {c / args.tickets * 1e3:14.2f}")
    print(f"  cpu ratio to the baseline: {cpu / base_cpu:.2f}")
    if args.workers:
        with tempfile.TemporaryDirectory(prefix="mailunblock-saves-") as tmp:
            _concurrent(Path(tmp), args.tickets, args.workers)


if __name__ == "__main__":
    main()
