"""posture snapshots: each framework's and each control's posture at the end of each day

Written by ledger/snapshots.py (the scheduler's "snapshot" job, back-filled from the finding
history on its first run) and read by `compliancebot trends`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "posture_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("framework", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("failing", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("passing", sa.Integer(), nullable=False),
        sa.Column("not_covered", sa.Integer(), nullable=False),
        sa.Column("open_by_severity", sa.JSON(), nullable=False),
        sa.Column("accepted_findings", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("taken_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_posture_snapshots_day_fw", "posture_snapshots", ["day", "framework"], unique=True
    )
    op.create_table(
        "control_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("framework", sa.String(length=64), nullable=False),
        sa.Column("control", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("failing_findings", sa.Integer(), nullable=False),
        sa.Column("accepted_findings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_control_snapshots_day_fw_control",
        "control_snapshots",
        ["day", "framework", "control"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_control_snapshots_day_fw_control", table_name="control_snapshots")
    op.drop_table("control_snapshots")
    op.drop_index("ux_posture_snapshots_day_fw", table_name="posture_snapshots")
    op.drop_table("posture_snapshots")
