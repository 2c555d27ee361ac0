"""Block Kit builders: pure functions from plain data to Slack messages, modals and the Home tab.

Nothing here touches the database or the network, so each builder is tested on its output.
Slack's limits are kept here: 50 blocks a message (100 in a modal or Home tab), 3,000
characters a section, 75 a button, 24 a modal title.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from bot.slack.ids import (
    DATE_BLOCK,
    DATE_INPUT,
    NOTE_BLOCK,
    NOTE_INPUT,
    REASON_BLOCK,
    REASON_INPUT,
    ActionId,
    FindingsQuery,
    ModalRef,
    ViewId,
)

Block = dict[str, Any]
MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION = 3000
MAX_FIELD = 2000
SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "high": ":large_orange_circle:",
    "medium": ":large_yellow_circle:",
    "low": ":large_blue_circle:",
    "info": ":white_circle:",
}
STATUS_LABEL = {
    "open": "Open",
    "claimed": "Claimed",
    "reopened": "Reopened",
    "resolved": "Resolved",
    "accepted": "Risk accepted",
}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_MRKDWN_SPECIAL = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def esc(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.translate(_MRKDWN_SPECIAL)


_TORN_ENTITY = re.compile(r"&[a-z]{0,3}$")


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut with an ellipsis (never inside an `&amp;`-like escape)."""
    if len(text) <= limit:
        return text
    return _TORN_ENTITY.sub("", text[: limit - 1]) + "…"


def who(user: str | None) -> str:
    """A Slack user id as a mention; anyone else (a CLI user, the scanner) as plain text."""
    if not user:
        return "nobody"
    return f"<@{user}>" if _USER_ID.match(user) else esc(user)


def _day(value: datetime | date | None) -> str:
    return f"{value:%Y-%m-%d}" if value else "-"


def section(text: str) -> Block:
    """A mrkdwn section, clipped to Slack's limit."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}


def context(text: str) -> Block:
    """A small grey line."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION)}]}


def header(text: str) -> Block:
    """A header (plain text, 150 characters at most)."""
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, 150)}}


def button(
    text: str,
    action: ActionId,
    value: str,
    *,
    style: str | None = None,
    confirm: Block | None = None,
) -> Block:
    """A button; `value` is the small typed reference the listener parses."""
    out: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(text, 75)},
        "action_id": str(action),
        "value": value,
    }
    if style:
        out["style"] = style
    if confirm:
        out["confirm"] = confirm
    return out


@dataclass(frozen=True)
class FindingView:
    """What a finding message shows, read from the database at render time."""

    id: int
    title: str
    severity: str
    status: str
    rule_id: str
    resource_type: str
    resource_id: str
    resource_name: str | None
    account: str
    region: str
    first_seen: datetime
    last_seen: datetime
    assignee: str | None = None
    controls: Sequence[tuple[str, Sequence[str]]] = ()
    remediation: str | None = None
    remediation_cli: str | None = None
    resolved_by: str | None = None
    resolution_note: str | None = None
    verification: str | None = None
    accepted_by: str | None = None
    accepted_reason: str | None = None
    accepted_until: datetime | None = None
    snoozed_until: datetime | None = None
    active: bool = True
    detail: str | None = None  # what exactly is wrong (rules.detail)


def finding_text(f: FindingView) -> str:
    """The notification text (and the fallback where blocks are not shown).

    Slack reads this text as mrkdwn too: a resource named `<!channel>` would ping everyone.
    """
    return esc(f"[{f.severity.upper()}] {f.title}: {f.resource_name or f.resource_id} ({f.status})")


def _state_line(f: FindingView) -> str:
    label = esc(STATUS_LABEL.get(f.status, f.status))
    if f.status == "claimed":
        return f"{label} by {who(f.assignee)}"
    if f.status == "resolved":
        line = f"{label} by {who(f.resolved_by)}"
        if f.verification == "pending":
            line += " · _re-checking…_"
        elif f.verification == "verified":
            line += " · verified by re-check"
        elif f.verification == "unverified":
            line += " · _the next scan will verify_"
        return line
    if f.status == "accepted":
        return f"{label} by {who(f.accepted_by)} until {_day(f.accepted_until)}"
    if f.status == "reopened":
        return f"{label}" + (f" · assigned to {who(f.assignee)}" if f.assignee else "")
    return label


