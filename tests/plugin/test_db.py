"""This process's writes to a SQLite file take turns, and those that waited share one commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mailunblock.plugin import db
from sqlalchemy import Connection, Engine, event

WAITING = 8


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = db.create_store_engine(f"sqlite:///{tmp_path / 'state.db'}", connections=4)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE rows (k TEXT PRIMARY KEY)")
    return engine


def _insert(key: str) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        conn.exec_driver_sql("INSERT INTO rows (k) VALUES (?)", (key,))
        return f"wrote {key}"

    return work


def _rows(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {k for (k,) in conn.exec_driver_sql("SELECT k FROM rows")}


def _while_the_turn_is_taken(engine: Engine, works: list[Callable[[Connection], str]]) -> list[Any]:
    """Run ``works`` from threads of their own while another write holds the turn; each one's outcome."""
    holding, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:
        conn.exec_driver_sql("INSERT INTO rows (k) VALUES ('first')")
        holding.set()
        release.wait(10)

    first = threading.Thread(target=db.write, args=(engine, hold))
    first.start()
    assert holding.wait(10)
    outcomes: list[Any] = [None] * len(works)

    def run(i: int) -> None:
        try:
            outcomes[i] = db.write(engine, works[i])
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(works))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(db._SQLITE_WRITERS[engine]._queued) < len(works) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in [first, *threads]:
        thread.join(10)
    return outcomes


def test_writes_that_waited_for_the_turn_share_one_commit(engine: Engine) -> None:
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    outcomes = _while_the_turn_is_taken(engine, [_insert(f"k{i}") for i in range(WAITING)])
    assert outcomes == [f"wrote k{i}" for i in range(WAITING)]
    assert _rows(engine) == {"first", *(f"k{i}" for i in range(WAITING))}
    assert len(commits) == 2  # the turn that held them up, then every write that waited: one commit


def test_a_write_that_fails_fails_alone(engine: Engine) -> None:
    def half_then_fail(conn: Connection) -> str:
        conn.exec_driver_sql("INSERT INTO rows (k) VALUES ('half')")
        raise ValueError("this write fails")

    works = [_insert("k0"), half_then_fail, _insert("k2"), _insert("k0")]  # the last one: a duplicate key
    outcomes = _while_the_turn_is_taken(engine, works)
    assert outcomes[0] == "wrote k0"
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == "wrote k2"
    assert "UNIQUE" in str(outcomes[3])
    assert _rows(engine) == {"first", "k0", "k2"}  # nothing of the failed writes, all of the others


def test_many_writers_at_once_each_land_once(engine: Engine) -> None:
    keys = [f"t{t}-{i}" for t in range(24) for i in range(20)]
    results: list[str] = []
    lock = threading.Lock()

    def writer(t: int) -> None:
        for i in range(20):
            result = db.write(engine, _insert(f"t{t}-{i}"))
            with lock:
                results.append(result)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == sorted(f"wrote {k}" for k in keys)
    assert _rows(engine) == set(keys)
    assert not db._SQLITE_WRITERS[engine]._taken  # the last turn was given back
