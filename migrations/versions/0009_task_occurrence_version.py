"""task occurrences carry a version, so their Slack reminders are re-rendered after any change

A reminder was updated only when its own buttons changed the occurrence; completing it on the
CLI left live buttons in Slack. Every change now bumps the version, and the Slack worker
re-renders each message drawn at an older one (as it does for findings).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0 for existing rows: their messages (rendered_version 0) are current, none is redrawn.
    with op.batch_alter_table('task_occurrences', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('version', sa.Integer(), nullable=False, server_default='0')
        )


def downgrade() -> None:
    with op.batch_alter_table('task_occurrences', schema=None) as batch_op:
        batch_op.drop_column('version')
