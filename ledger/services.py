"""Every change to findings goes through here: a scan's upsert, a person's claim or acceptance.

A Slack click, a CLI command and a scheduled scan call the same functions, and each transition
writes a FindingEvent and an AuditEntry in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert, label, select, update
from sqlalchemy.orm import Session

from ledger import audit as chain
from ledger import events
from ledger.models import (
    ACTIVE,
    Finding,
    FindingEvent,
    FindingStatus,
    Scan,
    ScanErrorRow,
    ScanStatus,
)
from rules.errors import CompliancebotError

SCANNER = "scanner"
VERIFY_PENDING = "pending"
_INCREMENT_REOPEN = "_increment_reopen_count"
_CHUNK = 500
MAX_ACCEPTANCE_DAYS = 365  # the default of slack.max_acceptance_days
MAX_SNOOZE_DAYS = 90  # the default of slack.max_snooze_days


class LedgerError(CompliancebotError):
    """A lifecycle request that cannot be done, with the reason; `field` names the input at fault
    (e.g. "until"), so a form can show the reason beside it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LimitError(LedgerError):
    """A date past the most days ahead the caller allows (its `max_days`): the caller knows
    which setting set that limit, and may name it."""


def fingerprint(rule_id: str, account: str, region: str, resource_id: str) -> str:
    """The stable identity of a finding: the same resource failing the same rule is one finding."""
    raw = "\x1f".join((rule_id, account, region, resource_id))
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Observation:
    """One rule's verdict on one resource, as the ledger needs it."""

    rule_id: str
    account: str
    region: str
    resource_type: str
    resource_id: str
    resource_name: str | None
    title: str
    severity: str
    verdict: str  # "fail", "pass" or "unknown"
    detail: str | None = None  # what exactly is wrong (rules.detail), for a failing verdict
    evidence: dict[str, Any] | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule_id, self.account, self.region, self.resource_id)


@dataclass
class ScanCounts:
    """What a scan changed, for its summary."""

    new: int = 0
    reopened: int = 0
    resolved: int = 0
    still_failing: int = 0
    accepted_expired: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    new_ids: list[int] = field(default_factory=list)
    reopened_ids: list[int] = field(default_factory=list)
    detail_changed_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "reopened": self.reopened,
            "resolved": self.resolved,
            "still_failing": self.still_failing,
            "accepted_expired": self.accepted_expired,
            "failing_by_severity": self.by_severity,
        }


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def start_scan(*, session: Session, now: datetime, trigger: str, scope: dict[str, Any]) -> Scan:
    """Record that a scan began (so a crash mid-scan still leaves a trace)."""
    scan = Scan(
        started_at=now,
        status=ScanStatus.running,
        trigger=trigger,
        scope=scope,
        api_calls_by_service={},
        counts={},
    )
    session.add(scan)
    session.flush()
    _audit(
        session,
        now=now,
        actor=SCANNER if trigger != "cli" else "cli",
        action="scan.started",
        object_type="scan",
        object_id=str(scan.id),
        detail={"trigger": trigger, **scope},
    )
    # No account: a scan's scope names targets, not the account ids findings carry.
    events.record_scan(session, kind="scan.started", scan=scan, now=now)
    return scan


def _audit(
    session: Session,
    *,
    now: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    detail: dict[str, Any] | None = None,
) -> None:
    chain.append(
        session,
        [
            {
                "at": now,
                "actor": actor,
                "action": action,
                "object_type": object_type,
                "object_id": object_id,
                "detail": detail or {},
            }
        ],
    )


