"""indexes for the bot's read paths: posture, pages by severity, oldest open, mine

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from __future__ import annotations

from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.create_index('ix_findings_posture', ['status', 'rule_id', 'severity', 'first_seen'], unique=False)
        batch_op.create_index('ix_findings_severity_last_seen', ['severity', 'last_seen', 'id'], unique=False)
        batch_op.create_index('ix_findings_first_seen', ['first_seen'], unique=False)
        batch_op.create_index('ix_findings_assignee', ['assignee', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_index('ix_findings_assignee')
        batch_op.drop_index('ix_findings_first_seen')
        batch_op.drop_index('ix_findings_severity_last_seen')
        batch_op.drop_index('ix_findings_posture')