def finding_blocks(f: FindingView) -> list[Block]:
    """One finding: what, where, which controls, how to fix, its state, and what can be done."""
    resource = f"`{esc(f.resource_id)}`"
    if f.resource_name and f.resource_name != f.resource_id:
        resource += f" ({esc(f.resource_name)})"
    blocks: list[Block] = [
        section(f"{SEVERITY_EMOJI.get(f.severity, '')} *{esc(f.title)}*"),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": clip(text, MAX_FIELD)}
                for text in (
                    f"*Severity*\n{esc(f.severity.capitalize())}",
                    f"*Status*\n{_state_line(f)}",
                    f"*Resource*\n{esc(f.resource_type)} {resource}",
                    f"*Account / region*\n{esc(f.account)} / {esc(f.region)}",
                )
            ],
        },
    ]
    if f.detail:
        blocks.append(section("*What is wrong*\n" + esc(f.detail)))
    if f.controls:
        lines = [f"*{esc(name)}*: {esc(', '.join(ids))}" for name, ids in f.controls]
        blocks.append(section("*Controls*\n" + "\n".join(lines)))
    if f.remediation:
        text = "*Remediation*\n" + esc(f.remediation.strip())
        if f.remediation_cli:
            text += "\n```" + esc(f.remediation_cli.strip()) + "```"
        blocks.append(section(text))
    notes = []
    if f.status == "accepted" and f.accepted_reason:
        notes.append(f"Accepted because: {esc(f.accepted_reason)}")
    if f.status == "resolved" and f.resolution_note:
        notes.append(f"Resolution note: {esc(f.resolution_note)}")
    if f.snoozed_until and f.active:
        notes.append(f":zzz: Snoozed until {_day(f.snoozed_until)}")
    if notes:
        blocks.append(section("\n".join(notes)))
    blocks.append(
        context(
            f"Finding #{f.id} · rule `{esc(f.rule_id)}` · first seen {_day(f.first_seen)} · "
            f"last seen {_day(f.last_seen)}"
        )
    )
    if f.active:
        value = str(f.id)
        claim_text = "Claim" if f.status != "claimed" else "Take over"
        blocks.append(
            {
                "type": "actions",
                "block_id": f"finding:{f.id}",
                "elements": [
                    button(claim_text, ActionId.claim, value, style="primary"),
                    button("Resolve", ActionId.resolve, value),
                    button("Accept risk", ActionId.accept, value, style="danger"),
                    button("Snooze", ActionId.snooze, value),
                ],
            }
        )
    return blocks


# ---- scan summary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameworkLine:
    name: str
    failing: int
    passing: int
    not_covered: int


@dataclass(frozen=True)
class ScanSummary:
    scan_id: int
    status: str
    new: int
    reopened: int
    resolved: int
    failing_by_severity: dict[str, int]
    frameworks: Sequence[FrameworkLine]
    resources: int
    api_calls: int
    errors: int
    threaded: int = 0
    below_threshold: int = 0
    threshold: str = "high"


def summary_text(s: ScanSummary) -> str:
    """The notification text of a scan summary."""
    return (
        f"Compliance scan #{s.scan_id}: {s.new} new, {s.reopened} reopened, {s.resolved} resolved"
    )


def _severity_counts(counts: dict[str, int]) -> str:
    parts = [
        f"{SEVERITY_EMOJI[sev]} {counts.get(sev, 0)} {sev}"
        for sev in SEVERITY_EMOJI
        if counts.get(sev, 0)
    ]
    return "  ".join(parts) or ":white_check_mark: nothing failing"


def _framework_lines(frameworks: Sequence[FrameworkLine]) -> str:
    return "\n".join(
        f"*{esc(fw.name)}*: {fw.failing} failing · {fw.passing} passing · "
        f"{fw.not_covered} not covered"
        for fw in frameworks
    )


def summary_blocks(s: ScanSummary) -> list[Block]:
    """After a scan: what changed, what fails by severity, the posture per framework."""
    state = {"complete": "complete", "partial": "partial (some calls failed)"}.get(
        s.status, esc(s.status)
    )
    blocks: list[Block] = [
        header(f"Compliance scan #{s.scan_id}"),
        section(
            f"*{s.new}* new · *{s.reopened}* reopened · *{s.resolved}* resolved since the last "
            f"scan\n*Failing now:* {_severity_counts(s.failing_by_severity)}"
        ),
    ]
    if s.frameworks:
        blocks.append(section("*Posture (controls)*\n" + _framework_lines(s.frameworks)))
    more = []
    if s.threaded:
        more.append(
            f"{s.threaded} new or reopened finding(s) at {esc(s.threshold)} or above follow."
        )
    if s.below_threshold:
        more.append(
            f"{s.below_threshold} more below {esc(s.threshold)}: use the button or `findings`."
        )
    if more:
        blocks.append(section(" ".join(more)))
    blocks.append(
        context(
            f"Scan {state} · {s.resources} resources · {s.api_calls} AWS API calls"
            + (
                f" · :warning: {s.errors} error(s), see `compliancebot findings`"
                if s.errors
                else ""
            )
        )
    )
    blocks.append(
        {
            "type": "actions",
            "elements": [button("List open findings", ActionId.page, FindingsQuery().dump())],
        }
    )
    return blocks


