"""advisories: the offline vulnerability database (OSV) that installed packages are matched against

Written only by ledger/advisories.py (`compliancebot vulns import`); read by the package collector
(scanners/host/vulns.py), which looks advisories up by (ecosystem, package name) for the names a
host has installed. One advisory row per OSV id, one row per affected package it lists.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "advisories",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("cvss_score", sa.Float(), nullable=True),
        sa.Column("cvss_vector", sa.String(length=256), nullable=True),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("published", sa.DateTime(), nullable=True),
        sa.Column("withdrawn", sa.DateTime(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "advisory_packages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("advisory_id", sa.String(length=128), nullable=False),
        sa.Column("ecosystem", sa.String(length=64), nullable=False),
        sa.Column("ecosystem_base", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("ranges", sa.JSON(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["advisory_id"], ["advisories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_advisory_packages_eco_name", "advisory_packages", ["ecosystem_base", "name"]
    )
    op.create_index("ix_advisory_packages_advisory", "advisory_packages", ["advisory_id"])


def downgrade() -> None:
    op.drop_index("ix_advisory_packages_advisory", table_name="advisory_packages")
    op.drop_index("ix_advisory_packages_eco_name", table_name="advisory_packages")
    op.drop_table("advisory_packages")
    op.drop_table("advisories")
