"""Retention with a verified archive: nothing leaves the database before an archive holds it."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from bot.archive import LocalStore, S3Store
from bot.settings import ArchiveS3Settings, ConfigError, Settings
from ledger import archive, events
from ledger import audit as chain
from ledger.archive import ArchiveError
from ledger.db import transaction
from ledger.models import Archive, AuditEntry, Event, FindingEvent, OutboxItem, OutboxStatus
from tests.conftest import FakeClock
from tests.ledger.helpers import obs, scan

DAYS = 10


def history(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    """Ten days of a volume failing and passing in turn: finding events and audit entries daily."""
    for day in range(DAYS):
        scan(sessions, clock, [obs("vol-1", verdict="fail" if day % 2 == 0 else "pass")])
        clock.advance(days=1)


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def event_ids(sessions: sessionmaker[Session]) -> set[int]:
    with sessions() as session:
        return set(session.scalars(select(FindingEvent.id)))


def verify(sessions: sessionmaker[Session]) -> chain.ChainReport:
    with sessions() as session:
        return chain.verify(session=session, key=None)


def test_old_rows_go_to_one_object_per_day_and_come_back(
    sessions: sessionmaker[Session], clock: FakeClock, tmp_path: Path
) -> None:
    history(sessions, clock)
    before = event_ids(sessions)
    store = LocalStore(tmp_path / "archive")

    report = archive.run(
        sessions=sessions, store=store, days={"finding_events": 3, "audit": 3}, clock=clock
    )

    # Days 0-6 are older than 3 days (today is day 10): 7 objects per kind, one per day.
    assert report.objects == {"finding_events": 7, "audit": 7}
    files = sorted(
        p.relative_to(tmp_path / "archive") for p in (tmp_path / "archive").rglob("*.gz")
    )
    assert str(files[0]) == "audit/2026/11/01.jsonl.gz"
    assert len(files) == 14
    kept = event_ids(sessions)
    assert len(kept) == 3
    archived_rows = [
        json.loads(line)
        for p in (tmp_path / "archive" / "finding_events").rglob("*.gz")
        for line in gzip.decompress(p.read_bytes()).splitlines()
    ]
    assert {r["id"] for r in archived_rows} | kept == before  # nothing lost
    assert len(archived_rows) == len({r["id"] for r in archived_rows})  # nothing twice
    # The kept trail still verifies: it resumes at the last archived entry's hash.
    assert verify(sessions).intact, verify(sessions).summary()

    # A second run has nothing more to do (and writes nothing twice).
    again = archive.run(
        sessions=sessions, store=store, days={"finding_events": 3, "audit": 3}, clock=clock
    )
    assert again.objects == {}

    # Restore one day: its rows are back, checked against the recorded hash first.
    with sessions() as session:
        (record,) = archive.objects_of(session=session, kind="finding_events", day=_day(0))
    with transaction(sessions) as session:
        restored, present = archive.restore(session=session, store=store, record=record)
    assert (restored, present) == (record.rows, 0)
    assert len(event_ids(sessions)) == 3 + record.rows


def _day(n: int) -> Any:
    from datetime import date

    return date(2026, 11, 1 + n)


def test_a_changed_archive_is_refused_on_restore(
    sessions: sessionmaker[Session], clock: FakeClock, tmp_path: Path
) -> None:
    history(sessions, clock)
    store = LocalStore(tmp_path)
    archive.run(sessions=sessions, store=store, days={"finding_events": 3}, clock=clock)
    path = tmp_path / "finding_events/2026/11/01.jsonl.gz"
    rows = gzip.decompress(path.read_bytes()).replace(b'"created"', b'"crafted"')
    path.write_bytes(gzip.compress(rows))
    with sessions() as session:
        (record,) = archive.objects_of(session=session, kind="finding_events", day=_day(0))
    with transaction(sessions) as session, pytest.raises(ArchiveError, match="changed since"):
        archive.restore(session=session, store=store, record=record)
    assert len(event_ids(sessions)) == 3


def test_audit_entries_are_never_put_back_into_the_chain(
    sessions: sessionmaker[Session], clock: FakeClock, tmp_path: Path
) -> None:
    history(sessions, clock)
    store = LocalStore(tmp_path)
    archive.run(sessions=sessions, store=store, days={"audit": 3}, clock=clock)
    with sessions() as session:
        (record,) = archive.objects_of(session=session, kind="audit", day=_day(0))
    with transaction(sessions) as session, pytest.raises(ArchiveError, match="append-only"):
        archive.restore(session=session, store=store, record=record)


class LyingStore(LocalStore):
    """Stores, then answers with something else: the read-back check must catch it."""

    def get(self, name: str) -> Iterator[bytes]:
        yield gzip.compress(b'{"id": 1}\n')


class FailingStore(LocalStore):
    def put(self, name: str, body: IO[bytes], size: int) -> None:
        raise ArchiveError(f"{self.location(name)}: cannot write: disk full")


@pytest.mark.parametrize("store_class", [LyingStore, FailingStore])
def test_nothing_is_deleted_unless_the_archive_reads_back_right(
    sessions: sessionmaker[Session], clock: FakeClock, tmp_path: Path, store_class: type
) -> None:
    history(sessions, clock)
    before, entries = event_ids(sessions), count(sessions, AuditEntry)
    with pytest.raises(ArchiveError) as err:
        archive.run(
            sessions=sessions,
            store=store_class(tmp_path),
            days={"finding_events": 3, "audit": 3},
            clock=clock,
        )
    assert "finding_events/2026/11/01.jsonl.gz" in str(err.value)
    assert event_ids(sessions) == before
    assert count(sessions, AuditEntry) == entries
    assert count(sessions, Archive) == 0


def test_a_crash_after_the_upload_rewrites_the_same_object(
    sessions: sessionmaker[Session],
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between the upload and the commit: rows stay, the next run writes the same name."""
    history(sessions, clock)
    before = event_ids(sessions)
    store = LocalStore(tmp_path)
    real = archive._commit_object

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(archive, "_commit_object", crash)
    with pytest.raises(KeyboardInterrupt):
        archive.run(sessions=sessions, store=store, days={"finding_events": 3}, clock=clock)
    assert (tmp_path / "finding_events/2026/11/01.jsonl.gz").exists()
    assert count(sessions, Archive) == 0
    monkeypatch.setattr(archive, "_commit_object", real)

    archive.run(sessions=sessions, store=store, days={"finding_events": 3}, clock=clock)
    objects = sorted(p.name for p in (tmp_path / "finding_events").rglob("*.gz"))
    assert objects == [f"{d:02d}.jsonl.gz" for d in range(1, 8)]  # no ".2" copies
    archived = [
        json.loads(x)
        for p in tmp_path.rglob("*.gz")
        for x in gzip.decompress(p.read_bytes()).splitlines()
    ]
    assert len(archived) == len({r["id"] for r in archived})  # each row once
    assert {r["id"] for r in archived} | event_ids(sessions) == before


