"""A person says a finding is fixed (a Slack Resolve, a ticket closed): the resource is re-checked
now and the verdict recorded. One flow, whoever resolved it and from wherever."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import services as ledger
from ledger.models import Finding, FindingEvent, FindingStatus

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Recheck:
    """One rule evaluated on one resource now."""

    verdict: str  # "pass", "fail" or "unknown"
    detail: str
    api_calls: int


Check = Callable[[str, str, str, str], Recheck]  # rule id, account, region, resource id


def recheck_resolution(
    *, session: Session, finding: Finding, check: Check, clock: Callable[[], datetime]
) -> tuple[str, str] | None:
    """Re-check a finding whose resolution awaits verification and record the verdict.

    Returns (verdict, detail), or None when there is nothing to verify (someone changed the
    finding meanwhile: the newer decision stands). A re-check that fails to run is "unknown":
    the finding stays resolved, pending the next scan.
    """
    if finding.status != FindingStatus.resolved or finding.verification != "pending":
        return None
    try:
        result = check(finding.rule_id, finding.account, finding.region, finding.resource_id)
    except Exception as exc:  # noqa: BLE001 - any failure of the re-check is "could not tell"
        log.warning("recheck_failed", finding_id=finding.id, error=str(exc))
        verdict, detail = "unknown", f"{type(exc).__name__}: {exc}"
    else:
        verdict, detail = result.verdict, result.detail
    ledger.verify_resolution(
        session=session, finding_id=finding.id, verdict=verdict, now=clock(), detail=detail
    )
    log.info("finding.verified", finding_id=finding.id, verdict=verdict)
    return verdict, detail


def last_failed_recheck(*, session: Session, finding_id: int) -> str | None:
    """Why the last re-check of a finding found it still failing, if one did."""
    return session.scalar(
        select(FindingEvent.note)
        .where(FindingEvent.finding_id == finding_id, FindingEvent.kind == "verification_failed")
        .order_by(FindingEvent.id.desc())
        .limit(1)
    )
