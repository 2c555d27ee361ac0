"""Block Kit builders, tested on their output: what a person sees in Slack."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from bot.slack import blocks as kit
from bot.slack.ids import ActionId, FindingsQuery, ModalRef

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def view(**changes: Any) -> kit.FindingView:
    """A high-severity open finding on an EBS volume."""
    base: dict[str, Any] = {
        "id": 7,
        "title": "EBS volumes are encrypted at rest",
        "severity": "high",
        "status": "open",
        "rule_id": "ec2_volume_encrypted",
        "resource_type": "aws.ec2.volume",
        "resource_id": "vol-1",
        "resource_name": "db-data",
        "account": "111122223333",
        "region": "us-east-1",
        "first_seen": NOW,
        "last_seen": NOW,
        "controls": [("HIPAA Security Rule", ["164.312(a)(2)(iv)"]), ("SOC 2", ["CC6.1"])],
        "remediation": "Encrypt the volume <via a snapshot copy>.",
        "remediation_cli": "aws ec2 copy-snapshot --encrypted",
    }
    base.update(changes)
    return kit.FindingView(**base)


def texts(blocks: list[dict[str, Any]]) -> str:
    """Every piece of text in the blocks, joined."""
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        out.extend(f["text"] for f in block.get("fields", []))
        out.extend(e.get("text", "") for e in block.get("elements", []) if e["type"] == "mrkdwn")
    return "\n".join(out)


def buttons(blocks: list[dict[str, Any]]) -> list[str]:
    """Action ids of the buttons, in order."""
    return [
        e["action_id"]
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "button"
    ]


def test_open_finding_shows_what_where_controls_fix_and_buttons() -> None:
    """An open finding names its resource, account, controls and remediation, with 4 buttons."""
    blocks = kit.finding_blocks(view())
    shown = texts(blocks)

    assert "EBS volumes are encrypted at rest" in shown
    assert "`vol-1` (db-data)" in shown
    assert "111122223333 / us-east-1" in shown
    assert "164.312(a)(2)(iv)" in shown
    assert "CC6.1" in shown
    assert "&lt;via a snapshot copy&gt;" in shown  # escaped, not a broken link
    assert "aws ec2 copy-snapshot --encrypted" in shown
    assert buttons(blocks) == [ActionId.claim, ActionId.resolve, ActionId.accept, ActionId.snooze]
    assert all(e["value"] == "7" for b in blocks if b["type"] == "actions" for e in b["elements"])


def test_claimed_finding_names_the_assignee_and_offers_take_over() -> None:
    """A claimed finding mentions who has it; the claim button becomes Take over."""
    blocks = kit.finding_blocks(view(status="claimed", assignee="U123ABC"))

    assert "Claimed by <@U123ABC>" in texts(blocks)
    first = next(b for b in blocks if b["type"] == "actions")["elements"][0]
    assert first["text"]["text"] == "Take over"


def test_settled_findings_have_no_buttons() -> None:
    """Resolved and accepted findings show who and why, and no action buttons."""
    resolved = kit.finding_blocks(
        view(status="resolved", resolved_by="U1AAA", verification="pending", active=False)
    )
    accepted = kit.finding_blocks(
        view(
            status="accepted",
            accepted_by="U2BBB",
            accepted_reason="compensating control",
            accepted_until=datetime(2027, 1, 31, tzinfo=UTC),
            active=False,
        )
    )

    assert buttons(resolved) == buttons(accepted) == []
    assert "Resolved by <@U1AAA>" in texts(resolved)
    assert "re-checking" in texts(resolved)
    assert "until 2027-01-31" in texts(accepted)
    assert "compensating control" in texts(accepted)


def test_long_remediation_is_clipped_to_slacks_section_limit() -> None:
    """A remediation longer than 3,000 characters is cut, not rejected by Slack."""
    blocks = kit.finding_blocks(view(remediation="x" * 10_000))

    assert all(len(b["text"]["text"]) <= kit.MAX_SECTION for b in blocks if "text" in b)


def test_findings_page_stays_under_the_block_limit_and_paginates() -> None:
    """A page of 20 findings is under 50 blocks, with Next but no Previous on page 1."""
    items = [
        kit.ListedFinding(i, f"finding {i}", "high", "open", f"vol-{i}", "1", "us-east-1", None)
        for i in range(20)
    ]
    page = kit.FindingsPage(query=FindingsQuery(), items=items, total=95, page_size=20)

    blocks = kit.findings_page_blocks(page)

    assert len(blocks) <= kit.MAX_BLOCKS
    nav = blocks[-1]["elements"]
    assert [b["text"]["text"] for b in nav] == ["Next"]
    assert FindingsQuery.load(nav[0]["value"]).page == 2
    assert "page 1 of 5" in blocks[0]["text"]["text"]


def test_last_page_has_previous_only() -> None:
    """The last page offers Previous and keeps the filters."""
    query = FindingsQuery(severities=("critical",), framework="hipaa", page=3)
    page = kit.FindingsPage(query=query, items=[], total=25, page_size=10)

    nav = kit.findings_page_blocks(page)[-1]["elements"]

    assert [b["text"]["text"] for b in nav] == ["Previous"]
    back = FindingsQuery.load(nav[0]["value"])
    assert (back.page, back.severities, back.framework) == (2, ("critical",), "hipaa")


def test_accept_modal_requires_reason_and_date() -> None:
    """The accept modal has a required reason and a required date, and carries the finding."""
    modal = kit.accept_modal(ModalRef(7, "C1", "1.2"), "title", date(2027, 1, 1))

    inputs = [b for b in modal["blocks"] if b["type"] == "input"]
    assert [b.get("optional", False) for b in inputs] == [False, False]
    assert inputs[1]["element"]["initial_date"] == "2027-01-01"
    assert ModalRef.load(modal["private_metadata"]) == ModalRef(7, "C1", "1.2")
    assert len(modal["title"]["text"]) <= 24


def test_summary_lists_changes_severity_and_posture() -> None:
    """The scan summary shows new/reopened/resolved, failing by severity and each framework."""
    summary = kit.ScanSummary(
        scan_id=3,
        status="partial",
        new=4,
        reopened=1,
        resolved=2,
        failing_by_severity={"critical": 1, "high": 3},
        frameworks=[kit.FrameworkLine("SOC 2", 5, 20, 36)],
        resources=120,
        api_calls=300,
        errors=2,
        threaded=4,
        below_threshold=1,
    )

    shown = texts(kit.summary_blocks(summary))

    assert "*4* new · *1* reopened · *2* resolved" in shown
    assert "1 critical" in shown
    assert "3 high" in shown
    assert "*SOC 2*: 5 failing · 20 passing · 36 not covered" in shown
    assert "2 error(s)" in shown
    assert "partial" in shown
