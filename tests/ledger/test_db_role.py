"""The database role the README prescribes: the bot works as it, and cannot undo the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ledger import db, services
from ledger.db import transaction
from tests.conftest import FakeClock
from tests.ledger.helpers import obs, only_finding, scan

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres-roles.sql"
APP_ROLE = "compliancebot_app"


@pytest.fixture
def app_engine(db_url: str) -> Iterator[Engine]:
    """The ledger migrated by its owner, the roles file applied, and an engine as the app role."""
    if not db_url.startswith("postgresql"):
        pytest.skip("database roles are a PostgreSQL matter (SQLite has none)")
    owner = db.make_engine(db_url)
    db.upgrade(owner)
    with owner.begin() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}
        ).scalar()
        if not exists:
            conn.execute(text(f"CREATE ROLE {APP_ROLE} LOGIN"))
        conn.exec_driver_sql(ROLES_SQL.read_text())
    owner.dispose()
    user, _, rest = db_url.removeprefix("postgresql://").partition("@")
    assert user
    engine = create_engine(f"postgresql+psycopg://{APP_ROLE}@{rest}")
    yield engine
    engine.dispose()


def test_the_bot_works_as_the_app_role(app_engine: Engine, clock: FakeClock) -> None:
    """Scans, claims and the schema check all work as the role `serve` runs as."""
    sessions: sessionmaker[Session] = db.session_factory(app_engine)
    db.require_current_schema(app_engine)

    scan(sessions, clock, [obs()])
    with transaction(sessions) as session:
        services.claim(
            session=session, finding_id=only_finding(sessions).id, user="alice", now=clock()
        )

    with app_engine.connect() as conn:
        actions = conn.execute(text("SELECT action FROM audit_log ORDER BY id")).scalars().all()
    assert actions[-1] == "finding.claimed"


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_log_no_update ON audit_log",
        "DROP TABLE audit_log",
        "TRUNCATE audit_log",
        "DELETE FROM audit_log",
        "UPDATE audit_log SET actor = 'mallory'",
        "UPDATE alembic_version SET version_num = '0001'",
    ],
)
def test_the_app_role_cannot_undo_the_audit_trail(
    app_engine: Engine, clock: FakeClock, statement: str
) -> None:
    """As the app role, no DDL or rewrite touches the audit trail or the schema version."""
    scan(db.session_factory(app_engine), clock, [obs()])

    refused = r"permission denied|must be owner|append-only"
    with pytest.raises(DBAPIError, match=refused), app_engine.begin() as conn:
        conn.execute(text(statement))

    with app_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar()
