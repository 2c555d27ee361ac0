"""Findings in OCSF 1.1: the Compliance Finding class (2003), one mapping for every use.

`findings --format ocsf` (bot/output.py re-exports it) and the event stream (ledger/events.py,
inside the transaction of the change) both build their documents here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.models import Finding, FindingStatus
from rules.catalog import Rule

OCSF_VERSION = "1.1.0"
_SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_STATUS_ID = {"open": 1, "reopened": 1, "claimed": 2, "accepted": 3, "resolved": 4}


def _ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def ocsf_event(
    finding: Finding, rule: Rule | None, *, product_version: str, now: datetime
) -> dict[str, Any]:
    """One OCSF 1.1 Compliance Finding (class 2003) event; an acceptance that has lapsed at
    `now` is failing again."""
    passing = finding.status == FindingStatus.resolved or finding.acceptance_in_force(now)
    activity = (
        3
        if finding.status == FindingStatus.resolved
        else (1 if finding.first_seen == finding.last_seen else 2)
    )
    controls = rule.controls() if rule else []
    event: dict[str, Any] = {
        "class_uid": 2003,
        "class_name": "Compliance Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity,
        "type_uid": 2003 * 100 + activity,
        "time": _ms(finding.last_seen),
        "severity_id": _SEVERITY_ID.get(finding.severity, 0),
        "severity": finding.severity.capitalize(),
        "status_id": _STATUS_ID.get(finding.status, 99),
        "status": finding.status.capitalize(),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "compliancebot",
                "vendor_name": "compliancebot",
                "version": product_version,
            },
        },
        "finding_info": {
            "uid": finding.fingerprint,
            "title": finding.title,
            "desc": rule.rationale if rule else finding.title,
            "first_seen_time": _ms(finding.first_seen),
            "last_seen_time": _ms(finding.last_seen),
            "types": [finding.rule_id],
        },
        "compliance": {
            "status_id": 1 if passing else 3,
            "status": "Pass" if passing else "Fail",
            "control": finding.rule_id,
            "standards": sorted({fw for fw, _ in controls}),
            "requirements": [f"{fw}:{c}" for fw, c in controls],
        },
        "remediation": {"desc": rule.remediation.text if rule else ""},
        "cloud": {
            "provider": "AWS",
            "region": finding.region,
            "account": {"uid": finding.account, "type": "AWS Account"},
        },
        "resources": [
            {
                "uid": finding.resource_id,
                "name": finding.resource_name,
                "type": finding.resource_type,
                "region": finding.region,
            }
        ],
    }
    if finding.detail:  # what exactly is wrong (rules/detail.py)
        event["status_detail"] = finding.detail
        event["compliance"]["status_details"] = [finding.detail]
    if finding.evidence:
        event["unmapped"] = {"evidence": finding.evidence}
    return event
