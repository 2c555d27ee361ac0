"""compliance calendar: task occurrences, and Slack messages about them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('task_occurrences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.String(length=80), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('assignee', sa.String(length=64), nullable=True),
    sa.Column('snoozed_until', sa.DateTime(), nullable=True),
    sa.Column('snoozed_by', sa.String(length=128), nullable=True),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('completed_by', sa.String(length=128), nullable=True),
    sa.Column('on_time', sa.Boolean(), nullable=True),
    sa.Column('evidence_note', sa.Text(), nullable=True),
    sa.Column('evidence_link', sa.String(length=2048), nullable=True),
    sa.Column('evidence_file', sa.String(length=1024), nullable=True),
    sa.Column('evidence_sha256', sa.String(length=64), nullable=True),
    sa.Column('reminded', sa.String(length=64), nullable=True),
    sa.Column('escalations', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('task_occurrences', schema=None) as batch_op:
        batch_op.create_index('ix_task_occurrences_status_due', ['status', 'due_at'], unique=False)
        batch_op.create_index('ux_task_occurrences_task_due', ['task_id', 'due_on'], unique=True)

    with op.batch_alter_table('slack_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('occurrence_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_slack_messages_occurrence_id'), ['occurrence_id'], unique=False)
        batch_op.create_foreign_key(
            'fk_slack_messages_occurrence_id', 'task_occurrences', ['occurrence_id'], ['id'],
            ondelete='CASCADE',
        )


def downgrade() -> None:
    with op.batch_alter_table('slack_messages', schema=None) as batch_op:
        batch_op.drop_constraint('fk_slack_messages_occurrence_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_slack_messages_occurrence_id'))
        batch_op.drop_column('occurrence_id')
    with op.batch_alter_table('task_occurrences', schema=None) as batch_op:
        batch_op.drop_index('ux_task_occurrences_task_due')
        batch_op.drop_index('ix_task_occurrences_status_due')
    op.drop_table('task_occurrences')