def test_the_database_refuses_to_drop_audit_entries_no_archive_holds(
    sessions: sessionmaker[Session], clock: FakeClock, tmp_path: Path
) -> None:
    history(sessions, clock)
    archive.run(sessions=sessions, store=LocalStore(tmp_path), days={"audit": 3}, clock=clock)
    with sessions() as session:
        last = session.scalar(select(func.max(AuditEntry.chain_seq)))
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(delete(AuditEntry).where(AuditEntry.chain_seq == last))


def test_a_forged_archive_record_does_not_hide_removed_entries(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Someone with write access records a fake archive and drops the oldest entries: the
    chain has no archive.created entry attesting it, and verify says so."""
    history(sessions, clock)
    with transaction(sessions) as session:
        third = session.execute(
            select(AuditEntry.chain_seq, AuditEntry.hash).where(AuditEntry.chain_seq == 3)
        ).one()
        session.add(
            Archive(
                kind="audit",
                day=_day(0),
                name="audit/2026/11/01.jsonl.gz",
                location="/nowhere/audit/2026/11/01.jsonl.gz",
                rows=3,
                sha256="0" * 64,
                bytes=1,
                first_key=1,
                last_key=3,
                last_hash=third.hash,
                created_at=clock(),
            )
        )
        session.flush()
        session.execute(delete(AuditEntry).where(AuditEntry.chain_seq <= 3))
    report = verify(sessions)
    assert not report.intact
    assert "not attested" in report.summary()


@pytest.mark.usefixtures("moto_world")
def test_s3_with_kms_and_object_lock(sessions: sessionmaker[Session], clock: FakeClock) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="evidence-archive", ObjectLockEnabledForBucket=True)
    key = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    history(sessions, clock)
    config = ArchiveS3Settings(
        bucket="evidence-archive",
        prefix="cb",
        kms_key_id=key,
        object_lock_mode="COMPLIANCE",
        object_lock_days=365,
    )
    store = S3Store(config, None, client=s3)
    report = archive.run(sessions=sessions, store=store, days={"finding_events": 3}, clock=clock)
    assert report.objects == {"finding_events": 7}
    head = s3.head_object(Bucket="evidence-archive", Key="cb/finding_events/2026/11/01.jsonl.gz")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ServerSideEncryption"] == "aws:kms"
    with sessions() as session:
        (record,) = archive.objects_of(session=session, kind="finding_events", day=_day(0))
    assert record.location == "s3://evidence-archive/cb/finding_events/2026/11/01.jsonl.gz"


@pytest.mark.usefixtures("moto_world")
def test_a_missing_bucket_is_named_and_nothing_is_deleted(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    history(sessions, clock)
    before = event_ids(sessions)
    store = S3Store(ArchiveS3Settings(bucket="no-such-bucket"), None, client=boto3.client("s3"))
    with pytest.raises(ArchiveError, match=r"s3://no-such-bucket/.*NoSuchBucket"):
        archive.run(sessions=sessions, store=store, days={"finding_events": 3}, clock=clock)
    assert event_ids(sessions) == before


def test_an_age_without_a_destination_is_a_config_error() -> None:
    with pytest.raises((ConfigError, ValueError), match="nowhere to archive to"):
        Settings.model_validate({"archive": {"days": {"audit": 365}}})


def test_sqlite_trigger_text_is_in_place(sessions: sessionmaker[Session]) -> None:
    """The gate is the database's, not the code's (SQLite: the trigger names the archives)."""
    with sessions() as session:
        if session.get_bind().dialect.name != "sqlite":
            pytest.skip("SQLite's trigger")
        sql = session.scalar(
            text("SELECT sql FROM sqlite_master WHERE name = 'audit_log_no_delete'")
        )
    assert "archives" in str(sql)


def test_events_go_once_every_sink_has_them(
    sessions: sessionmaker[Session], clock: FakeClock, tmp_path: Path
) -> None:
    """An event a sink still waits for stays; the delivered ones go to the archive."""
    events.use_stream(sessions, events.Stream(sinks=(events.Subscription(sink="webhook"),)))
    history(sessions, clock)
    with transaction(sessions) as session:
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
        waiting = items[0]  # the oldest event's delivery is still pending
        for item in items[1:]:
            item.status, item.delivered_at = OutboxStatus.delivered, clock()
        waiting_event = waiting.payload["event"]
    report = archive.run(
        sessions=sessions, store=LocalStore(tmp_path), days={"events": 3}, clock=clock
    )
    assert report.rows["events"] > 0
    with sessions() as session:
        kept = set(session.scalars(select(Event.id)))
        record = session.scalars(select(Archive).where(Archive.kind == "events")).first()
    assert waiting_event in kept
    assert record is not None
    assert (record.first_key, record.last_key) == (None, None)
