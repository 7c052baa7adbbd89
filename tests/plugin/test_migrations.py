"""Schema migrations: a new store, a store from before migrations existed, and replicas starting at once."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy
from mailunblock.plugin import migrations
from mailunblock.plugin.db import metadata, stage_events, tickets, vaulted_passwords
from mailunblock.plugin.store import StateStore
from mailunblock.workflows.state import Stage, TicketState
from sqlalchemy import inspect

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _revision(engine: sqlalchemy.Engine) -> str | None:
    with engine.connect() as conn:
        return migrations.current(conn)


def test_a_new_store_gets_every_table_at_the_newest_revision(tmp_path: Path) -> None:
    store = StateStore.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    names = set(inspect(store.engine).get_table_names())
    assert {"tickets", "stage_events", "vaulted_passwords", "audit_log", "alembic_version"} <= names
    assert _revision(store.engine) == migrations.head()


def _baseline_tickets() -> sqlalchemy.Table:
    """The ``tickets`` table as stores created it before migrations existed (no column added since)."""
    return sqlalchemy.Table(
        "tickets", sqlalchemy.MetaData(),
        *(sqlalchemy.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, index=c.index)
          for c in tickets.columns if c.name in BASELINE_TICKET_COLUMNS))


BASELINE_TICKET_COLUMNS = ("issue_key", "stage", "tenant", "account_id", "terminal", "state", "first_seen",
                           "updated_at")


def test_a_store_from_before_migrations_keeps_its_state(tmp_path: Path) -> None:
    # How every store was created until now: create_all, no alembic_version table.
    url = f"sqlite:///{tmp_path / 'state.db'}"
    old = sqlalchemy.create_engine(url)
    metadata.create_all(old, tables=[stage_events, vaulted_passwords])  # the baseline's tables
    baseline = _baseline_tickets()
    baseline.create(old)
    state = TicketState.first_seen("HELP-1", T0)
    state.issue_id = "10001"
    state.enter(Stage.AWAITING_APPROVAL, T0)
    with old.begin() as conn:
        conn.execute(baseline.insert().values(
            issue_key="HELP-1", stage=str(state.stage), tenant=None, account_id=None, terminal=0,
            state=json.dumps(state.to_dict()), first_seen=T0, updated_at=T0))
    old.dispose()

    store = StateStore.from_url(url)
    assert _revision(store.engine) == migrations.head()
    assert "audit_log" in inspect(store.engine).get_table_names()  # 0002 ran on top of the baseline
    loaded = store.load("HELP-1")
    assert loaded is not None and loaded.stage is Stage.AWAITING_APPROVAL
    moved = store.open_state_by_issue_id("10001")  # 0004 filled the issue id in from the stored state
    assert moved is not None and moved.issue_key == "HELP-1"
    StateStore.from_url(url)  # opening again is a no-op
    assert _revision(store.engine) == migrations.head()


OPEN = "import sys; from mailunblock.plugin.store import StateStore; StateStore.from_url(sys.argv[1]); print('ok')"


def _start_at_once(url: str, processes: int = 4) -> None:
    """Open the store from several processes at the same moment; every one must succeed."""
    starts = [subprocess.Popen([sys.executable, "-c", OPEN, url], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    results = [(*p.communicate(timeout=120), p.returncode) for p in starts]
    assert all(code == 0 and out.strip() == "ok" for out, _err, code in results), results


@pytest.mark.postgres
def test_replicas_starting_at_once_on_an_empty_database_never_fail(empty_postgres: str) -> None:
    _start_at_once(empty_postgres)
    engine = sqlalchemy.create_engine(empty_postgres)
    try:
        assert _revision(engine) == migrations.head()
        assert {"tickets", "stage_events", "vaulted_passwords"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_replicas_starting_at_once_on_a_new_sqlite_file_never_fail(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _start_at_once(url)