# ---- slash command answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ListedFinding:
    id: int
    title: str
    severity: str
    status: str
    resource: str
    account: str
    region: str
    assignee: str | None


@dataclass(frozen=True)
class FindingsPage:
    query: FindingsQuery
    items: Sequence[ListedFinding]
    total: int
    page_size: int
    filters: str = ""

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def findings_page_blocks(p: FindingsPage) -> list[Block]:
    """One page of findings with Previous / Next buttons; never above Slack's block limit."""
    title = f"{p.total} finding(s)" + (f" ({esc(p.filters)})" if p.filters else "")
    blocks: list[Block] = [section(f"*{title}* · page {p.query.page} of {p.pages}")]
    if not p.items:
        blocks.append(section(":white_check_mark: Nothing matches."))
    for item in p.items:
        owner = f" · {who(item.assignee)}" if item.assignee else ""
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": clip(
                        f"{SEVERITY_EMOJI.get(item.severity, '')} *#{item.id}* {esc(item.title)}\n"
                        f"`{esc(item.resource)}` · {esc(item.account)}/{esc(item.region)} · "
                        f"{esc(STATUS_LABEL.get(item.status, item.status))}{owner}",
                        MAX_SECTION,
                    ),
                },
                "accessory": button("Show", ActionId.show, str(item.id)),
            }
        )
    # Slack refuses a block holding two elements with one action_id: each button has its own.
    nav = []
    if p.query.page > 1:
        back = p.query.with_page(p.query.page - 1).dump()
        nav.append(button("Previous", ActionId.page_previous, back))
    if p.query.page < p.pages:
        nav.append(button("Next", ActionId.page_next, p.query.with_page(p.query.page + 1).dump()))
    if nav:
        blocks.append({"type": "actions", "elements": nav})
    return blocks[:MAX_BLOCKS]


@dataclass(frozen=True)
class StatusView:
    frameworks: Sequence[FrameworkLine]
    open_by_severity: dict[str, int]
    accepted: int
    unclaimed_critical: int
    oldest_open: ListedFinding | None
    oldest_open_since: datetime | None
    last_scan_id: int | None
    last_scan_at: datetime | None
    last_scan_status: str | None


def status_blocks(s: StatusView) -> list[Block]:
    """`/compliance status`: the posture at a glance."""
    blocks: list[Block] = [
        header("Compliance status"),
        section("*Open findings:* " + _severity_counts(s.open_by_severity)),
    ]
    facts = [f"*Unclaimed critical:* {s.unclaimed_critical}", f"*Risk accepted:* {s.accepted}"]
    if s.oldest_open is not None:
        facts.append(
            f"*Oldest open:* #{s.oldest_open.id} {esc(s.oldest_open.title)} "
            f"(since {_day(s.oldest_open_since)})"
        )
    blocks.append(section("\n".join(facts)))
    if s.frameworks:
        blocks.append(section("*Posture (controls)*\n" + _framework_lines(s.frameworks)))
    if s.last_scan_id is None:
        blocks.append(context("No scan yet: run `/compliance scan` or `compliancebot scan`."))
    else:
        blocks.append(
            context(
                f"Last scan #{s.last_scan_id} {esc(s.last_scan_status or '')} at "
                f"{s.last_scan_at:%Y-%m-%d %H:%M} UTC"
            )
        )
    return blocks


HELP = [
    ("status", "posture per framework, open findings by severity, last scan"),
    ("findings [severity] [framework] [mine]", "open findings, worst first, a page at a time"),
    ("show <id>", "one finding with its controls, remediation and buttons"),
    ("scan [account]", "scan now; the answer comes when it finishes"),
    ("report <framework> [md|html|csv|json|pdf]", "the framework report as a file in this channel"),
    ("tasks", "upcoming compliance tasks"),
    ("tasks history [task]", "completed tasks: who, when, on time or late, evidence"),
    ("help", "this list"),
]


def help_blocks(command: str, problem: str | None = None) -> list[Block]:
    """What `command` understands; with `problem`, what was wrong first."""
    # `<id>` in mrkdwn would be a link to "id": the placeholders are escaped like data.
    lines = [f"`{esc(command)} {esc(usage)}`: {esc(what)}" for usage, what in HELP]
    blocks = []
    if problem:
        blocks.append(section(f":warning: {esc(problem)}"))
    blocks.append(section("*Usage*\n" + "\n".join(lines)))
    return blocks


