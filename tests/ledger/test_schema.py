"""Schema versioning: a clear message on an unmigrated database, and a repeatable upgrade."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, inspect, select, text

from ledger import db
from ledger.db import DatabaseError
from ledger.models import Finding
from tests.conftest import FakeClock
from tests.ledger.helpers import obs, scan


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh, empty database (SQLite and PostgreSQL)."""
    engine = db.make_engine(db_url)
    yield engine
    engine.dispose()


def test_empty_database_says_to_run_db_upgrade(engine: Engine) -> None:
    """Starting on an empty database tells the user the exact command that fixes it."""
    with pytest.raises(
        DatabaseError,
        match=r"no compliancebot schema yet: run "
        r"`compliancebot db upgrade`",
    ):
        db.require_current_schema(engine)


def test_upgrade_creates_the_schema(engine: Engine) -> None:
    """After `db upgrade` the schema check passes and the ledger tables exist."""
    before, after = db.upgrade(engine)

    assert (before, after) == (None, db.head_revision())
    db.require_current_schema(engine)
    assert db.current_revision(engine) == db.head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"scans", "scan_errors", "findings", "finding_events", "audit_log"} <= tables


def test_upgrade_is_idempotent_and_keeps_data(engine: Engine, clock: FakeClock) -> None:
    """Running `db upgrade` again changes nothing and loses no findings."""
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    scan(sessions, clock, [obs("vol-1"), obs("vol-2")])

    again = db.upgrade(engine)

    assert again == (db.head_revision(), db.head_revision())
    db.require_current_schema(engine)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Finding)) == 2


def test_unknown_revision_says_to_upgrade_compliancebot(engine: Engine) -> None:
    """A database migrated by a newer compliancebot is refused, naming both revisions."""
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_future'"))

    with pytest.raises(
        DatabaseError,
        match=r"ffff_from_future.*does not know.*upgrade "
        r"compliancebot",
    ):
        db.require_current_schema(engine)


def test_unreachable_database_is_named() -> None:
    """A database that cannot be reached is reported with its URL, not a stack trace."""
    engine = db.make_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(
            DatabaseError,
            match=r"cannot connect to the database "
            r"postgresql\+psycopg://nobody@127\.0\.0\.1:1",
        ):
            db.require_current_schema(engine)
    finally:
        engine.dispose()


def test_bad_url_is_named() -> None:
    """A malformed database URL is refused with a message naming the setting."""
    with pytest.raises(DatabaseError, match=r"database\.url is not a valid SQLAlchemy URL"):
        db.make_engine("not a url")
