"""Jira's issue id as an indexed column: a ticket moved to another project is found without reading every state.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``tickets.issue_id`` (indexed) and fill it from the stored states."""
    op.add_column("tickets", sa.Column("issue_id", sa.String(64)))
    op.create_index("ix_tickets_issue_id", "tickets", ["issue_id"])
    connection = op.get_bind()
    known = [
        {"key": key, "issue_id": issue_id}
        for key, raw in connection.execute(sa.text("SELECT issue_key, state FROM tickets"))
        if (issue_id := json.loads(raw).get("issue_id"))
    ]
    if known:
        connection.execute(sa.text("UPDATE tickets SET issue_id = :issue_id WHERE issue_key = :key"), known)
