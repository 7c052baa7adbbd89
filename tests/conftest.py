"""Fixtures every test folder shares: the PostgreSQL server the replica tests need."""

from __future__ import annotations

import os

import pytest

PG_ADMIN_URL = os.environ.get("MAILUNBLOCK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def unavailable(reason: str) -> None:
    """Skip the test — or, under ``CI=true``, where PostgreSQL must be there (``.ci/run`` starts it), fail it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}: PostgreSQL tests must run in CI", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The URL of a PostgreSQL database where tests may create (and drop) their own databases."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sqlalchemy.exc.OperationalError as exc:
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__}); set MAILUNBLOCK_TEST_PG")
    finally:
        engine.dispose()
    return PG_ADMIN_URL
