"""one scan at a time across processes: the scan_lock row

A scheduled, a CLI and a Slack scan could run at once in different processes (the lock was a
process-local one), and two of them inserting the same new finding made the second fail. On
SQLite this row is the lock; on PostgreSQL an advisory lock is, and the row names the holder.
No row is made here: the first scan inserts it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scan_lock',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('token', sa.String(length=32), nullable=True),
    sa.Column('scan_id', sa.Integer(), nullable=True),
    sa.Column('trigger', sa.String(length=32), nullable=True),
    sa.Column('holder', sa.String(length=255), nullable=True),
    sa.Column('process', sa.String(length=255), nullable=True),
    sa.Column('acquired_at', sa.DateTime(), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint('id = 1', name='ck_scan_lock_one_row'),
    sa.ForeignKeyConstraint(['scan_id'], ['scans.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('scan_lock')
