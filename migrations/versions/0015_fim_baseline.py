"""fim baseline: the accepted state of every watched file, per host

Written by ledger/fim.py (`compliancebot fim baseline` and `fim accept`); read by the FIM
collector (scanners/host/fim.py), which reports each difference from it as a host.file resource.
One row per (host, path); a path is identified by the SHA-256 of its raw bytes (`path_key`), so
that a name that is not UTF-8 or longer than an index allows is still one key.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fim_baseline",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("path_key", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("gid", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("group", sa.String(length=64), nullable=True),
        sa.Column("inode", sa.String(length=20), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("accepted_by", sa.String(length=128), nullable=False),
        sa.Column("accepted_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_fim_baseline_host_path", "fim_baseline", ["host", "path_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_fim_baseline_host_path", table_name="fim_baseline")
    op.drop_table("fim_baseline")
