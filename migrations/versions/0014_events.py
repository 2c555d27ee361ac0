"""events: the outbound event stream (findings, tasks, scans, audit alerts) for webhooks, SIEMs
and e-mail

Written by ledger/events.py in the transaction of the change each event tells of; delivered to
every configured sink through the outbox (one item per sink, keyed by the event id).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("frameworks", sa.JSON(), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("body_schema", sa.String(length=40), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_occurred_at", "events", ["occurred_at"])
    op.create_index("ix_events_kind_occurred_at", "events", ["kind", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_events_kind_occurred_at", table_name="events")
    op.drop_index("ix_events_occurred_at", table_name="events")
    op.drop_table("events")
