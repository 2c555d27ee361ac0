"""The audit trail is evidence: the database refuses to change it, and every change is in it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ledger import services
from ledger.db import transaction
from ledger.models import AuditEntry, FindingEvent
from tests.conftest import FakeClock
from tests.ledger.helpers import audit, obs, only_finding, scan


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine behind a session factory."""
    bind = sessions.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def audit_rows(sessions: sessionmaker[Session]) -> list[tuple[int, str, str, str]]:
    """(id, actor, action, object id) of every audit entry, straight from the table."""
    with engine_of(sessions).connect() as conn:
        rows = conn.execute(
            text("SELECT id, actor, action, object_id FROM audit_log ORDER BY id")
        ).all()
    return [(r.id, r.actor, r.action, r.object_id) for r in rows]


def rename_first_actor(sessions: sessionmaker[Session], actor: str) -> None:
    """Try to rewrite who did the first audited action, through the ORM."""
    with transaction(sessions) as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id).limit(1)).one()
        entry.actor = actor


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'mallory'",
        "UPDATE audit_log SET detail = '{}' WHERE action = 'finding.created'",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)",
    ],
)
def test_database_refuses_to_rewrite_audit_log(
    sessions: sessionmaker[Session], clock: FakeClock, statement: str
) -> None:
    """Even raw SQL against the database cannot edit or delete audit entries."""
    scan(sessions, clock, [obs()])
    before = audit_rows(sessions)
    assert before

    with pytest.raises(DBAPIError, match="append-only"), engine_of(sessions).begin() as conn:
        conn.execute(text(statement))

    assert audit_rows(sessions) == before


_COLUMNS = "id, at, actor, action, object_type, object_id, detail"
_FORGED = "SELECT id, at, 'mallory', action, object_type, object_id, detail FROM audit_log"
# Statements that rewrite or empty the trail without a plain UPDATE or DELETE, per dialect.
_REWRITES = {
    "sqlite": [
        f"INSERT OR REPLACE INTO audit_log ({_COLUMNS}) {_FORGED} WHERE id = 1",
        f"REPLACE INTO audit_log ({_COLUMNS}) {_FORGED}",
        f"INSERT INTO audit_log ({_COLUMNS}) {_FORGED} WHERE true "
        "ON CONFLICT (id) DO UPDATE SET actor = 'mallory'",
    ],
    "postgresql": [
        "TRUNCATE audit_log",
        "TRUNCATE audit_log RESTART IDENTITY CASCADE",
        f"INSERT INTO audit_log ({_COLUMNS}) {_FORGED} "
        "ON CONFLICT (id) DO UPDATE SET actor = 'mallory'",
    ],
}


def test_database_refuses_replace_and_truncate(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """REPLACE (SQLite), TRUNCATE and upserts (PostgreSQL) cannot rewrite or empty the trail."""
    scan(sessions, clock, [obs()])
    before = audit_rows(sessions)
    engine = engine_of(sessions)
    assert before

    for statement in _REWRITES[engine.dialect.name]:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))

    assert audit_rows(sessions) == before


def test_orm_cannot_rewrite_audit_log(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Changing or deleting an audit entry through the ORM fails and leaves it as it was."""
    scan(sessions, clock, [obs()])
    before = audit_rows(sessions)

    with pytest.raises(DBAPIError):
        rename_first_actor(sessions, "mallory")
    with pytest.raises(DBAPIError), transaction(sessions) as session:
        session.execute(delete(AuditEntry))
    with pytest.raises(DBAPIError), transaction(sessions) as session:
        session.execute(update(AuditEntry).values(action="nothing.happened"))

    assert audit_rows(sessions) == before


def test_audit_log_still_accepts_new_entries(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The append-only guard does not stop the ledger from recording new actions."""
    scan(sessions, clock, [obs()])
    before = len(audit_rows(sessions))
    finding = only_finding(sessions)

    with transaction(sessions) as session:
        services.claim(session=session, finding_id=finding.id, user="alice", now=clock())

    assert len(audit_rows(sessions)) == before + 1


def test_every_transition_writes_exactly_one_audit_entry(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A finding's whole history, by scanner and people, is mirrored one-to-one in the audit."""
    scan(sessions, clock, [obs()])  # created
    finding_id = only_finding(sessions).id
    with transaction(sessions) as session:
        services.claim(session=session, finding_id=finding_id, user="alice", now=clock())
    with transaction(sessions) as session:
        services.claim(session=session, finding_id=finding_id, user="bob", now=clock())
    with transaction(sessions) as session:
        services.resolve(
            session=session, finding_id=finding_id, user="bob", now=clock(), note="fixed"
        )
    clock.advance(days=1)
    scan(sessions, clock, [obs()])  # reopened
    with transaction(sessions) as session:
        services.accept_risk(
            session=session,
            finding_id=finding_id,
            user="carol",
            reason="vendor appliance",
            until=clock() + timedelta(days=7),
            now=clock(),
        )
    clock.advance(days=8)
    scan(sessions, clock, [obs()])  # acceptance_expired
    clock.advance(days=1)
    scan(sessions, clock, [obs(verdict="pass")])  # auto_resolved
    with transaction(sessions) as session:
        services.reopen(
            session=session, finding_id=finding_id, user="dave", now=clock(), note="regressed"
        )

    with sessions() as session:
        history = list(session.scalars(select(FindingEvent).order_by(FindingEvent.id)))
    entries = audit(sessions, object_type="finding", object_id=str(finding_id))
    expected = [
        ("created", "scanner"),
        ("claimed", "alice"),
        ("claimed", "bob"),
        ("resolved", "bob"),
        ("reopened", "scanner"),
        ("accepted", "carol"),
        ("acceptance_expired", "scanner"),
        ("auto_resolved", "scanner"),
        ("reopened", "dave"),
    ]
    assert [(e.kind, e.actor) for e in history] == expected
    assert [(a.action, a.actor) for a in entries] == [(f"finding.{k}", who) for k, who in expected]
    assert [(a.detail["from"], a.detail["to"]) for a in entries] == [
        (e.from_status, e.to_status) for e in history
    ]
    assert all(a.at == e.at for a, e in zip(entries, history, strict=True))


def test_each_scan_is_audited_start_and_finish(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Every scan leaves a started and a finished entry carrying its numbers."""
    scan(sessions, clock, [obs(), obs("vol-2")])
    scan(sessions, clock, [obs(), obs("vol-2")])

    entries = audit(sessions, object_type="scan")
    assert [(a.action, a.object_id) for a in entries] == [
        ("scan.started", "1"),
        ("scan.finished", "1"),
        ("scan.started", "2"),
        ("scan.finished", "2"),
    ]
    assert entries[1].detail["new"] == 2
    assert entries[3].detail["new"] == 0
    assert entries[3].detail["still_failing"] == 2
    assert entries[3].detail["status"] == "complete"
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(AuditEntry))
    assert total == 4 + 2  # two scans, two findings created