def text_blocks(text: str) -> list[Block]:
    """A plain answer."""
    return [section(esc(text))]


def reply_line(text: str, *, mention: str | None = None) -> str:
    """A thread reply as mrkdwn: `mention` (a Slack user id) first, as a real mention that
    notifies them; the text, which carries data, escaped."""
    return f"{who(mention)} {esc(text)}" if mention else esc(text)


# ---- App Home ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HomeView:
    user: str
    mine: Sequence[ListedFinding]
    mine_total: int
    status: StatusView
    tasks: Sequence[str] = field(default_factory=list)


def home_view(h: HomeView) -> dict[str, Any]:
    """The App Home dashboard of one user."""
    blocks: list[Block] = [header("Compliance dashboard")]
    blocks.append(section(f"*Claimed by you* ({h.mine_total})"))
    if not h.mine:
        blocks.append(context("Nothing claimed by you. Claim a finding from its message."))
    for item in h.mine:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": clip(
                        f"{SEVERITY_EMOJI.get(item.severity, '')} *#{item.id}* {esc(item.title)}"
                        f"\n`{esc(item.resource)}` · {esc(item.account)}/{esc(item.region)}",
                        MAX_SECTION,
                    ),
                },
                "accessory": button("Show", ActionId.show, str(item.id)),
            }
        )
    blocks.append({"type": "divider"})
    blocks.extend(status_blocks(h.status)[1:])
    blocks.append({"type": "divider"})
    blocks.append(section("*Upcoming tasks*"))
    if h.tasks:
        blocks.append(section("\n".join(esc(t) for t in h.tasks)))
    else:
        blocks.append(context("No compliance tasks are scheduled."))
    return {"type": "home", "blocks": blocks[:MAX_VIEW_BLOCKS]}


# ---- modals ------------------------------------------------------------------------------------


class _Ref(Protocol):
    def dump(self) -> str: ...


def modal(callback: ViewId, title: str, submit: str, ref: _Ref, blocks: list[Block]) -> Block:
    """A modal whose private_metadata is what it is about (a finding, a task occurrence)."""
    return {
        "type": "modal",
        "callback_id": str(callback),
        "private_metadata": ref.dump(),
        "title": {"type": "plain_text", "text": clip(title, 24)},
        "submit": {"type": "plain_text", "text": clip(submit, 24)},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def _text_input(
    block_id: str, action_id: str, label: str, *, optional: bool, hint: str | None = None
) -> Block:
    out: Block = {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": {
            "type": "plain_text_input",
            "action_id": action_id,
            "multiline": True,
            "max_length": 2000,
        },
    }
    if hint:
        out["hint"] = {"type": "plain_text", "text": hint}
    return out


def _date_input(label: str, initial: date | None, hint: str) -> Block:
    element: Block = {"type": "datepicker", "action_id": DATE_INPUT}
    if initial is not None:
        element["initial_date"] = f"{initial:%Y-%m-%d}"
    return {
        "type": "input",
        "block_id": DATE_BLOCK,
        "label": {"type": "plain_text", "text": label},
        "hint": {"type": "plain_text", "text": hint},
        "element": element,
    }


def resolve_modal(ref: ModalRef, title: str) -> dict[str, Any]:
    """Resolve: an optional note; the resource is re-checked at once."""
    return modal(
        ViewId.resolve,
        "Resolve finding",
        "Resolve",
        ref,
        [
            section(f"*#{ref.finding_id}* {esc(title)}"),
            _text_input(NOTE_BLOCK, NOTE_INPUT, "What was done", optional=True),
            context("The resource is re-checked now; if it still fails the finding stays open."),
        ],
    )


def accept_modal(ref: ModalRef, title: str, default_until: date) -> dict[str, Any]:
    """Accept risk: a reason and an expiry, both required."""
    return modal(
        ViewId.accept,
        "Accept risk",
        "Accept",
        ref,
        [
            section(f"*#{ref.finding_id}* {esc(title)}"),
            _text_input(
                REASON_BLOCK,
                REASON_INPUT,
                "Reason",
                optional=False,
                hint="Why the risk is acceptable, and any compensating control.",
            ),
            _date_input("Accepted until", default_until, "It counts as failing again after this."),
        ],
    )


def snooze_modal(ref: ModalRef, title: str, default_until: date, max_days: int) -> dict[str, Any]:
    """Snooze: hide from reminders until a date."""
    return modal(
        ViewId.snooze,
        "Snooze finding",
        "Snooze",
        ref,
        [
            section(f"*#{ref.finding_id}* {esc(title)}"),
            _date_input(
                "Snooze until", default_until, f"At most {max_days} days; it still counts as open."
            ),
        ],
    )
