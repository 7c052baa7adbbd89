"""Baseline: ticket states, stage events (SLA history) and vaulted passwords.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables every store had before migrations existed."""
    op.create_table(
        "tickets",
        sa.Column("issue_key", sa.String(64), primary_key=True),
        sa.Column("stage", sa.String(32), nullable=False, index=True),
        sa.Column("tenant", sa.String(128), index=True),
        sa.Column("account_id", sa.String(128), index=True),
        sa.Column("terminal", sa.Integer, nullable=False, index=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "stage_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issue_key", sa.String(64), nullable=False, index=True),
        sa.Column("tenant", sa.String(128)),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "vaulted_passwords",
        sa.Column("issue_key", sa.String(64), primary_key=True),
        sa.Column("ciphertext", sa.LargeBinary),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revealed_at", sa.DateTime(timezone=True)),
        sa.Column("revealed_by", sa.String(256)),
        sa.Column("wiped_reason", sa.String(32)),
    )
