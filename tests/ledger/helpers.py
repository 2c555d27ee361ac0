"""Small builders for ledger tests: observations and one-call scans."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ledger import services
from ledger.db import transaction
from ledger.models import AuditEntry, Finding, FindingEvent
from ledger.services import Observation, ScanCounts

RULE = "ec2_volume_encrypted"
ACCOUNT = "111122223333"
REGION = "us-east-1"


def obs(
    resource_id: str = "vol-1",
    *,
    verdict: str = "fail",
    rule_id: str = RULE,
    severity: str = "high",
    title: str = "EBS volumes are encrypted at rest",
    region: str = REGION,
    account: str = ACCOUNT,
) -> Observation:
    """One rule's verdict on one EBS volume."""
    return Observation(
        rule_id=rule_id,
        account=account,
        region=region,
        resource_type="aws.ec2.volume",
        resource_id=resource_id,
        resource_name=None,
        title=title,
        severity=severity,
        verdict=verdict,
    )


def scan(
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    observations: Iterable[Observation],
    *,
    covered: bool = True,
    rule_ids: set[str] | None = None,
) -> ScanCounts:
    """Run one scan over `observations`; `covered` says whether the listing was complete."""
    observations = list(observations)
    rules = rule_ids or ({RULE} | {o.rule_id for o in observations})
    places = {(r, ACCOUNT, REGION) for r in rules} if covered else set()
    with transaction(sessions) as session:
        started = services.start_scan(session=session, now=clock(), trigger="schedule", scope={})
        counts = services.upsert_from_scan(
            session=session,
            scan=started,
            observations=observations,
            covered=places,
            rule_ids=rules,
            accounts={ACCOUNT},
            now=clock(),
        )
        services.finish_scan(
            session=session,
            scan=started,
            now=clock(),
            counts=counts,
            api_calls={"ec2": 1},
            resources=len(observations),
            errors=[],
        )
    return counts


def findings(sessions: sessionmaker[Session]) -> list[Finding]:
    """Every finding, oldest first."""
    with sessions() as session:
        return list(session.scalars(select(Finding).order_by(Finding.id)))


def only_finding(sessions: sessionmaker[Session]) -> Finding:
    """The single finding in the ledger (fails if there are more or none)."""
    rows = findings(sessions)
    assert len(rows) == 1, rows
    return rows[0]


def events(sessions: sessionmaker[Session], finding_id: int) -> list[FindingEvent]:
    """A finding's history, in order."""
    with sessions() as session:
        return list(
            session.scalars(
                select(FindingEvent)
                .where(FindingEvent.finding_id == finding_id)
                .order_by(FindingEvent.id)
            )
        )


def audit(
    sessions: sessionmaker[Session], *, object_type: str | None = None, object_id: str | None = None
) -> list[AuditEntry]:
    """Audit entries, in order, optionally for one object."""
    query = select(AuditEntry).order_by(AuditEntry.id)
    if object_type:
        query = query.where(AuditEntry.object_type == object_type)
    if object_id:
        query = query.where(AuditEntry.object_id == object_id)
    with sessions() as session:
        return list(session.scalars(query))
