"""SQLAlchemy 2 typed models. Schema changes go through an Alembic revision in migrations/."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    Unicode,
    and_,
    not_,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC on every backend, always handed back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


# Every id column is an SQL INTEGER: 32 bits on PostgreSQL (64 on SQLite). An id from outside
# (a button value, modal metadata, a CLI argument) past that range makes the query itself fail
# (OverflowError, "integer out of range"), so it is refused before any query is built.
MAX_ID = 2**31 - 1


def row_id(value: object) -> int | None:
    """`value` as a row id: ASCII decimal digits naming 1..MAX_ID; anything else is None.

    int() alone would also take " 7", "+7", "7_0", non-ASCII digits, floats and booleans.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID))):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


class FindingStatus(enum.StrEnum):
    """Lifecycle: open -> claimed -> resolved; resolved -> reopened; any open state -> accepted."""

    open = "open"
    claimed = "claimed"
    resolved = "resolved"
    reopened = "reopened"
    accepted = "accepted"


ACTIVE = (FindingStatus.open, FindingStatus.claimed, FindingStatus.reopened)


class ScanStatus(enum.StrEnum):
    running = "running"
    complete = "complete"
    # Finished, but some calls failed: what they would have shown was neither raised nor resolved.
    partial = "partial"
    failed = "failed"


class Scan(Base):
    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default=ScanStatus.running)
    trigger: Mapped[str] = mapped_column(String(32), default="cli")
    scope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    api_calls: Mapped[int] = mapped_column(default=0)
    api_calls_by_service: Mapped[dict[str, Any]] = mapped_column(default=dict)
    resources: Mapped[int] = mapped_column(default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_count: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(Text)

    errors: Mapped[list[ScanErrorRow]] = relationship(
        back_populates="scan", order_by="ScanErrorRow.id"
    )


class ScanLockRow(Base):
    """The one row naming the scan that holds the scan lock (see ledger/scanlock.py).

    On SQLite it is the lock; on PostgreSQL an advisory lock is, and the row only says who holds it.
    """

    __tablename__ = "scan_lock"
    __table_args__ = (CheckConstraint("id = 1", name="ck_scan_lock_one_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    token: Mapped[str | None] = mapped_column(String(32))  # this holding; NULL: free
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="SET NULL"))
    trigger: Mapped[str | None] = mapped_column(String(32))
    holder: Mapped[str | None] = mapped_column(String(255))  # "pid 4242 on web-1", to show
    process: Mapped[str | None] = mapped_column(String(255))  # to tell whether it still lives
    acquired_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]


class ScanErrorRow(Base):
    __tablename__ = "scan_errors"

    id: Mapped[int] = mapped_column(primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), index=True)
    account: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(1024))

    scan: Mapped[Scan] = relationship(back_populates="errors")


# Risk acceptance, written once: for a loaded finding (Python) and for a query (SQL), side by
# side so that they cannot drift apart. Finding.acceptance_in_force / acceptance_lapsed are the
# hybrids every caller uses.


def _in_force(until: datetime | None, now: datetime) -> datetime | None:
    """`until` if it is after `now` (a snooze still holding), else None."""
    return until if until is not None and until > now else None


def _acceptance_in_force(finding: Finding, now: datetime) -> bool:
    """Accepted, until an instant after `now`: not failing. An acceptance without an end
    (the ledger never records one) is not in force."""
    return (
        finding.status == FindingStatus.accepted
        and finding.accepted_until is not None
        and finding.accepted_until > now
    )


def _acceptance_in_force_sql(cls: type[Finding], now: datetime) -> ColumnElement[bool]:
    # IS NOT NULL keeps the clause two-valued, so that its NOT (lapsed) is never NULL.
    return and_(
        cls.status == FindingStatus.accepted,
        cls.accepted_until.is_not(None),
        cls.accepted_until > now,
    )


def _acceptance_lapsed(finding: Finding, now: datetime) -> bool:
    """Accepted, but the acceptance is no longer in force at `now`: failing again (the next
    scan reopens it)."""
    return finding.status == FindingStatus.accepted and not _acceptance_in_force(finding, now)


def _acceptance_lapsed_sql(cls: type[Finding], now: datetime) -> ColumnElement[bool]:
    return and_(cls.status == FindingStatus.accepted, not_(_acceptance_in_force_sql(cls, now)))


