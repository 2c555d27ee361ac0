"""The audit trail is a hash chain: an entry changed, removed or inserted around the database's
append-only triggers (as someone with owner rights could) is named by `verify`."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ledger import audit, db, services
from ledger.db import transaction
from ledger.models import AuditEntry, OutboxItem
from tests.conftest import FakeClock
from tests.ledger.helpers import findings, obs, scan

KEY = "k" * 40
OTHER_KEY = "o" * 40
CHANNEL = "C0AUDIT01"


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The engine behind a session factory."""
    bind = sessions.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def verify(sessions: sessionmaker[Session], key: str | None = None) -> audit.ChainReport:
    """What `compliancebot audit verify` finds, with `key` as audit.hmac_key."""
    with sessions() as session:
        return audit.verify(session=session, key=key)


def write(sessions: sessionmaker[Session], clock: FakeClock, n: int = 1, **detail: Any) -> None:
    """Append `n` entries through the ledger, as a CLI command would."""
    with transaction(sessions) as session:
        for i in range(n):
            services.audit(
                session,
                now=clock(),
                actor="alice",
                action="test.action",
                object_type="thing",
                object_id=str(i),
                detail=dict(detail),
            )


def tamper(sessions: sessionmaker[Session], *statements: str, **params: Any) -> None:
    """Run raw SQL against audit_log around its triggers, committed."""
    engine = engine_of(sessions)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for name in ("no_update", "no_delete", "no_replace"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS audit_log_{name}"))
        for statement in statements:
            conn.execute(text(statement), params)


def row(sessions: sessionmaker[Session], entry_id: int) -> AuditEntry:
    """One audit entry as stored."""
    with sessions() as session:
        entry = session.get(AuditEntry, entry_id)
        assert entry is not None
        return entry


def forge_after(sessions: sessionmaker[Session], entry_id: int, *, key: str | None) -> int:
    """Insert a made-up entry right after `entry_id`, chained to it with `key` (the later
    entries moved one place down the chain); returns its id."""
    before = row(sessions, entry_id)
    assert before.chain_seq is not None
    assert before.hash is not None
    at = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    kid = audit.key_id(key)
    digest = audit.entry_hash(
        key=key,
        at=at,
        actor="mallory",
        action="finding.accepted",
        object_type="finding",
        object_id="1",
        detail={},
        entry_key_id=kid,
        prev_hash=before.hash,
    )
    seq = before.chain_seq
    tamper(
        sessions,
        # Two steps: a unique index is checked row by row on some backends.
        "UPDATE audit_log SET chain_seq = -chain_seq - 1 WHERE chain_seq > :after",
        "UPDATE audit_log SET chain_seq = -chain_seq WHERE chain_seq < 0",
        "INSERT INTO audit_log (id, at, actor, action, object_type, object_id, detail, "
        "chain_seq, key_id, prev_hash, hash) VALUES (10000, :at, 'mallory', "
        "'finding.accepted', 'finding', '1', '{}', :seq, :kid, :prev, :hash)",
        at=at.replace(tzinfo=None).isoformat(sep=" "),
        seq=seq + 1,
        after=seq,
        kid=kid,
        prev=before.hash,
        hash=digest,
    )
    return 10000


def test_an_intact_chain_after_many_scans_and_claims_verifies(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Scans, claims, resolutions and acceptances all chain: verify says N entries, intact."""
    for round_ in range(5):
        scan(sessions, clock, [obs(f"vol-{i}") for i in range(30)] if round_ % 2 == 0 else [])
        clock.advance(hours=1)
    ids = [f.id for f in findings(sessions)]
    with transaction(sessions) as session:
        services.claim(session=session, finding_id=ids[0], user="U1", now=clock())
        services.resolve(session=session, finding_id=ids[0], user="U1", now=clock(), note="ok")
    with transaction(sessions) as session:
        services.accept_risk(
            session=session,
            finding_id=ids[1],
            user="U1",
            reason="compensating control in place",
            until=clock() + timedelta(days=30),
            now=clock(),
        )
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(AuditEntry))

    report = verify(sessions)

    assert report.intact, report.summary()
    assert report.summary() == f"{total} entries, chain intact"
    assert total is not None
    assert total > 100


@settings(
    max_examples=30,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    actor=st.text(max_size=40),
    detail=st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(min_value=-(2**53), max_value=2**53)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
            max_leaves=8,
        ),
        max_size=5,
    ),
    micros=st.integers(min_value=0, max_value=999_999),
)
def test_whatever_is_recorded_verifies_after_its_round_trip_through_the_database(
    sessions: sessionmaker[Session], actor: str, detail: dict[str, Any], micros: int
) -> None:
    """Any actor text and JSON detail (unicode, nesting, floats) reads back as it was hashed."""
    actor = actor.replace("\x00", "")  # PostgreSQL text cannot hold NUL
    detail = {k.replace("\x00", ""): v for k, v in detail.items()}
    with transaction(sessions) as session:
        services.audit(
            session,
            now=datetime(2026, 11, 1, 9, 0, 0, micros, tzinfo=UTC),
            actor=actor[:128],
            action="prop.test",
            object_type="thing",
            object_id="x",
            detail=_no_nul(detail),
        )

    report = verify(sessions)

    assert report.intact, report.summary()


def _no_nul(value: Any) -> Any:
    """`value` without NUL characters (PostgreSQL's JSON refuses \\u0000 in text)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_no_nul(v) for v in value]
    if isinstance(value, dict):
        return {_no_nul(k): _no_nul(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    "change",
    [
        "actor = 'mallory'",
        "action = 'finding.resolved'",
        "object_id = '999'",
        'detail = \'{"note": "nothing to see"}\'',
        "at = at",  # control: an UPDATE that changes nothing breaks nothing
    ],
)
def test_an_edited_entry_is_named(
    sessions: sessionmaker[Session], clock: FakeClock, change: str
) -> None:
    """Rewriting who, what, which object or the detail of entry 3 is named as entry 3 changed."""
    write(sessions, clock, 6, note="original")

    tamper(sessions, f"UPDATE audit_log SET {change} WHERE id = 3")  # noqa: S608 - constants
    report = verify(sessions)

    if change == "at = at":
        assert report.intact
        return
    assert [(p.entry_id, p.kind) for p in report.problems] == [(3, "changed")]
    assert report.summary() == (
        "audit trail broken: audit entry 3 was changed: its content no longer matches its hash"
    )


def test_an_edited_time_is_named(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Moving an entry one second back in time is named as a change."""
    write(sessions, clock, 4)
    tamper(sessions, "UPDATE audit_log SET at = :at WHERE id = 2", at="2026-11-01 08:00:00")

    assert [(p.entry_id, p.kind) for p in verify(sessions).problems] == [(2, "changed")]


@pytest.mark.parametrize(
    ("deleted", "named", "message"),
    [
        ("id = 3", 4, "entry before audit entry 4 removed (chain position 3 missing)"),
        ("id IN (2, 3, 4)", 5, "3 entries before audit entry 5 removed (chain positions 2-4"),
        ("id = 1", 2, "entry before audit entry 2 removed (chain position 1 missing)"),
    ],
)
def test_a_deleted_entry_is_named(
    sessions: sessionmaker[Session], clock: FakeClock, deleted: str, named: int, message: str
) -> None:
    """Deleting entries in the middle or at the start names the entry after the gap."""
    write(sessions, clock, 6)

    tamper(sessions, f"DELETE FROM audit_log WHERE {deleted}")  # noqa: S608 - constants
    report = verify(sessions)

    assert [(p.entry_id, p.kind) for p in report.problems] == [(named, "removed")]
    assert message in report.summary()


def test_a_deletion_with_the_chain_renumbered_is_still_named(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Closing the gap in the chain order does not hide a removal: the next entry's link
    points at an entry that is gone."""
    write(sessions, clock, 6)

    tamper(
        sessions,
        "DELETE FROM audit_log WHERE id = 3",
        "UPDATE audit_log SET chain_seq = chain_seq - 1 WHERE chain_seq > 3",
    )
    report = verify(sessions)

    assert [(p.entry_id, p.kind) for p in report.problems] == [(4, "removed")]
    assert "audit entry 4 does not chain to entry 2 before it" in report.summary()


def test_an_entry_inserted_in_the_middle_is_named(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A forged entry slipped in after entry 3 with a valid hash of its own is named, because
    the entry after it still chains to entry 3 (without a key anyone can compute a hash)."""
    write(sessions, clock, 6)

    forged = forge_after(sessions, 3, key=None)
    report = verify(sessions)

    assert [(p.entry_id, p.kind) for p in report.problems] == [(forged, "inserted")]
    assert report.summary() == (
        f"audit trail broken: audit entry {forged} was inserted: entry 4 after it chains to entry 3"
    )


def test_an_entry_inserted_outside_the_chain_is_named(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A row inserted without chain columns is named as inserted outside the ledger."""
    write(sessions, clock, 3)

    tamper(
        sessions,
        "INSERT INTO audit_log (at, actor, action, object_type, object_id, detail) "
        "VALUES (:at, 'mallory', 'finding.accepted', 'finding', '1', '{}')",
        at="2026-11-01 09:00:00",
    )
    report = verify(sessions)

    assert report.summary() == (
        "audit trail broken: audit entry 4 was inserted outside the ledger: it has no place in "
        "the chain"
    )
    assert report.entries == 4


def test_a_changed_and_rehashed_entry_is_named_at_the_broken_link(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Without a key an attacker can re-hash the entry they changed: the next entry's link
    still names the break between them."""
    write(sessions, clock, 5)
    entry = row(sessions, 2)
    assert entry.prev_hash is not None
    rehashed = audit.entry_hash(
        key=None,
        at=entry.at,
        actor="mallory",
        action=entry.action,
        object_type=entry.object_type,
        object_id=entry.object_id,
        detail=entry.detail,
        entry_key_id="",
        prev_hash=entry.prev_hash,
    )

    tamper(sessions, "UPDATE audit_log SET actor = 'mallory', hash = :h WHERE id = 2", h=rehashed)
    report = verify(sessions)

    assert [(p.entry_id, p.kind) for p in report.problems] == [(3, "removed")]
    assert "entry 2 was changed and re-hashed" in report.summary()


def test_with_a_key_a_rehash_without_it_is_a_change(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """With audit.hmac_key the attacker's re-hash (made without the key) does not match: the
    entry itself is named as changed."""
    audit.use_key(sessions, KEY)
    write(sessions, clock, 5)
    entry = row(sessions, 2)
    assert entry.prev_hash is not None
    assert entry.key_id
    rehashed = audit.entry_hash(
        key=None,
        at=entry.at,
        actor="mallory",
        action=entry.action,
        object_type=entry.object_type,
        object_id=entry.object_id,
        detail=entry.detail,
        entry_key_id=entry.key_id,
        prev_hash=entry.prev_hash,
    )

    tamper(sessions, "UPDATE audit_log SET actor = 'mallory', hash = :h WHERE id = 2", h=rehashed)

    assert [(p.entry_id, p.kind) for p in verify(sessions, KEY).problems] == [(2, "changed")]


def test_with_a_key_an_unkeyed_entry_after_keyed_ones_is_named(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """An entry appended by someone without the key (a plain SHA-256 link) is named inserted."""
    audit.use_key(sessions, KEY)
    write(sessions, clock, 4)

    forged = forge_after(sessions, 4, key=None)
    report = verify(sessions, KEY)

    assert [(p.entry_id, p.kind) for p in report.problems] == [(forged, "inserted")]
    assert "written without the HMAC key after keyed entries" in report.summary()


def test_a_keyed_chain_verifies_with_its_key_only(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A chain made with audit.hmac_key: intact with it; without it or with another key the
    message says which setting to fix, naming the first entry."""
    audit.use_key(sessions, KEY)
    write(sessions, clock, 5)
    kid = audit.key_id(KEY)

    good = verify(sessions, KEY)
    without = verify(sessions, None)
    other = verify(sessions, OTHER_KEY)

    assert good.summary() == "5 entries, chain intact"
    assert without.summary() == (
        f"audit trail broken: audit entry 1 was chained with an HMAC key (key id {kid}) but "
        "audit.hmac_key is not set: set COMPLIANCEBOT_AUDIT__HMAC_KEY to the key that wrote it"
    )
    assert other.summary() == (
        f"audit trail broken: audit entry 1 was chained with another HMAC key (key id {kid}) "
        f"than audit.hmac_key (key id {audit.key_id(OTHER_KEY)}): set "
        "COMPLIANCEBOT_AUDIT__HMAC_KEY to the key that wrote it"
    )
    assert (without.entries, other.entries) == (5, 5)
    assert KEY not in without.summary() + other.summary()


def test_a_key_set_later_keeps_the_earlier_entries_verifiable(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Entries chained before the key was set stay plain; those after are keyed; both verify,
    and the summary says how many are unkeyed."""
    write(sessions, clock, 3)
    audit.use_key(sessions, KEY)
    write(sessions, clock, 2)

    assert verify(sessions, KEY).summary() == (
        "5 entries, chain intact (3 chained before audit.hmac_key was set, without it)"
    )


def test_an_empty_trail_verifies(sessions: sessionmaker[Session]) -> None:
    """No entries yet: intact, zero entries."""
    assert verify(sessions).summary() == "0 entries, chain intact"


def test_the_triggers_still_refuse_updates(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """The chain is a second line: the database still refuses an UPDATE of a chained entry."""
    write(sessions, clock, 2)

    with pytest.raises(DBAPIError, match="append-only"), engine_of(sessions).begin() as conn:
        conn.execute(text("UPDATE audit_log SET hash = 'x'"))


def _alembic(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def test_the_migration_chains_the_entries_already_there(db_url: str) -> None:
    """Upgrading a ledger with entries from before the chain (more than one batch) chains them
    in id order; verify says intact, new entries continue the chain, and the triggers are back."""
    engine = db.make_engine(db_url)
    try:
        command.upgrade(_alembic(engine), "0010")
        at = datetime(2026, 10, 1, 12, 0, 0, 123456, tzinfo=UTC).replace(tzinfo=None)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, object_type, object_id, detail) "
                    "VALUES (:at, :actor, 'finding.created', 'finding', :oid, :detail)"
                ),
                [
                    {
                        "at": (at + timedelta(seconds=i)).isoformat(sep=" "),
                        "actor": "scanner" if i % 3 else "ünïcode <@U1>",
                        "oid": str(i),
                        "detail": '{"b": 1, "a": [1.5, null, "x"]}' if i % 2 else "{}",
                    }
                    for i in range(5_100)
                ],
            )

        db.upgrade(engine)
        sessions = db.session_factory(engine)
        before = verify(sessions)
        write(sessions, FakeClock(), 2)
        after = verify(sessions)

        assert before.summary() == "5100 entries, chain intact"
        assert after.summary() == "5102 entries, chain intact"
        assert row(sessions, 5101).prev_hash == row(sessions, 5100).hash
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE id = 1"))
    finally:
        engine.dispose()


def test_the_migration_downgrades_and_upgrades_again(db_url: str, clock: FakeClock) -> None:
    """0011 can be undone (the chain columns dropped) and redone, chaining what is there."""
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        scan(sessions, clock, [obs("vol-1"), obs("vol-2")])
        with sessions() as session:
            total = session.scalar(select(func.count()).select_from(AuditEntry))
        command.downgrade(_alembic(engine), "0010")
        db.upgrade(engine)

        assert verify(sessions).summary() == f"{total} entries, chain intact"
    finally:
        engine.dispose()


def test_concurrent_appends_never_fork_the_chain(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Two transactions appending at once (one holding its entries uncommitted while the other
    starts) chain one after the other, never both to the same predecessor."""
    if engine_of(sessions).dialect.name != "postgresql":
        pytest.skip("SQLite serializes writers; the advisory lock is PostgreSQL's")
    write(sessions, clock, 1)
    first_in = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction(sessions) as session:
                write_in(session, clock, "holder")
                first_in.set()
                assert release.wait(30)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def other() -> None:
        try:
            with transaction(sessions) as session:
                write_in(session, clock, "other")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    holder = threading.Thread(target=hold)
    holder.start()
    assert first_in.wait(30)
    second = threading.Thread(target=other)
    second.start()
    _wait_for_lock_waiter(engine_of(sessions))
    release.set()
    holder.join(30)
    second.join(30)
    workers = [threading.Thread(target=write, args=(sessions, clock, 5)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)

    assert errors == []
    assert verify(sessions).summary() == "33 entries, chain intact"


def write_in(session: Session, clock: FakeClock, actor: str) -> None:
    """One entry in the caller's transaction."""
    services.audit(session, now=clock(), actor=actor, action="test", object_type="t", object_id="1")


def _wait_for_lock_waiter(engine: Engine) -> None:
    """Until another backend waits on the audit chain's advisory lock (polling the lock
    table, bounded: the waiter is already started)."""
    for _ in range(3000):
        with engine.connect() as conn:
            waiting = conn.scalar(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            )
        if waiting:
            return
        threading.Event().wait(0.01)  # polling for the waiter, not waiting for time to pass
    raise AssertionError("the second append never waited for the first")


def test_the_nightly_check_records_one_alert_per_break_and_none_when_intact(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Intact: no outbox item. Broken: one Slack "alert" item naming the entry, and running
    the check again the next night does not record a second one for the same break."""
    write(sessions, clock, 4)

    audit.check_chain(sessions=sessions, clock=clock, key=None, channel=CHANNEL)
    intact_items = _alerts(sessions)
    tamper(sessions, "UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    audit.check_chain(sessions=sessions, clock=clock, key=None, channel=CHANNEL)
    clock.advance(days=1)
    report = audit.check_chain(sessions=sessions, clock=clock, key=None, channel=CHANNEL)
    alerts = _alerts(sessions)

    assert intact_items == []
    assert not report.intact
    assert [(a.sink, a.kind, a.payload) for a in alerts] == [
        (
            "slack",
            "alert",
            {
                "channel": CHANNEL,
                "text": "audit trail broken: audit entry 2 was changed: its content no longer "
                "matches its hash",
            },
        )
    ]


def _alerts(sessions: sessionmaker[Session]) -> list[OutboxItem]:
    with sessions() as session:
        return list(session.scalars(select(OutboxItem).where(OutboxItem.kind == "alert")))


def test_export_streams_every_entry_with_its_hashes_in_chain_order(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Each exported entry links to the one before it; --since keeps the later ones."""
    write(sessions, clock, 3)
    clock.advance(days=2)
    write(sessions, clock, 2)

    with sessions() as session:
        everything = list(audit.export(session=session))
        later = list(audit.export(session=session, since=clock() - timedelta(days=1)))

    assert [e["id"] for e in everything] == [1, 2, 3, 4, 5]
    assert everything[0]["prev_hash"] == audit.GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(everything))
    assert [e["id"] for e in later] == [4, 5]
    assert later[0]["at"] == "2026-11-03T09:00:00Z"
