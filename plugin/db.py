"""Database schema and engine for the state store (SQLAlchemy Core; SQLite or PostgreSQL)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    Column,
    Connection,
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


def sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    """A new SQLite connection's settings (the ``connect`` event of every store engine on a SQLite file)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a kill -9 must not lose a recorded intent
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")  # per connection: the pool holds several
    cursor.close()


T = TypeVar("T")


class _Write(Generic[T]):
    """One caller's write, waiting for its turn or for a turn that runs it along with its own."""

    __slots__ = ("done", "error", "result", "wake", "work")

    def __init__(self, work: Callable[[Connection], T]) -> None:
        self.work = work
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        self.wake = threading.Lock()  # held until the write is done or its caller's turn comes
        self.wake.acquire()


class _WriterTurns:
    """Writers of this process to one SQLite file: one transaction at a time, the writes that waited in one.

    SQLite lets one writer in at a time. One that finds the file locked sleeps in SQLite's busy handler
    (1, 2, 5, 10, 15 ms…) and looks again, long after the lock was given back: about 35 ms a write under
    the burst's load. Here a write that finds the turn taken is queued; the turn's holder runs every write
    queued meanwhile in its transaction (one commit, one ``fsync``, for all of them), wakes their callers,
    each only once its write is durable, and hands the turn to the first write queued after them. Other
    processes on the same file still meet the busy handler.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the queue and the turn
        self._queued: list[_Write[Any]] = []
        self._taken = False

    def write(self, engine: Engine, work: Callable[[Connection], T]) -> T:
        mine = _Write(work)
        with self._lock:
            waits, self._taken = self._taken, True
            if waits:
                self._queued.append(mine)
        if waits:
            mine.wake.acquire()  # done by another turn, or this caller's turn now
        if not mine.done:
            with self._lock:
                batch, self._queued = [mine, *self._queued], []
            try:
                _run(engine, batch)
            finally:
                self._hand_over(batch[1:])
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[return-value]  # done without an error: the work's own result

    def _hand_over(self, ran: list[_Write[Any]]) -> None:
        """Wake the callers of the writes this turn ran, then pass the turn on (or leave it free)."""
        for w in ran:
            w.wake.release()
        with self._lock:
            following = self._queued.pop(0) if self._queued else None
            self._taken = following is not None
        if following is not None:
            following.wake.release()


def _run(engine: Engine, batch: list[_Write[Any]]) -> None:
    """The writes of one turn in one transaction; should any fail (or the commit), each again in its own.

    Alone, each write gets its own outcome (its result, or its exception for its caller), exactly as if it
    had run by itself: a write that fails never takes the others with it.
    """
    if len(batch) > 1:
        try:
            with engine.begin() as conn:
                results = [w.work(conn) for w in batch]
        except BaseException:  # noqa: BLE001, S110 - each write runs again alone and meets its own error there
            pass
        else:
            for w, result in zip(batch, results, strict=True):
                w.result, w.done = result, True
            return
    for w in batch:
        try:
            with engine.begin() as conn:
                w.result = w.work(conn)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which raises it
            w.error = error
        w.done = True


_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, _WriterTurns] = weakref.WeakKeyDictionary()


def write(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run ``work`` in a transaction that commits before this returns; its result.

    On a SQLite file, this process's writes take turns and those that waited share one commit (see
    ``_WriterTurns``): ``work`` may run in another thread, in a transaction with other writes, and must
    touch nothing but the connection and its caller's own data.
    """
    turns = _SQLITE_WRITERS.get(engine)
    if turns is None:
        with engine.begin() as conn:
            return work(conn)
    return turns.write(engine, work)


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
        event.listen(engine, "connect", sqlite_pragmas)
        _SQLITE_WRITERS[engine] = _WriterTurns()
    return engine