class Finding(Base):
    """One (rule, account, region, resource), deduplicated across scans by its fingerprint."""

    __tablename__ = "findings"
    __table_args__ = (
        Index("ix_findings_rule_account", "rule_id", "account"),
        Index("ix_findings_status_severity", "status", "severity"),
        # Covers the posture's aggregation (index-only on PostgreSQL).
        Index("ix_findings_posture", "status", "rule_id", "severity", "first_seen"),
        # Pages of findings are read per severity in last-seen order.
        Index("ix_findings_severity_last_seen", "severity", "last_seen", "id"),
        Index("ix_findings_first_seen", "first_seen"),
        Index("ix_findings_assignee", "assignee", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    rule_id: Mapped[str] = mapped_column(String(80))
    account: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(1024))
    resource_name: Mapped[str | None] = mapped_column(String(1024))
    title: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=FindingStatus.open)
    assignee: Mapped[str | None] = mapped_column(String(128))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    status_changed_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    accepted_by: Mapped[str | None] = mapped_column(String(128))
    accepted_reason: Mapped[str | None] = mapped_column(Text)
    accepted_until: Mapped[datetime | None]
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    last_scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="SET NULL"))
    # Bumped by every change a person would see (state, assignee, severity, title, snooze): a Slack
    # message rendered at an older version is re-rendered, whoever made the change and from where.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Set when a person resolves it and the re-check has not answered yet.
    verification: Mapped[str | None] = mapped_column(String(16))
    snoozed_until: Mapped[datetime | None]
    snoozed_by: Mapped[str | None] = mapped_column(String(128))
    # What exactly is wrong, from the rule's `detail` over the matched data (rules/detail.py):
    # a sentence for people and the offending items for tools. A change bumps `version`.
    detail: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any] | None]

    events: Mapped[list[FindingEvent]] = relationship(
        back_populates="finding", order_by="FindingEvent.id"
    )

    # The one rule of a risk acceptance in force, usable on a loaded finding and in a query.
    acceptance_in_force = hybrid_method(_acceptance_in_force, _acceptance_in_force_sql)
    acceptance_lapsed = hybrid_method(_acceptance_lapsed, _acceptance_lapsed_sql)

    def is_failing(self, now: datetime) -> bool:
        """Counts against the posture: active, or accepted with the acceptance lapsed."""
        return self.status in ACTIVE or self.acceptance_lapsed(now)

    def snooze_at(self, now: datetime) -> datetime | None:
        """Until when the finding is snoozed, if the snooze is still in force at `now`."""
        return _in_force(self.snoozed_until, now)


