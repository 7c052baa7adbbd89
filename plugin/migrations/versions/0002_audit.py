"""The append-only audit log: who approved, what was called on which account, and the result.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the audit_log table."""
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("issue_key", sa.String(64), nullable=False, index=True),
        sa.Column("tenant", sa.String(128)),
        sa.Column("account", sa.String(256)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256)),
        sa.Column("actor", sa.String(256)),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text),
    )
