"""agents: hosts that send their file integrity and package results to `serve`

Each agent has a name (its findings' account), the SHA-256 of its token (the token itself is
shown once, at enrolment, and never stored), when it was enrolled and by whom, whether it is
revoked, and when it last reported (for the "host silent" finding).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("enrolled_by", sa.String(length=128), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=128), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash", name="uq_agents_token_hash"),
    )
    op.create_index("ix_agents_name", "agents", ["name"])


def downgrade() -> None:
    op.drop_index("ix_agents_name", table_name="agents")
    op.drop_table("agents")
