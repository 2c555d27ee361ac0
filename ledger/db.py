"""Engines, sessions and schema versioning (Alembic) for the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from rules.errors import CompliancebotError
from rules.redact import looks_like_url, mask_url, scrub

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseError(CompliancebotError):
    """The database cannot be used: unreachable, bad URL, or an outdated schema."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Several readers (CLI, bot) beside one writer (a scan) without "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets foreign keys, WAL and a busy timeout."""
    try:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, ValueError) as exc:  # unparsable, a port that is no number, no driver
        # The URL is shown so the mistake can be found, its credentials never: text that does
        # not even start like a URL cannot be masked reliably, so it is not shown at all.
        what = (
            f"{mask_url(url)} ({scrub(str(exc), url)})"
            if looks_like_url(url)
            else "it does not start with a scheme and :// (not shown: it may hold a password)"
        )
        raise DatabaseError(
            f"database.url is not a valid SQLAlchemy URL: {what}; e.g. "
            "sqlite:///compliancebot.db or postgresql://user@host:5432/compliancebot"
        ) from None
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep objects readable after commit (the CLI prints them)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session committed on success and rolled back on any error."""
    with factory() as session, session.begin():
        yield session


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def shown_url(engine: Engine) -> str:
    """The engine's URL to show or log: every credential masked, query parameters included."""
    return mask_url(_raw(engine))


def _raw(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def head_revision() -> str:
    """The schema revision this version of compliancebot needs."""
    script = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision, None for an empty database."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:  # unreachable, refused, or an option the driver does not know
        # The driver's text may quote the connection string it was given.
        reason = scrub(str(exc.orig), _raw(engine))
        raise DatabaseError(
            f"cannot connect to the database {shown_url(engine)}: {reason}"
        ) from exc


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the head revision; returns (before, after)."""
    before = current_revision(engine)
    command.upgrade(_alembic_config(engine), "head")
    return before, head_revision()


def require_current_schema(engine: Engine) -> None:
    """Refuse to run on a schema older (or newer) than this code, saying how to fix it."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    shown = shown_url(engine)
    if current is None:
        raise DatabaseError(
            f"the database {shown} has no compliancebot schema yet: run "
            f"`compliancebot db upgrade` to create it"
        )
    script = ScriptDirectory.from_config(_alembic_config(engine))
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise DatabaseError(
            f"the database {shown} is at schema revision {current}, which this "
            f"version of compliancebot does not know (it needs {head}): "
            f"upgrade compliancebot"
        )
    raise DatabaseError(
        f"the database {shown} is at schema revision {current} but this version "
        f"needs {head}: run `compliancebot db upgrade`"
    )
