"""The state store: every ticket's remediation state, stage timestamps and vaulted passwords.

SQLite by default, PostgreSQL for several replicas — both through SQLAlchemy, so nothing above this module
knows which engine runs. State is written before every side effect (the workflow calls ``save``), which is
what makes a crash at any point recoverable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailunblock.workflows.state import TicketState
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

metadata = MetaData()


class _UTCDateTime(DateTime):
    """A DateTime that always hands back timezone-aware UTC values (SQLite forgets the zone)."""

    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _utc() -> _UTCDateTime:
    return _UTCDateTime()


tickets = Table(
    "tickets",
    metadata,
    Column("issue_key", String(64), primary_key=True),
    Column("stage", String(32), nullable=False, index=True),
    Column("tenant", String(128), index=True),
    Column("account_id", String(128), index=True),
    Column("terminal", Integer, nullable=False, default=0, index=True),
    Column("state", Text, nullable=False),
    Column("first_seen", _utc(), nullable=False),
    Column("updated_at", _utc(), nullable=False),
)

stage_events = Table(
    "stage_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issue_key", String(64), nullable=False, index=True),
    Column("tenant", String(128)),
    Column("stage", String(32), nullable=False),
    Column("at", _utc(), nullable=False),
)

vaulted_passwords = Table(
    "vaulted_passwords",
    metadata,
    Column("issue_key", String(64), primary_key=True),
    Column("ciphertext", LargeBinary),
    Column("stored_at", _utc(), nullable=False),
    Column("expires_at", _utc(), nullable=False),
    Column("revealed_at", _utc()),
    Column("revealed_by", String(256)),
    Column("wiped_reason", String(32)),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a kill -9 must not lose a recorded intent
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """Build the SQLAlchemy engine, creating the SQLite folder if needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class StateStore:
    """Durable ticket states (implements the workflow's ``StateRepository``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        metadata.create_all(engine)

    @classmethod
    def from_url(cls, url: str) -> StateStore:
        """Open (and create if needed) the store at a SQLAlchemy URL."""
        return cls(create_store_engine(url))

    @property
    def engine(self) -> Engine:
        """The underlying engine (shared with the password vault)."""
        return self._engine

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def save(self, state: TicketState) -> None:
        """Persist a state and any stage timestamps not yet recorded, in one transaction."""
        now = datetime.now(UTC)
        row = {
            "stage": str(state.stage),
            "tenant": state.tenant,
            "account_id": state.account_id,
            "terminal": int(state.is_terminal),
            "state": json.dumps(state.to_dict(), sort_keys=True),
            "updated_at": now,
        }
        with self._tx() as conn:
            exists = conn.execute(
                select(tickets.c.issue_key).where(tickets.c.issue_key == state.issue_key)
            ).first()
            if exists:
                conn.execute(update(tickets).where(tickets.c.issue_key == state.issue_key).values(row))
            else:
                first = state.history[0].at if state.history else now
                conn.execute(insert(tickets).values(issue_key=state.issue_key, first_seen=first, **row))
            recorded = conn.execute(
                select(stage_events.c.stage, stage_events.c.at).where(
                    stage_events.c.issue_key == state.issue_key
                )
            ).all()
            seen = {(stage, at.replace(tzinfo=UTC) if at.tzinfo is None else at) for stage, at in recorded}
            fresh = [
                {"issue_key": state.issue_key, "tenant": state.tenant, "stage": str(e.stage), "at": e.at}
                for e in state.history
                if (str(e.stage), e.at) not in seen
            ]
            if fresh:
                conn.execute(insert(stage_events), fresh)

    def load(self, issue_key: str) -> TicketState | None:
        """The stored state of one ticket, if any."""
        with self._engine.connect() as conn:
            raw = conn.execute(
                select(tickets.c.state).where(tickets.c.issue_key == issue_key)
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

    def stage_events(self, issue_key: str | None = None) -> list[tuple[str, str, datetime]]:
        """(issue key, stage, at) for every recorded stage entry, in time order — for SLA reports."""
        query = select(stage_events.c.issue_key, stage_events.c.stage, stage_events.c.at)
        if issue_key:
            query = query.where(stage_events.c.issue_key == issue_key)
        with self._engine.connect() as conn:
            return [(k, s, a) for k, s, a in conn.execute(query.order_by(stage_events.c.at))]

    def forget(self, issue_key: str) -> None:
        """Remove one ticket's state (operator command; stage events stay for reporting)."""
        with self._tx() as conn:
            conn.execute(delete(tickets).where(tickets.c.issue_key == issue_key))