class FindingEvent(Base):
    """One change of a finding's state: the history shown by `findings show`."""

    __tablename__ = "finding_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    finding_id: Mapped[int] = mapped_column(
        ForeignKey("findings.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="SET NULL"))

    finding: Mapped[Finding] = relationship(back_populates="events")


class AuditEntry(Base):
    """Append-only: the database refuses UPDATE and DELETE on this table (see migrations), and
    each entry carries the hash of the one before it (ledger/audit.py), so an edit made around
    the triggers is found by `compliancebot audit verify`."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The chain (ledger.audit.append writes them; nullable so that a row inserted around the
    # ledger is stored, and then named by verify, rather than refused with a bare constraint).
    # chain_seq is the chain's order; unique, so two appends can never fork it.
    chain_seq: Mapped[int | None] = mapped_column(index=True, unique=True)
    key_id: Mapped[str | None] = mapped_column(String(16))  # "" unkeyed, else the key's id
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class OutboxStatus(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    # A permanent refusal (bad channel, bad field): kept with the error until retried by hand.
    failed = "failed"


class OutboxItem(Base):
    """An outward call written down before it is made, so a crash or outage loses nothing.

    `key` is unique: the same intent (post finding 7 to Slack) is recorded once, whoever asks.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "sink", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sink: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SlackMessage(Base):
    """A message the bot posted, so it can be re-rendered when what it shows changes."""

    __tablename__ = "slack_messages"
    __table_args__ = (Index("ix_slack_messages_channel_ts", "channel", "ts", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # finding, summary, task
    finding_id: Mapped[int | None] = mapped_column(
        ForeignKey("findings.id", ondelete="CASCADE"), index=True
    )
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="SET NULL"))
    occurrence_id: Mapped[int | None] = mapped_column(
        ForeignKey("task_occurrences.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    rendered_version: Mapped[int] = mapped_column(Integer, default=0)
    posted_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ProcessedEvent(Base):
    """An inbound event id already handled: Slack's retries of it are acknowledged and dropped."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]


class Ticket(Base):
    """A finding's ticket in one tracker, and what of the finding it reflects."""

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_finding_sink", "finding_id", "sink", unique=True),
        Index("ix_tickets_sink_key", "sink", "key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id", ondelete="CASCADE"))
    sink: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(1024))
    synced_version: Mapped[int] = mapped_column(Integer, default=0)
    synced_status: Mapped[str] = mapped_column(String(16))
    synced_assignee: Mapped[str | None] = mapped_column(String(128))
    # SHA-256 of the finding's detail the ticket last told (None: not told yet).
    synced_detail: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SyncCursor(Base):
    """How far a poll of a remote system got (the tracker changes seen up to `at`)."""

    __tablename__ = "sync_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime]


class OccurrenceStatus(enum.StrEnum):
    """A task occurrence is open until someone completes it."""

    open = "open"
    done = "done"


class TaskOccurrence(Base):
    """One due date of a compliance-calendar task, and how it was completed."""

    __tablename__ = "task_occurrences"
    __table_args__ = (
        Index("ux_task_occurrences_task_due", "task_id", "due_on", unique=True),
        Index("ix_task_occurrences_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(String(80))
    due_on: Mapped[date] = mapped_column(Date)  # in the calendar's time zone
    due_at: Mapped[datetime]  # due_on at calendar.due_time, in UTC
    status: Mapped[str] = mapped_column(String(16), default=OccurrenceStatus.open)
    assignee: Mapped[str | None] = mapped_column(String(64))  # reassigned; None: the owner
    snoozed_until: Mapped[datetime | None]
    snoozed_by: Mapped[str | None] = mapped_column(String(128))
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(String(128))
    on_time: Mapped[bool | None]
    evidence_note: Mapped[str | None] = mapped_column(Text)
    evidence_link: Mapped[str | None] = mapped_column(String(2048))
    evidence_file: Mapped[str | None] = mapped_column(String(1024))  # a path or an s3:// URI
    evidence_sha256: Mapped[str | None] = mapped_column(String(64))
    # What the reminder sweep last recorded for it, so a sweep touches only what changed.
    reminded: Mapped[str | None] = mapped_column(String(64))
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    # Bumped by every change a person would see (done, snoozed, reassigned), as a finding's is:
    # a reminder rendered at an older version is re-rendered, whoever made the change and where.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def snooze_at(self, now: datetime) -> datetime | None:
        """Until when reminders are held, if the snooze is still in force at `now`."""
        return _in_force(self.snoozed_until, now)


# APScheduler's job store (SQLAlchemyJobStore), declared here so its table is created and
# versioned by our migrations like every other one.
scheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class PostureSnapshot(Base):
    """One framework's posture at the end of one day (ledger/snapshots.py writes it): what
    `compliancebot trends` reads, so a trend never rescans nor replays the history."""

    __tablename__ = "posture_snapshots"
    __table_args__ = (Index("ux_posture_snapshots_day_fw", "day", "framework", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)  # in the schedule's time zone
    framework: Mapped[str] = mapped_column(String(64))
    # % of controls with rules not failing; None without any.
    score: Mapped[float | None] = mapped_column(Float)
    failing: Mapped[int] = mapped_column(Integer)  # controls, per state
    accepted: Mapped[int] = mapped_column(Integer)
    passing: Mapped[int] = mapped_column(Integer)
    not_covered: Mapped[int] = mapped_column(Integer)
    # Findings failing (an acceptance in force is not) under the framework's rules, per severity.
    open_by_severity: Mapped[dict[str, Any]] = mapped_column(default=dict)
    accepted_findings: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]  # the instant it describes: the day's end, or when taken if before
    taken_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))  # "live" or "backfill"


class ControlSnapshot(Base):
    """One control's state at the end of one day, beside its framework's PostureSnapshot."""

    __tablename__ = "control_snapshots"
    __table_args__ = (
        Index("ux_control_snapshots_day_fw_control", "day", "framework", "control", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    framework: Mapped[str] = mapped_column(String(64))
    control: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # failing, accepted, passing, not_covered
    failing_findings: Mapped[int] = mapped_column(Integer)
    accepted_findings: Mapped[int] = mapped_column(Integer)


class Event(Base):
    """One event of the outbound stream (ledger/events.py): recorded in the transaction of the
    change it tells of, and handed to each sink whose filter takes it through the outbox."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_occurred_at", "occurred_at"),
        Index("ix_events_kind_occurred_at", "kind", "occurred_at"),
    )

    # Time-ordered UUID text: stable across retries, the receivers' dedupe key.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # finding.created, task.due, scan.partial...
    occurred_at: Mapped[datetime]
    severity: Mapped[str] = mapped_column(String(16))
    frameworks: Mapped[list[Any]] = mapped_column(default=list)
    account: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(64))  # finding:12, task:7, scan:3
    # What `body` is: "ocsf/1.1.0/2003" (a Compliance Finding) or "compliancebot.event/1".
    body_schema: Mapped[str] = mapped_column(String(40))
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Archive(Base):
    """One archive object, written by ledger/archive.py after it was read back and checked."""

    __tablename__ = "archives"
    __table_args__ = (Index("ix_archives_kind_day", "kind", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # finding_events, audit, outbox, scans
    day: Mapped[date]
    name: Mapped[str] = mapped_column(String(256))  # the object's name in its store
    location: Mapped[str] = mapped_column(String(1024), unique=True)
    rows: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # of the uncompressed JSON Lines
    bytes: Mapped[int] = mapped_column(Integer)  # of the stored (gzip) object
    # The first and last archived ids (audit: chain positions); null for text ids (events).
    first_key: Mapped[int | None] = mapped_column(BigInteger)
    last_key: Mapped[int | None] = mapped_column(BigInteger)
    last_hash: Mapped[str | None] = mapped_column(String(64))  # audit: where the chain resumes
    created_at: Mapped[datetime]


class FimBaseline(Base):
    """The accepted state of one watched file on one host (ledger/fim.py writes it): what the FIM
    collector compares each scan with, and who made it the baseline, when and why."""

    __tablename__ = "fim_baseline"
    __table_args__ = (Index("ux_fim_baseline_host_path", "host", "path_key", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the path's raw bytes: the identity (a name need not be UTF-8 nor short).
    path_key: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)  # as shown: undecodable bytes as \xNN escapes
    kind: Mapped[str] = mapped_column(String(16))  # "file", or "symlink" when not followed
    sha256: Mapped[str | None] = mapped_column(String(64))  # of the content, or the link target
    size: Mapped[int] = mapped_column(BigInteger)
    mode: Mapped[int] = mapped_column(Integer)  # st_mode: type and permission bits
    uid: Mapped[int] = mapped_column(BigInteger)
    gid: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str | None] = mapped_column(String(64))  # names, when the host knows them
    group: Mapped[str | None] = mapped_column(String(64))
    inode: Mapped[str] = mapped_column(String(20))  # unsigned 64 bits: text, BIGINT is signed
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    accepted_by: Mapped[str] = mapped_column(String(128))
    accepted_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)


class Advisory(Base):
    """One vulnerability advisory (OSV format) imported offline by `compliancebot vulns import`
    (ledger/advisories.py); re-imported only when its `modified` is newer."""

    __tablename__ = "advisories"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # DSA-5532-1, GHSA-..., CVE-...
    aliases: Mapped[list[Any]] = mapped_column(default=list)  # CVE / GHSA ids, capped
    summary: Mapped[str] = mapped_column(Text)
    # critical / high / medium / low from the CVSS score (or the advisory's own word); None: none.
    severity: Mapped[str | None] = mapped_column(String(16))
    cvss_score: Mapped[float | None] = mapped_column(Float)
    cvss_vector: Mapped[str | None] = mapped_column(String(256))
    modified: Mapped[datetime]
    published: Mapped[datetime | None]
    withdrawn: Mapped[datetime | None]  # a withdrawn advisory never matches
    source: Mapped[str] = mapped_column(Text)  # the file (or zip member) it came from
    imported_at: Mapped[datetime]


class AdvisoryPackage(Base):
    """One package an advisory affects: where matching looks, by (ecosystem_base, name)."""

    __tablename__ = "advisory_packages"
    __table_args__ = (
        Index("ix_advisory_packages_eco_name", "ecosystem_base", "name"),
        Index("ix_advisory_packages_advisory", "advisory_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    advisory_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("advisories.id", ondelete="CASCADE")
    )
    ecosystem: Mapped[str] = mapped_column(String(64))  # as the advisory says: "Debian:12"
    ecosystem_base: Mapped[str] = mapped_column(String(32))  # before the first colon: "Debian"
    name: Mapped[str] = mapped_column(String(256))  # normalized per ecosystem (PyPI: PEP 503)
    # [{"type": "ECOSYSTEM" | "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.2"}]}]
    ranges: Mapped[list[Any]] = mapped_column(default=list)
    versions: Mapped[list[Any]] = mapped_column(default=list)  # explicitly affected versions


class Agent(Base):
    """A host reporting to `serve` (ledger/agents.py): its token is kept as a SHA-256 only."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_name", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))  # the findings' account
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    enrolled_at: Mapped[datetime]
    enrolled_by: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(128))
    last_seen_at: Mapped[datetime | None]  # when its last result was taken
    last_sent_at: Mapped[datetime | None]  # that result's own time: a replay is older
