"""Action and view ids, and the small typed references buttons and modals carry."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from rules.errors import CompliancebotError


class SlackInputError(CompliancebotError):
    """A Slack payload or argument we cannot use; the message says what is wrong."""


class ActionId(enum.StrEnum):
    claim = "finding.claim"
    resolve = "finding.resolve"
    accept = "finding.accept"
    snooze = "finding.snooze"
    show = "finding.show"
    page = "findings.page"
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


def parse_finding_id(value: Any) -> int:
    """A button's value as a finding id, or a SlackInputError."""
    try:
        finding_id = int(str(value))
    except ValueError:
        raise SlackInputError(f"button value {value!r} is not a finding id") from None
    if finding_id <= 0:
        raise SlackInputError(f"button value {value!r} is not a finding id")
    return finding_id


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
        try:
            data = json.loads(raw or "")
            return cls(
                finding_id=parse_finding_id(data["f"]),
                channel=data.get("c"),
                ts=data.get("t"),
            )
        except (ValueError, KeyError, TypeError):
            raise SlackInputError(f"modal metadata {raw!r} does not name a finding") from None


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
        try:
            data = json.loads(raw or "")
            page = int(data.get("p", 1))
            if page < 1:
                raise ValueError(page)
            return cls(
                severities=tuple(str(s) for s in data.get("s", [])),
                framework=data.get("f"),
                mine=bool(data.get("m", False)),
                page=page,
                statuses=tuple(str(s) for s in data.get("st", [])),
            )
        except (ValueError, TypeError, AttributeError):
            raise SlackInputError(f"button value {raw!r} is not a findings page") from None

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
        try:
            data = json.loads(str(raw))
            return cls(int(data["o"]), data.get("c"), data.get("t"))
        except (ValueError, KeyError, TypeError):
            raise SlackInputError(
                f"this form's metadata is not a task reference: {raw!r}"
            ) from None
