"""the audit trail is a hash chain: chain_seq, key_id, prev_hash, hash on audit_log

Each entry carries the hash of the one before it (ledger/audit.py), so an entry changed, removed
or inserted around the append-only triggers is named by `compliancebot audit verify`. The entries
already there are chained here in id order, without an HMAC key (the migration has no settings):
`audit verify` accepts unkeyed entries before the first keyed one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa
from alembic import op

from ledger.audit import GENESIS, entry_hash

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_BATCH = 5000
# The columns as this revision knows them (not the live model, which may move on).
_AUDIT = sa.table(
    "audit_log",
    sa.column("id", sa.Integer()),
    sa.column("at", sa.DateTime()),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("object_type", sa.String()),
    sa.column("object_id", sa.String()),
    sa.column("detail", sa.JSON()),
)
_SQLITE_NO_UPDATE = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed'); END"
)


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("chain_seq", sa.Integer(), nullable=True))
    op.add_column("audit_log", sa.Column("key_id", sa.String(length=16), nullable=True))
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("hash", sa.String(length=64), nullable=True))
    op.create_index("ix_audit_log_chain_seq", "audit_log", ["chain_seq"], unique=True)
    # 0001's triggers refuse every UPDATE: lifted for the backfill alone, inside this
    # migration's transaction (DDL is transactional on both), so nothing else slips through.
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
    _chain_existing()
    if postgres:
        op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
    else:
        op.execute(_SQLITE_NO_UPDATE)


def _chain_existing() -> None:
    """Chain the entries already there, in id order, a batch at a time."""
    bind = op.get_bind()
    update = sa.text(
        "UPDATE audit_log SET chain_seq = :seq, key_id = '', prev_hash = :prev, hash = :hash "
        "WHERE id = :id"
    )
    prev, seq, after = GENESIS, 0, 0
    while True:
        rows = bind.execute(
            sa.select(_AUDIT).where(_AUDIT.c.id > after).order_by(_AUDIT.c.id).limit(_BATCH)
        ).all()
        if not rows:
            return
        params = []
        for row in rows:
            seq += 1
            digest = entry_hash(
                key=None,
                at=row.at.replace(tzinfo=UTC),
                actor=row.actor,
                action=row.action,
                object_type=row.object_type,
                object_id=row.object_id,
                detail=row.detail,
                entry_key_id="",
                prev_hash=prev,
            )
            params.append({"seq": seq, "prev": prev, "hash": digest, "id": row.id})
            prev = digest
        bind.execute(update, params)
        after = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_audit_log_chain_seq", table_name="audit_log")
    op.drop_column("audit_log", "hash")
    op.drop_column("audit_log", "prev_hash")
    op.drop_column("audit_log", "key_id")
    op.drop_column("audit_log", "chain_seq")