@dataclass
class _Plan:
    """The writes one scan's merge will make, gathered before any is sent."""

    scan_id: int
    now: datetime
    counts: ScanCounts = field(default_factory=ScanCounts)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    seen_ids: list[int] = field(default_factory=list)
    # Findings getting identical new values share one UPDATE ... WHERE id IN (...).
    changes: dict[tuple[tuple[str, Any], ...], list[int]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Findings whose detail changed: one bulk UPDATE by primary key.
    details: list[dict[str, Any]] = field(default_factory=list)

    def transition(
        self, row: Any, to: FindingStatus, kind: str, note: str, values: dict[str, Any]
    ) -> None:
        self.change(row.id, {"status": to, "status_changed_at": self.now, **values})
        self.events.append(
            {
                "finding_id": row.id,
                "at": self.now,
                "kind": kind,
                "from_status": row.status,
                "to_status": to,
                "actor": SCANNER,
                "note": note,
                "scan_id": self.scan_id,
            }
        )

    def change(self, finding_id: int, values: dict[str, Any]) -> None:
        self.changes.setdefault(tuple(sorted(values.items())), []).append(finding_id)

    def new_finding(self, fp: str, obs: Observation) -> None:
        self.inserts.append(
            {
                "fingerprint": fp,
                "rule_id": obs.rule_id,
                "account": obs.account,
                "region": obs.region,
                "resource_type": obs.resource_type,
                "resource_id": obs.resource_id,
                "resource_name": obs.resource_name,
                "title": obs.title,
                "severity": obs.severity,
                "status": FindingStatus.open,
                "detail": obs.detail,
                "evidence": obs.evidence,
                "first_seen": self.now,
                "last_seen": self.now,
                "status_changed_at": self.now,
                "reopen_count": 0,
                "last_scan_id": self.scan_id,
            }
        )

    def still_failing(self, row: Any, obs: Observation) -> None:
        seen = {
            "last_seen": self.now,
            "last_scan_id": self.scan_id,
            "severity": obs.severity,
            "title": obs.title,
        }
        changed = row.detail != obs.detail or _canonical(row.evidence) != _canonical(obs.evidence)
        if changed:
            self.details.append({"id": row.id, "detail": obs.detail, "evidence": obs.evidence})
            self.counts.detail_changed_ids.append(row.id)
        if row.status == FindingStatus.resolved:
            self.counts.reopened += 1
            self.counts.reopened_ids.append(row.id)
            self.transition(
                row,
                FindingStatus.reopened,
                "reopened",
                f"scan {self.scan_id} detected it again",
                {
                    **seen,
                    "resolved_at": None,
                    "resolved_by": None,
                    "resolution_note": None,
                    _INCREMENT_REOPEN: True,
                },
            )
        elif row.lapsed:
            self.counts.accepted_expired += 1
            ended = row.accepted_until
            self.transition(
                row,
                FindingStatus.open,
                "acceptance_expired",
                f"risk acceptance expired {ended:%Y-%m-%d}"
                if ended is not None
                else "risk acceptance had no end date",
                {**seen, "accepted_by": None, "accepted_reason": None, "accepted_until": None},
            )
        else:
            if row.status != FindingStatus.accepted:  # an acceptance in force is not failing
                self.counts.still_failing += 1
            # A new detail is a change a person sees: it bumps the version (re-rendered).
            if row.severity != obs.severity or row.title != obs.title or changed:
                self.change(row.id, seen)
            else:
                self.seen_ids.append(row.id)

    def no_longer_failing(self, row: Any, *, passed: bool, covered: bool) -> None:
        if row.status not in (FindingStatus.accepted, *ACTIVE):
            return
        if passed:
            note = f"scan {self.scan_id} found the resource compliant"
        elif covered:
            note = f"scan {self.scan_id} no longer found the resource"
        else:
            return  # not looked at (service errored, other region, other rule): unchanged
        self.counts.resolved += 1
        self.transition(
            row,
            FindingStatus.resolved,
            "auto_resolved",
            note,
            {"resolved_at": self.now, "resolved_by": SCANNER, "resolution_note": note},
        )


def _canonical(evidence: Any) -> str:
    return json.dumps(evidence, sort_keys=True, separators=(",", ":"), default=str)


def _write(session: Session, plan: _Plan) -> None:
    """Send the plan in bulk: one statement per chunk, not per finding."""
    if plan.details:
        session.execute(update(Finding), plan.details)
    for chunk in _chunks(plan.inserts):
        created = session.execute(insert(Finding).returning(Finding.id), list(chunk)).all()
        for new in created:
            plan.counts.new_ids.append(new.id)
            plan.events.append(
                {
                    "finding_id": new.id,
                    "at": plan.now,
                    "kind": "created",
                    "from_status": None,
                    "to_status": FindingStatus.open,
                    "actor": SCANNER,
                    "note": f"detected by scan {plan.scan_id}",
                    "scan_id": plan.scan_id,
                }
            )
    plan.counts.new = len(plan.inserts)
    for chunk in _chunks(plan.seen_ids):
        session.execute(
            update(Finding)
            .where(Finding.id.in_(chunk))
            .values(last_seen=plan.now, last_scan_id=plan.scan_id)
        )
    for key, ids in plan.changes.items():
        values: dict[str, Any] = dict(key)
        if values.pop(_INCREMENT_REOPEN, False):
            values["reopen_count"] = Finding.reopen_count + 1
        # Each of these changes is visible in a Slack message: mark it for re-rendering.
        values["version"] = Finding.version + 1
        for chunk in _chunks(ids):
            session.execute(update(Finding).where(Finding.id.in_(chunk)).values(**values))
    if plan.events:
        session.execute(insert(FindingEvent), plan.events)
        # One bulk insert, chained in Python (ledger.audit.append).
        chain.append(
            session,
            [
                {
                    "at": plan.now,
                    "actor": SCANNER,
                    "action": f"finding.{e['kind']}",
                    "object_type": "finding",
                    "object_id": str(e["finding_id"]),
                    "detail": {
                        "from": e["from_status"],
                        "to": e["to_status"],
                        "scan_id": plan.scan_id,
                        "note": e["note"],
                    },
                }
                for e in plan.events
            ],
        )


def upsert_from_scan(
    *,
    session: Session,
    scan: Scan,
    observations: Iterable[Observation],
    covered: set[tuple[str, str, str]],
    rule_ids: set[str],
    accounts: set[str],
    now: datetime,
) -> ScanCounts:
    """Merge one scan's verdicts into the findings, in bulk.

    `covered` holds (rule_id, account, region) where the scan listed the rule's resources
    completely: an active finding there whose resource was not seen is resolved (it is gone).
    A finding whose verdict is unknown, or outside `covered`, is left as it was.
    """
    fails: dict[str, Observation] = {}
    passes: set[str] = set()
    unknown: set[str] = set()
    for obs in observations:
        if obs.verdict == "fail":
            fails[obs.fingerprint] = obs
        elif obs.verdict == "pass":
            passes.add(obs.fingerprint)
        else:
            unknown.add(obs.fingerprint)
    existing = {}
    if rule_ids and accounts:
        rows = session.execute(
            select(
                Finding.id,
                Finding.fingerprint,
                Finding.status,
                Finding.accepted_until,
                Finding.rule_id,
                Finding.account,
                Finding.region,
                Finding.severity,
                Finding.title,
                Finding.detail,
                Finding.evidence,
                label("in_force", Finding.acceptance_in_force(now)),
                label("lapsed", Finding.acceptance_lapsed(now)),
            ).where(Finding.rule_id.in_(sorted(rule_ids)), Finding.account.in_(sorted(accounts)))
        ).all()
        existing = {row.fingerprint: row for row in rows}
    plan = _Plan(scan_id=scan.id, now=now)
    for fp, obs in fails.items():
        row = existing.get(fp)
        if row is None or not row.in_force:
            plan.counts.by_severity[obs.severity] = plan.counts.by_severity.get(obs.severity, 0) + 1
        if row is None:
            plan.new_finding(fp, obs)
        else:
            plan.still_failing(row, obs)
    for fp, row in existing.items():
        # Unknown: the data it needs could not be read this time, so nothing is concluded.
        if fp not in fails and fp not in unknown:
            plan.no_longer_failing(
                row, passed=fp in passes, covered=(row.rule_id, row.account, row.region) in covered
            )
    _write(session, plan)
    changes = [
        (e["finding_id"], _SCAN_EVENT_OF[e["kind"]])
        for e in plan.events
        if e["kind"] in _SCAN_EVENT_OF
    ]
    changes += [(i, "finding.detail_changed") for i in plan.counts.detail_changed_ids]
    if changes:
        events.record_findings(session, changes=changes, now=now, actor=SCANNER)
    return plan.counts


def finish_scan(
    *,
    session: Session,
    scan: Scan,
    now: datetime,
    counts: ScanCounts,
    api_calls: dict[str, int],
    resources: int,
    errors: Sequence[Any],
) -> Scan:
    """Close a scan with its numbers and the errors it met."""
    if errors:
        session.execute(
            insert(ScanErrorRow),
            [
                {
                    "scan_id": scan.id,
                    "account": e.account,
                    "region": e.region,
                    "service": e.service,
                    "operation": e.operation,
                    "code": e.code,
                    "message": e.message[:4000],
                    "resource_type": e.resource_type,
                    "resource_id": e.resource_id,
                }
                for e in errors
            ],
        )
    scan.finished_at = now
    scan.status = ScanStatus.partial if errors else ScanStatus.complete
    scan.api_calls = sum(api_calls.values())
    scan.api_calls_by_service = dict(sorted(api_calls.items()))
    scan.resources = resources
    scan.counts = counts.as_dict()
    scan.error_count = len(errors)
    _audit(
        session,
        now=now,
        actor=SCANNER,
        action="scan.finished",
        object_type="scan",
        object_id=str(scan.id),
        detail={
            "status": scan.status,
            **scan.counts,
            "api_calls": scan.api_calls,
            "errors": scan.error_count,
        },
    )
    kind = "scan.partial" if scan.status == ScanStatus.partial else "scan.finished"
    events.record_scan(session, kind=kind, scan=scan, now=now)
    return scan


def fail_scan(*, session: Session, scan: Scan, now: datetime, message: str) -> None:
    """Mark a scan that could not finish; nothing it saw was merged."""
    scan.finished_at, scan.status, scan.message = now, ScanStatus.failed, message
    _audit(
        session,
        now=now,
        actor=SCANNER,
        action="scan.failed",
        object_type="scan",
        object_id=str(scan.id),
        detail={"message": message},
    )
    events.record_scan(session, kind="scan.finished", scan=scan, now=now)  # status: failed


# ---- a person's actions ---------------------------------------------------------------------


def get_finding(*, session: Session, finding_id: int) -> Finding:
    """The finding, or an error naming the id."""
    finding = session.get(Finding, finding_id)
    if finding is None:
        raise LedgerError(f"no finding with id {finding_id}")
    return finding


def _record(
    session: Session,
    finding: Finding,
    *,
    to: FindingStatus,
    kind: str,
    actor: str,
    now: datetime,
    note: str | None,
) -> None:
    before = finding.status
    finding.status = to
    finding.status_changed_at = now
    finding.version += 1
    session.add(
        FindingEvent(
            finding_id=finding.id,
            at=now,
            kind=kind,
            from_status=before,
            to_status=to,
            actor=actor,
            note=note,
        )
    )
    _audit(
        session,
        now=now,
        actor=actor,
        action=f"finding.{kind}",
        object_type="finding",
        object_id=str(finding.id),
        detail={"from": before, "to": str(to), "note": note},
    )
    session.flush()
    told = _EVENT_OF.get(kind)
    if told is not None:
        events.record_finding(session, kind=told, finding=finding, now=now, actor=actor, note=note)


# A person's action -> the outbound event it makes (verified/unknown re-checks make none).
_EVENT_OF = {
    "claimed": "finding.claimed",
    "resolved": "finding.resolved",
    "accepted": "finding.accepted",
    "reopened": "finding.reopened",
    "verification_failed": "finding.reopened",
}
# A scan's change -> its outbound event.
_SCAN_EVENT_OF = {
    "created": "finding.created",
    "reopened": "finding.reopened",
    "auto_resolved": "finding.resolved",
    "acceptance_expired": "finding.acceptance_expired",
}


def _require(finding: Finding, allowed: Iterable[FindingStatus], action: str) -> None:
    allowed = tuple(allowed)
    if finding.status not in allowed:
        raise LedgerError(
            f"finding {finding.id} is {finding.status}: it cannot be {action} "
            f"(only {', '.join(allowed)} findings can)"
        )


def claim(*, session: Session, finding_id: int, user: str, now: datetime) -> Finding:
    """Assign the finding to `user`, who takes responsibility for fixing it."""
    finding = get_finding(session=session, finding_id=finding_id)
    _require(finding, ACTIVE, "claimed")
    previous = finding.assignee
    finding.assignee = user
    note = f"reassigned from {previous}" if previous and previous != user else None
    _record(
        session, finding, to=FindingStatus.claimed, kind="claimed", actor=user, now=now, note=note
    )
    return finding


def resolve(
    *,
    session: Session,
    finding_id: int,
    user: str,
    now: datetime,
    note: str | None = None,
    verify: bool = False,
) -> Finding:
    """Mark fixed by a person; the next scan (or, with `verify`, a re-check now) confirms it."""
    finding = get_finding(session=session, finding_id=finding_id)
    _require(finding, (*ACTIVE, FindingStatus.accepted), "resolved")
    finding.resolved_at, finding.resolved_by, finding.resolution_note = now, user, note
    finding.verification = VERIFY_PENDING if verify else None
    _record(
        session, finding, to=FindingStatus.resolved, kind="resolved", actor=user, now=now, note=note
    )
    return finding


def accept_risk(
    *,
    session: Session,
    finding_id: int,
    user: str,
    reason: str,
    until: datetime,
    now: datetime,
    max_days: int = MAX_ACCEPTANCE_DAYS,
) -> Finding:
    """Accept the risk until a date (at most `max_days` days ahead), with a reason; not reported
    as failing until then."""
    problems = acceptance_problems(reason=reason, until=until, now=now, max_days=max_days)
    if problems:
        at_fault, problem = next(iter(problems.items()))
        raise LedgerError(problem, field=at_fault)
    finding = get_finding(session=session, finding_id=finding_id)
    _require(finding, ACTIVE, "risk-accepted")
    finding.accepted_by, finding.accepted_reason = user, reason.strip()
    finding.accepted_until = until
    _record(
        session,
        finding,
        to=FindingStatus.accepted,
        kind="accepted",
        actor=user,
        now=now,
        note=f"{reason.strip()} (until {until:%Y-%m-%d})",
    )
    return finding


def acceptance_problems(
    *,
    reason: str | None,
    until: datetime | None,
    now: datetime,
    max_days: int = MAX_ACCEPTANCE_DAYS,
) -> dict[str, str]:
    """What is wrong with a risk acceptance's reason and end, by field ("reason", "until");
    empty when it will do. `accept_risk` refuses the first; a form shows them all at once."""
    problems = {}
    if not reason or not reason.strip():
        problems["reason"] = "a risk acceptance needs a reason"
    if until is None:
        problems["until"] = "a risk acceptance needs an end date"
    elif until <= now:
        problems["until"] = f"the acceptance expiry {until:%Y-%m-%d} must be in the future"
    elif (latest := _latest_day(now, max_days)) < until.astimezone(UTC).date():
        problems["until"] = (
            f"a risk acceptance can last at most {max_days} days: pick {latest:%Y-%m-%d} "
            f"or earlier, not {until:%Y-%m-%d}"
        )
    return problems


def _latest_day(now: datetime, max_days: int) -> date:
    """The last UTC day `max_days` days ahead allow: counted in calendar days, so that "365
    days" admits the end of the 365th day."""
    return now.astimezone(UTC).date() + timedelta(days=max_days)


def reopen(
    *, session: Session, finding_id: int, user: str, now: datetime, note: str | None = None
) -> Finding:
    """Reopen a resolved or accepted finding by hand."""
    finding = get_finding(session=session, finding_id=finding_id)
    _require(finding, (FindingStatus.resolved, FindingStatus.accepted), "reopened")
    finding.resolved_at = finding.resolved_by = finding.resolution_note = None
    finding.accepted_by = finding.accepted_reason = None
    finding.accepted_until = None
    finding.reopen_count += 1
    _record(
        session, finding, to=FindingStatus.reopened, kind="reopened", actor=user, now=now, note=note
    )
    return finding


def verify_resolution(
    *, session: Session, finding_id: int, verdict: str, now: datetime, detail: str
) -> Finding:
    """Record the re-check of a finding a person resolved: confirmed, still failing, or unknown.

    Still failing puts it back where it was (claimed by its assignee, else open). A finding that
    someone changed again while the re-check ran is left alone: the newer decision stands.
    """
    finding = get_finding(session=session, finding_id=finding_id)
    if finding.status != FindingStatus.resolved or finding.verification != VERIFY_PENDING:
        return finding
    if verdict == "fail":
        back = FindingStatus.claimed if finding.assignee else FindingStatus.open
        finding.verification = "failed"
        finding.resolved_at = finding.resolved_by = finding.resolution_note = None
        _record(
            session,
            finding,
            to=back,
            kind="verification_failed",
            actor=SCANNER,
            now=now,
            note=f"re-check still fails: {detail}",
        )
    elif verdict == "pass":
        finding.verification = "verified"
        _record(
            session,
            finding,
            to=FindingStatus.resolved,
            kind="verified",
            actor=SCANNER,
            now=now,
            note=f"re-check passes: {detail}",
        )
    else:
        finding.verification = "unverified"
        _record(
            session,
            finding,
            to=FindingStatus.resolved,
            kind="verification_unknown",
            actor=SCANNER,
            now=now,
            note=f"re-check could not tell: {detail}; the next scan decides",
        )
    return finding


def snooze(
    *,
    session: Session,
    finding_id: int,
    user: str,
    until: datetime,
    now: datetime,
    max_days: int = MAX_SNOOZE_DAYS,
) -> Finding:
    """Hide an active finding from reminders until a date, at most `max_days` calendar days
    ahead; it still counts as failing."""
    if until <= now:
        raise LedgerError(f"the snooze date {until:%Y-%m-%d} must be in the future", field="until")
    latest = _latest_day(now, max_days)
    if until.astimezone(UTC).date() > latest:
        raise LimitError(
            f"a finding can be snoozed for at most {max_days} days: pick {latest:%Y-%m-%d} "
            f"or earlier, not {until:%Y-%m-%d}",
            field="until",
        )
    finding = get_finding(session=session, finding_id=finding_id)
    _require(finding, ACTIVE, "snoozed")
    finding.snoozed_until, finding.snoozed_by = until, user
    _record(
        session,
        finding,
        to=FindingStatus(finding.status),
        kind="snoozed",
        actor=user,
        now=now,
        note=f"until {until:%Y-%m-%d}",
    )
    return finding


def audit_refusal(
    *,
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    reason: str,
) -> None:
    """Record an attempt refused for want of permission (`action` + ".refused"): who tried
    what on which object, and why it was refused."""
    _audit(
        session,
        now=now,
        actor=actor,
        action=f"{action}.refused",
        object_type=object_type,
        object_id=object_id,
        detail={"reason": reason},
    )


def audit(
    session: Session,
    *,
    now: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an entry to the audit trail (for events the finding lifecycle does not record)."""
    _audit(
        session,
        now=now,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        detail=detail,
    )
