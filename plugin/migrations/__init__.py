"""Schema migrations of the state store (Alembic), applied at start-up under a lock.

``upgrade(engine)`` brings any store to the newest schema: an empty database gets every table, a store
created before migrations existed (tables, no ``alembic_version``) is recognised as the first revision and
upgraded from there. Two processes starting at once on one database wait for each other: a PostgreSQL
advisory lock, or ``flock`` beside the SQLite file.
"""

from __future__ import annotations

import fcntl
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

BASELINE = "0001"  # the schema every store had before migrations existed
_LOCK_KEY = zlib.crc32(b"mailunblock-migrations")


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of mailunblock knows."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    revision = ScriptDirectory.from_config(config).get_current_head()
    if revision is None:
        raise RuntimeError("no migration scripts found")
    return revision


def current(connection: Connection) -> str | None:
    """The store's revision (None: no migration ever ran on it)."""
    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    """One migrating process at a time per database."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                conn.commit()
        return
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        yield
        return
    with Path(f"{url.database}.migrate.lock").expanduser().open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    """Bring the store to the newest schema (idempotent; safe when several processes start together)."""
    with _exclusive(engine), engine.begin() as connection:
        if current(connection) == head():
            return
        config = _config(connection)
        if current(connection) is None and inspect(connection).has_table("tickets"):
            command.stamp(config, BASELINE)  # created by create_all before migrations existed
        command.upgrade(config, "head")
