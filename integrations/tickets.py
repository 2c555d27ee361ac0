"""What ticket sync asks of a tracker (Jira, Trello, a fake): the `TicketSink` protocol.

The sink knows nothing of the ledger: it receives plain `TicketFinding`s and answers with
`TicketRef`s. Every failure is a `TicketError` that says whether trying again can help.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from integrations.markup import one_line
from rules.errors import CompliancebotError

FINGERPRINT_LABEL = "cb-"
MAX_INLINE = 2000  # characters of one value on a line of a ticket body


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
    detail: str | None = None  # what exactly is wrong (rules.detail)
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
    # The tracker's names for this change (a delivery id, an action id, key + updated + status):
    # one already applied makes it a replay. `earlier` names changes folded into this one.
    change: tuple[str, ...] = ()
    earlier: tuple[str, ...] = ()


@dataclass(frozen=True)
class Changes:
    """What a poll found: tickets people changed, and where the next poll may start.

    `mark` is the newest change seen, by the tracker's own clock (Trello: the last board action),
    so the next poll asks from there whatever our clock says; None: the sink keeps no mark and
    the next poll starts from the time of this one.
    """

    refs: list[TicketRef] = field(default_factory=list)
    mark: datetime | None = None


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
        """Every problem with the mapping (a project, type, transition or user the tracker does
        not have), each starting with its key in the tracker's section (`jira.project`)."""

    def find(self, fingerprint: str) -> TicketRef | None:
        """The ticket already carrying this finding's fingerprint, if any."""

    def create(self, finding: TicketFinding) -> TicketRef:
        """A new ticket for the finding."""

    def close(self, ref: TicketRef, comment: str, *, status: str = "resolved") -> None:
        """Mark done (the finding is resolved or accepted), saying why (plain text: the sink
        escapes it for its markup, as it does every comment)."""

    def reopen(self, ref: TicketRef, comment: str, *, status: str = "open") -> None:
        """Mark open again (the finding is open, reopened or claimed), saying why."""

    def progress(self, ref: TicketRef, status: str) -> None:
        """Follow a change between active states (open -> claimed), where the tracker shows it."""

    def assign(self, ref: TicketRef, user: str | None) -> None:
        """Give the ticket to a tracker user (None: nobody)."""

    def comment(self, ref: TicketRef, text: str) -> None:
        """Add a comment; `text` is plain text, escaped by the sink for its markup."""

    def changed_since(self, since: datetime, now: datetime) -> Changes:
        """Tickets of ours people changed in the tracker since a time (where webhooks cannot)."""

    def lookup(self, keys: Sequence[str]) -> dict[str, TicketRef | None]:
        """What the tracker says now of tickets by the keys we recorded (a bounded batch).

        A ticket is answered under the key asked, with the key it has now (a Jira issue moved
        to another project answers with its new one); None: it no longer exists. A key the
        tracker could not answer for is left out.
        """


def describe(finding: TicketFinding, escape: Callable[[str], str]) -> str:
    """The ticket body in the sink's markup: every value from the finding goes through `escape`
    (integrations.markup, for that medium); the labels and list around them are ours."""

    def inline(value: str) -> str:
        # A value on a labelled line stays on it: a line break in a name would start a new line
        # where "- " or a heading underline is markup. Only the remediation keeps its lines.
        return escape(one_line(value, MAX_INLINE))

    resource = finding.resource_id + (
        f" ({finding.resource_name})"
        if finding.resource_name and finding.resource_name != finding.resource_id
        else ""
    )
    lines = [
        f"Severity: {inline(finding.severity)}",
        f"Resource: {inline(f'{finding.resource_type} {resource}')}",
        f"Account / region: {inline(f'{finding.account} / {finding.region}')}",
        f"compliancebot finding #{finding.finding_id}",
    ]
    if finding.detail:
        lines += ["", f"What is wrong: {inline(finding.detail)}"]
    if finding.controls:
        lines.append("")
        lines.append("Controls:")
        lines.extend(f"- {inline(f'{name}: ' + ', '.join(ids))}" for name, ids in finding.controls)
    if finding.remediation:
        lines += ["", "Remediation:", escape(finding.remediation.strip())]
    if finding.link:
        # Ours (the configured workspace URL, a channel id and a ts): a bare URL, linked as is.
        lines += ["", f"Discussion: {finding.link}"]
    return "\n".join(lines)
