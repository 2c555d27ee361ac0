"""Action and view ids, and the small typed references buttons and modals carry."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from ledger.models import MAX_ID, row_id
from rules.errors import CompliancebotError


class SlackInputError(CompliancebotError):
    """A Slack payload or argument we cannot use; the message says what is wrong."""


class ActionId(enum.StrEnum):
    claim = "finding.claim"
    resolve = "finding.resolve"
    accept = "finding.accept"
    snooze = "finding.snooze"
    show = "finding.show"
    # One id per page button: Slack refuses two elements with one action_id in a block.
    page = "findings.page"  # List open findings (and buttons posted before the split)
    page_previous = "findings.page.previous"
    page_next = "findings.page.next"
    task_done = "task.done"
    task_snooze = "task.snooze"
    task_reassign = "task.reassign"


class ViewId(enum.StrEnum):
    resolve = "finding.resolve.modal"
    accept = "finding.accept.modal"
    snooze = "finding.snooze.modal"
    task_done = "task.done.modal"
    task_snooze = "task.snooze.modal"
    task_reassign = "task.reassign.modal"


# Input block and element ids inside the modals.
NOTE_BLOCK, NOTE_INPUT = "note", "note_input"
REASON_BLOCK, REASON_INPUT = "reason", "reason_input"
DATE_BLOCK, DATE_INPUT = "date", "date_input"
LINK_BLOCK, LINK_INPUT = "link", "link_input"
FILE_BLOCK, FILE_INPUT = "file", "file_input"
USER_BLOCK, USER_INPUT = "user", "user_input"


def shown(value: Any, limit: int = 40) -> str:
    """An untrusted value quoted in an error message, at most `limit` characters of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_id(value: Any, what: str, where: str = "button value") -> int:
    """An id from a payload (a button value, modal metadata, a command), or a SlackInputError.

    The one parser of ids Slack sends back: bounded to the database's id range (MAX_ID), so a
    forged 10**30 is an answer to the user, not a failed query.
    """
    parsed = row_id(value)
    if parsed is None:
        raise SlackInputError(
            f"{where} {shown(value)} is not a {what} id (a whole number from 1 to {MAX_ID})"
        )
    return parsed


def parse_finding_id(value: Any) -> int:
    """A button's value as a finding id, or a SlackInputError."""
    return parse_id(value, "finding")


@dataclass(frozen=True)
class ModalRef:
    """What a modal is about, carried in its private_metadata: the finding and its message."""

    finding_id: int
    channel: str | None = None
    ts: str | None = None

    def dump(self) -> str:
        """As private_metadata."""
        return json.dumps({"f": self.finding_id, "c": self.channel, "t": self.ts})

    @classmethod
    def load(cls, raw: str | None) -> ModalRef:
        """Parse private_metadata, or raise SlackInputError."""
        data = _json_object(raw, "modal metadata", "a finding")
        return cls(
            finding_id=parse_id(data.get("f"), "finding", "modal metadata"),
            channel=_optional_str(data.get("c")),
            ts=_optional_str(data.get("t")),
        )


@dataclass(frozen=True)
class FindingsQuery:
    """A page of `/compliance findings`: the filters and the page number."""

    severities: tuple[str, ...] = ()
    framework: str | None = None
    mine: bool = False
    page: int = 1
    statuses: tuple[str, ...] = field(default=())

    def dump(self) -> str:
        """As a button value (Slack allows 2,000 characters; this stays far below)."""
        return json.dumps(
            {
                "s": list(self.severities),
                "f": self.framework,
                "m": self.mine,
                "p": self.page,
                "st": list(self.statuses),
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, raw: str | None) -> FindingsQuery:
        """Parse a button value, or raise SlackInputError."""
        data = _json_object(raw, "button value", "a findings page")
        severities, statuses = data.get("s", []), data.get("st", [])
        framework = data.get("f")
        if not (
            _short_strs(severities)
            and _short_strs(statuses)
            and _optional_str(framework) == framework
        ):
            raise SlackInputError(f"button value {shown(raw)} is not a findings page")
        return cls(
            severities=tuple(severities),
            framework=framework,
            mine=data.get("m") is True,
            # A page past MAX_ID would make OFFSET overflow; any real page is far below it.
            page=parse_id(data.get("p", 1), "page", "button value"),
            statuses=tuple(statuses),
        )

    def with_page(self, page: int) -> FindingsQuery:
        """The same filters on another page."""
        return FindingsQuery(self.severities, self.framework, self.mine, page, self.statuses)


@dataclass(frozen=True)
class TaskRef:
    """What a task modal is about: the occurrence and the message its button was on."""

    occurrence_id: int
    channel: str | None = None
    ts: str | None = None

    def dump(self) -> str:
        """As private_metadata."""
        return json.dumps({"o": self.occurrence_id, "c": self.channel, "t": self.ts})

    @classmethod
    def load(cls, raw: Any) -> TaskRef:
        """From private_metadata, or a SlackInputError."""
        data = _json_object(raw, "this form's metadata", "a task reference")
        return cls(
            parse_id(data.get("o"), "task occurrence", "this form's metadata"),
            _optional_str(data.get("c")),
            _optional_str(data.get("t")),
        )


# Slack caps private_metadata at 3,000 characters and a button value at 2,000.
MAX_METADATA = 3000


def _json_object(raw: Any, where: str, what: str) -> dict[str, Any]:
    """A JSON object sent back by Slack, bounded before it is parsed, or a SlackInputError."""
    if not isinstance(raw, str) or len(raw) > MAX_METADATA:
        raise SlackInputError(f"{where} {shown(raw)} is not {what}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested past the C parser
        data = None
    if not isinstance(data, dict):
        raise SlackInputError(f"{where} {shown(raw)} is not {what}")
    return data


def _optional_str(value: Any) -> str | None:
    """A channel id or ts from metadata: a short string, or None for anything else."""
    return value if isinstance(value, str) and len(value) <= 64 else None


def _short_strs(value: Any) -> bool:
    return isinstance(value, list) and len(value) <= 10 and all(_optional_str(v) for v in value)
