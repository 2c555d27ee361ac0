"""the audit trail refuses INSERT OR REPLACE (SQLite) and TRUNCATE (PostgreSQL)

0001 refused UPDATE and DELETE row by row, but SQLite's REPLACE conflict resolution deletes the
old row without firing delete triggers (recursive_triggers is off), and PostgreSQL's TRUNCATE
fires no row triggers at all: both emptied or rewrote the trail.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""
from __future__ import annotations

from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # audit_log_append_only() (0001) raises for whatever TG_OP fired it.
        op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")
    else:
        # A REPLACE names an existing id; a plain INSERT never does (ids are assigned).
        op.execute("CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log "
                   "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
                   "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: REPLACE is not "
                   "allowed'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_replace")
