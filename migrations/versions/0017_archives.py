"""archives: what was archived (kind, day, where, how many rows, SHA-256), and the audit trail
may drop entries only once an archive that was read back and checked holds them

ledger/archive.py writes a row per archive object after reading the object back; the audit
trail's append-only triggers (0001, 0008) now let a DELETE through for an entry whose chain
position an archive of kind "audit" covers, and for nothing else. `audit verify` starts the chain
at the last archived entry's hash.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_PG_GATED = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM archives
        WHERE kind = 'audit' AND OLD.chain_seq BETWEEN first_key AND last_key
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql
"""

_PG_ORIGINAL = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "archives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),  # in the store
        sa.Column("location", sa.String(length=1024), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        # The archived rows' ids (for audit: chain positions), first and last; null for text ids.
        sa.Column("first_key", sa.BigInteger(), nullable=True),
        sa.Column("last_key", sa.BigInteger(), nullable=True),
        # For audit: the last archived entry's hash, where the kept chain resumes.
        sa.Column("last_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("location", name="uq_archives_location"),
    )
    op.create_index("ix_archives_kind_day", "archives", ["kind", "day"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_GATED)
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "WHEN NOT EXISTS (SELECT 1 FROM archives WHERE kind = 'audit' "
            "AND OLD.chain_seq BETWEEN first_key AND last_key) "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_ORIGINAL)
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed'); END"
        )
    op.drop_index("ix_archives_kind_day", table_name="archives")
    op.drop_table("archives")
