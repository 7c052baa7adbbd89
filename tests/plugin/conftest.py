from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


def _private_database(admin_url: str, prefix: str) -> Iterator[str]:
    """Create a database named ``prefix`` + a random suffix, yield its URL, drop it afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.engine import make_url

    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    yield from _private_database(postgres_admin_url, "mailunblock_test_")


@pytest.fixture
def empty_postgres(postgres_admin_url: str) -> Iterator[str]:
    """A brand-new, empty PostgreSQL database (dropped afterwards)."""
    yield from _private_database(postgres_admin_url, "mailunblock_mig_")
