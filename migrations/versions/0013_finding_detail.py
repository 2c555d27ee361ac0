"""finding detail: what exactly is wrong, as a sentence and as machine-readable evidence

Written by the scan (rules/detail.py renders a rule's `detail` over the matched items) and
updated on each rescan where it changed; shown in Slack, tickets, `findings show`, JSON and OCSF.
Findings recorded before this revision have none until their next scan. A ticket remembers the
digest of the detail it last told (`synced_detail`), so a change is commented once.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("evidence", sa.JSON(), nullable=True))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("synced_detail", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("synced_detail")
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("evidence")
        batch.drop_column("detail")
