"""Claims with leases (which replica works on which ticket) and account holds (which ticket owns an account).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the claims and account_holds tables."""
    op.create_table(
        "claims",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "account_holds",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("account_id", sa.String(128), primary_key=True),
        sa.Column("issue_key", sa.String(64), nullable=False, index=True),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Tickets already remediating an account hold it, as the old duplicate check saw them.
    op.execute(
        "INSERT INTO account_holds (tenant, account_id, issue_key, held_at) "
        "SELECT tenant, account_id, MIN(issue_key), MIN(updated_at) FROM tickets "
        "WHERE terminal = 0 AND tenant IS NOT NULL AND account_id IS NOT NULL GROUP BY tenant, account_id"
    )
