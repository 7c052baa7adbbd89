"""The state store: every ticket's remediation state and its stage timestamps.

SQLite by default, PostgreSQL for several replicas — both through SQLAlchemy, so nothing above this
module knows which engine runs. State is written before every side effect (the workflow calls ``save``),
which is what makes a crash at any point recoverable.
"""

from __future__ import annotations

import fcntl
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailunblock.plugin import migrations
from mailunblock.plugin.audit import audit_entries
from mailunblock.plugin.db import audit_log, create_store_engine, stage_events, tickets, vaulted_passwords
from mailunblock.workflows.state import StageEvent, TicketState
from sqlalchemy import Engine, bindparam, delete, insert, inspect, select, text, update
from sqlalchemy.engine import Connection, make_url


class StoreNotFoundError(Exception):
    """There is no state store where the configuration points (the message says where and what to check)."""


# Built once: a save runs every statement with new values only (SET names the columns of the values given).
_UPDATE_TICKET = update(tickets).where(tickets.c.issue_key == bindparam("key"))
_INSERT_AUDIT = insert(audit_log)
_INSERT_STAGE_EVENTS = insert(stage_events)

# How many tickets' last stored states a store keeps in memory (a few KB each): enough for the tickets
# being worked on at once, not for every ticket (memory must not grow with the backlog). A ticket not
# among them costs one read of its row at its next save, nothing more.
_KNOWN_STATES = 256


@dataclass(frozen=True)
class _Known:
    """A ticket's state as the store last read or wrote it: its stored document and a private copy."""

    document: str
    state: TicketState


