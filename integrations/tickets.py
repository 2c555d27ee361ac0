"""What ticket sync asks of a tracker (Jira, Trello, a fake): the `TicketSink` protocol.

The sink knows nothing of the ledger: it receives plain `TicketFinding`s and answers with
`TicketRef`s. Every failure is a `TicketError` that says whether trying again can help.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from rules.errors import CompliancebotError

FINGERPRINT_LABEL = "cb-"


def fingerprint_label(fingerprint: str) -> str:
    """The label (Jira) or marker (Trello) that ties a ticket to its finding, whatever happens."""
    return FINGERPRINT_LABEL + fingerprint


@dataclass(frozen=True)
class TicketFinding:
    """What a ticket says about a finding."""

    fingerprint: str
    finding_id: int
    title: str
    severity: str
    status: str
    resource_type: str
    resource_id: str
    resource_name: str | None
    account: str
    region: str
    controls: Sequence[tuple[str, Sequence[str]]] = ()
    remediation: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class TicketRef:
    """A ticket in a tracker: its key, a link for people, and whether the tracker says done."""

    sink: str
    key: str
    url: str
    done: bool = False
    fingerprint: str | None = None
    deleted: bool = False  # gone from the tracker (a change polled or pushed)


class TicketError(CompliancebotError):
    """A tracker call failed; `permanent` errors (a bad field) must not be retried as they are.

    `gone` says the ticket itself no longer exists (HTTP 404): deleted in the tracker.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.gone = gone


class TicketSink(Protocol):
    """One tracker. Calls may raise TicketError; nothing else escapes."""

    name: str

    def validate(self) -> list[str]:
        """Problems with the mapping (a project, type or transition that does not exist)."""

    def find(self, fingerprint: str) -> TicketRef | None:
        """The ticket already carrying this finding's fingerprint, if any."""

    def create(self, finding: TicketFinding) -> TicketRef:
        """A new ticket for the finding."""

    def close(self, ref: TicketRef, comment: str, *, status: str = "resolved") -> None:
        """Mark done (the finding is resolved or accepted), saying why."""

    def reopen(self, ref: TicketRef, comment: str, *, status: str = "open") -> None:
        """Mark open again (the finding is open, reopened or claimed), saying why."""

    def progress(self, ref: TicketRef, status: str) -> None:
        """Follow a change between active states (open -> claimed), where the tracker shows it."""

    def assign(self, ref: TicketRef, user: str | None) -> None:
        """Give the ticket to a tracker user (None: nobody)."""

    def comment(self, ref: TicketRef, text: str) -> None:
        """Add a comment."""

    def changed_since(self, since: datetime, now: datetime) -> list[TicketRef]:
        """Tickets of ours people changed in the tracker since a time (where webhooks cannot)."""


def describe(finding: TicketFinding) -> str:
    """The ticket body, in plain text every tracker renders."""
    resource = finding.resource_id + (
        f" ({finding.resource_name})"
        if finding.resource_name and finding.resource_name != finding.resource_id
        else ""
    )
    lines = [
        f"Severity: {finding.severity}",
        f"Resource: {finding.resource_type} {resource}",
        f"Account / region: {finding.account} / {finding.region}",
        f"compliancebot finding #{finding.finding_id}",
    ]
    if finding.controls:
        lines.append("")
        lines.append("Controls:")
        lines.extend(f"- {name}: {', '.join(ids)}" for name, ids in finding.controls)
    if finding.remediation:
        lines += ["", "Remediation:", finding.remediation.strip()]
    if finding.link:
        lines += ["", f"Discussion: {finding.link}"]
    return "\n".join(lines)
