"""Database schema and engine for the state store (SQLAlchemy Core; SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

metadata = MetaData()


class _UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store UTC."""
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Hand back aware UTC."""
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
    Column("issue_id", String(64), index=True),  # Jira's issue id: finds a ticket moved to another project
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


# Append-only: the store inserts rows and never updates or deletes them (``mailunblock audit``).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", _utc(), nullable=False, index=True),
    Column("issue_key", String(64), nullable=False, index=True),
    Column("tenant", String(128)),
    Column("account", String(256)),
    Column("action", String(64), nullable=False),
    Column("target", String(256)),
    Column("actor", String(256)),
    Column("result", String(32), nullable=False),
    Column("detail", Text),
)


# A replica works on a ticket only while it holds the ticket's claim; a claim whose lease ran out (its
# replica died) is taken over by the next replica that asks.
claims = Table(
    "claims",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", _utc(), nullable=False),
)

# The one open ticket remediating an account: two tickets for one account never remediate it twice.
account_holds = Table(
    "account_holds",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("account_id", String(128), primary_key=True),
    Column("issue_key", String(64), nullable=False, index=True),
    Column("held_at", _utc(), nullable=False),
)


SQLITE_CONNECTIONS = 16
SQLITE_CACHE_KIB = 512


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a kill -9 must not lose a recorded intent
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")  # per connection: the pool holds several
    cursor.close()


def create_store_engine(url: str, connections: int = 5) -> Engine:
    """Build the SQLAlchemy engine, creating the SQLite folder if needed (``connections``: pool size)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    pool: dict[str, Any]
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # One in-memory database for every thread (a scratch store: the dry run's worker uses it too).
        pool = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    elif parsed.get_backend_name() == "sqlite":
        # One writer at a time anyway: a few connections serve every worker (each holds one only for a
        # transaction), and each connection's page cache is memory the process keeps.
        pool = {"pool_size": min(connections, SQLITE_CONNECTIONS), "max_overflow": 0, "pool_timeout": 60}
    else:
        pool = {"pool_size": connections, "max_overflow": 0, "pool_timeout": 60}
    # Every use of a connection ends its transaction (``begin`` commits or rolls back, ``connect`` rolls
    # back on close), so the pool need not roll back again on its return. A local SQLite file cannot drop
    # a connection: only a server's pooled connections are tested before use.
    engine = create_engine(url, future=True, pool_reset_on_return=None,
                           pool_pre_ping=parsed.get_backend_name() != "sqlite", **pool)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