class StateStore:
    """Durable ticket states (implements the workflow's ``StateRepository``).

    Safe to share between threads; several stores (processes, replicas) may share one database as long
    as one of them at a time works on a given ticket.
    """

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        self._engine = engine
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._known_lock = threading.Lock()
        if create:
            migrations.upgrade(engine)

    @classmethod
    def from_url(cls, url: str) -> StateStore:
        """Open (and create if needed) the store at a SQLAlchemy URL."""
        return cls(create_store_engine(url))

    @classmethod
    def open_existing(cls, url: str) -> StateStore:
        """Open a store that must already exist, creating nothing (no folder, file or table).

        For commands that only read it (``status``, ``reveal``): a wrong ``data_dir`` must say so, not
        quietly start an empty store.
        """
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            path = Path(parsed.database).expanduser()
            if not path.parent.is_dir():
                raise StoreNotFoundError(f"the data folder {path.parent} does not exist (check store.data_dir)")
            if not path.is_file():
                raise StoreNotFoundError(
                    f"no state store at {path}: mailunblock has not run with this configuration yet, "
                    "or store.data_dir is wrong"
                )
        engine = create_store_engine(url)
        if not inspect(engine).has_table(tickets.name):
            engine.dispose()
            where = parsed.render_as_string(hide_password=True)
            raise StoreNotFoundError(f"{where} holds no mailunblock state (check store.url / store.data_dir)")
        return cls(engine, create=False)

    @property
    def engine(self) -> Engine:
        """The underlying engine (shared with the password vault)."""
        return self._engine

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    @contextmanager
    def runner_lock(self) -> Iterator[bool]:
        """Hold the store's runner lock while the block runs; yields False when another process holds it.

        Two pollers on one store (an overlapping cron ``--once``, a second replica) would both act on the
        same ticket. The lock dies with its holder: a PostgreSQL session advisory lock, or ``flock`` on a
        file next to the SQLite database.
        """
        url = self._engine.url
        if url.get_backend_name() == "postgresql":
            key = zlib.crc32(b"mailunblock-runner")
            with self._engine.connect() as conn:
                held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
                conn.commit()
                try:
                    yield held
                finally:
                    if held:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
            return
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            yield True  # a private, in-process store
            return
        with Path(f"{url.database}.lock").expanduser().open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def save(self, state: TicketState) -> None:
        """Persist a state, any stage timestamps not yet recorded and its audit entries, in one transaction.

        A state equal to the one this store last read or wrote for the ticket is not written again. The
        previous state, which tells the audit entries and the new stage entries, is that remembered copy
        when there is one, else the stored row.
        """
        document = json.dumps(state.to_dict(), sort_keys=True)
        last = self._last_known(state.issue_key)
        if last is not None and last.document == document:
            return
        now = datetime.now(UTC)
        row = {
            "stage": str(state.stage),
            "tenant": state.tenant,
            "account_id": state.account_id,
            "issue_id": state.issue_id,
            "terminal": int(state.is_terminal),
            "state": document,
            "updated_at": now,
        }
        with self._tx() as conn:
            before = last.state if last is not None else self._stored(conn, state.issue_key)
            entries = audit_entries(before, state, now)
            if entries:
                conn.execute(_INSERT_AUDIT, [e.row() for e in entries])
            if before is not None:
                conn.execute(_UPDATE_TICKET, {"key": state.issue_key, **row})
            else:
                first = state.history[0].at if state.history else now
                conn.execute(insert(tickets).values(issue_key=state.issue_key, first_seen=first, **row))
            fresh = [
                {"issue_key": state.issue_key, "tenant": state.tenant, "stage": str(e.stage), "at": e.at}
                for e in self._unrecorded_events(conn, before, state)
            ]
            if fresh:
                conn.execute(_INSERT_STAGE_EVENTS, fresh)
        self._remember(state.issue_key, document, state)

    @staticmethod
    def _stored(conn: Connection, issue_key: str) -> TicketState | None:
        raw = conn.execute(select(tickets.c.state).where(tickets.c.issue_key == issue_key)).scalar_one_or_none()
        return TicketState.from_dict(json.loads(raw)) if raw else None

    @staticmethod
    def _unrecorded_events(conn: Connection, before: TicketState | None, state: TicketState) -> list[StageEvent]:
        """The stage entries of ``state`` that ``stage_events`` does not hold yet."""
        if before is not None and state.history[: len(before.history)] == before.history:
            return state.history[len(before.history):]  # saved with ``before``: only the newer ones are not
        recorded = conn.execute(
            select(stage_events.c.stage, stage_events.c.at).where(stage_events.c.issue_key == state.issue_key)
        ).all()
        seen = {(stage, at) for stage, at in recorded}
        return [e for e in state.history if (str(e.stage), e.at) not in seen]

    def _last_known(self, issue_key: str) -> _Known | None:
        with self._known_lock:
            known = self._known.get(issue_key)
            if known is not None:
                self._known.move_to_end(issue_key)
            return known

    def _remember(self, issue_key: str, document: str, state: TicketState) -> None:
        """Keep a private copy of the state as it is stored (the next save compares with it)."""
        known = _Known(document, state.copy())
        with self._known_lock:
            self._known[issue_key] = known
            self._known.move_to_end(issue_key)
            while len(self._known) > _KNOWN_STATES:
                self._known.popitem(last=False)

    def _forget_known(self, *issue_keys: str) -> None:
        with self._known_lock:
            for key in issue_keys:
                self._known.pop(key, None)

    def load(self, issue_key: str) -> TicketState | None:
        """The stored state of one ticket, if any."""
        with self._engine.connect() as conn:
            raw = conn.execute(
                select(tickets.c.state).where(tickets.c.issue_key == issue_key)
            ).scalar_one_or_none()
        if not raw:
            return None
        state = TicketState.from_dict(json.loads(raw))
        self._remember(issue_key, raw, state)
        return state

    def open_state_by_issue_id(self, issue_id: str) -> TicketState | None:
        """The open state of the ticket Jira knows by ``issue_id`` (a ticket moved to another project keeps it)."""
        with self._engine.connect() as conn:
            raw = conn.execute(
                select(tickets.c.state)
                .where(tickets.c.issue_id == issue_id, tickets.c.terminal == 0)
                .order_by(tickets.c.first_seen)
                .limit(1)
            ).scalar_one_or_none()
        return TicketState.from_dict(json.loads(raw)) if raw else None

    def open_states(self) -> list[TicketState]:
        """Every state whose remediation has not ended, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(tickets.c.state).where(tickets.c.terminal == 0).order_by(tickets.c.first_seen)
            ).scalars()
            return [TicketState.from_dict(json.loads(raw)) for raw in rows]

    def all_states(self) -> list[TicketState]:
        """Every stored state, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(tickets.c.state).order_by(tickets.c.first_seen)).scalars()
            return [TicketState.from_dict(json.loads(raw)) for raw in rows]

    def active_ticket_for_account(self, tenant: str, account_id: str, exclude_key: str) -> str | None:
        """Key of another open ticket already remediating this account, if any."""
        with self._engine.connect() as conn:
            return conn.execute(
                select(tickets.c.issue_key)
                .where(
                    tickets.c.tenant == tenant,
                    tickets.c.account_id == account_id,
                    tickets.c.terminal == 0,
                    tickets.c.issue_key != exclude_key,
                )
                .order_by(tickets.c.first_seen)
                .limit(1)
            ).scalar_one_or_none()

    def last_unblock_of_account(
        self, tenant: str, account_id: str, exclude_key: str
    ) -> tuple[str, datetime] | None:
        """The most recent other ticket that unblocked this account, and when."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(tickets.c.state).where(
                    tickets.c.tenant == tenant,
                    tickets.c.account_id == account_id,
                    tickets.c.issue_key != exclude_key,
                )
            ).scalars()
            unblocked = [
                (state.issue_key, state.unblocked_at)
                for state in (TicketState.from_dict(json.loads(raw)) for raw in rows)
                if state.unblocked_at is not None
            ]
        return max(unblocked, key=lambda pair: pair[1], default=None)

    def stage_events(self, issue_key: str | None = None) -> list[tuple[str, str, datetime]]:
        """(issue key, stage, at) for every recorded stage entry, in time order — for SLA reports."""
        query = select(stage_events.c.issue_key, stage_events.c.stage, stage_events.c.at)
        if issue_key:
            query = query.where(stage_events.c.issue_key == issue_key)
        with self._engine.connect() as conn:
            return [(k, s, a) for k, s, a in conn.execute(query.order_by(stage_events.c.at))]

    def rename(self, old_key: str, new_key: str) -> None:
        """A ticket moved to another project: its state, stage history and vaulted password follow it.

        The audit log is append-only: its older entries keep the old key, a new entry records the move.
        """
        self._forget_known(old_key, new_key)
        with self._tx() as conn:
            for table in (tickets, stage_events, vaulted_passwords):
                conn.execute(update(table).where(table.c.issue_key == old_key).values(issue_key=new_key))
            conn.execute(insert(audit_log).values(at=datetime.now(UTC), issue_key=new_key, action="move",
                                                  target=old_key, result="ok", detail=f"was {old_key}"))

    def audit(self, *, since: datetime | None = None, ticket: str | None = None) -> list[dict[str, Any]]:
        """Audit entries (JSON-safe, oldest first), optionally since a moment and for one ticket."""
        query = select(audit_log).order_by(audit_log.c.at, audit_log.c.id)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        if ticket is not None:
            query = query.where(audit_log.c.issue_key == ticket)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**{k: v for k, v in row.items() if k != "id"}, "at": row["at"].isoformat()} for row in rows]

    def forget(self, issue_key: str) -> None:
        """Remove one ticket's state (operator command; stage events stay for reporting)."""
        self._forget_known(issue_key)
        with self._tx() as conn:
            conn.execute(delete(tickets).where(tickets.c.issue_key == issue_key))
