"""The Slack bot end to end: signed requests over HTTP, a fake Slack, the ledger underneath."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from slack_sdk import WebClient
from sqlalchemy import func, select

from bot.server import build_services
from bot.slack.ids import (
    DATE_BLOCK,
    DATE_INPUT,
    NOTE_BLOCK,
    NOTE_INPUT,
    REASON_BLOCK,
    REASON_INPUT,
    ActionId,
    ModalRef,
    ViewId,
)
from bot.slack.notify import enqueue_scan
from ledger import services as ledger
from ledger.db import transaction
from ledger.models import Finding, OutboxItem, Scan
from ledger.services import ScanCounts
from tests.bot.slack.conftest import APPROVER, CHANNEL, Bot
from tests.ledger.helpers import audit, obs, only_finding
from tests.ledger.helpers import scan as ledger_scan


def scan_and_notify(bot: Bot, *observations: Any) -> ScanCounts:
    """A scan merged into the ledger with its Slack notifications, as `serve` records them."""
    counts = ledger_scan(bot.sessions, bot.clock, observations)
    with transaction(bot.sessions) as session:
        last = session.scalar(select(Scan).order_by(Scan.id.desc()).limit(1))
        assert last is not None
        enqueue_scan(
            session=session,
            slack=bot.services.slack,
            scan=last,
            counts=counts,
            now=bot.clock(),
        )
    return counts


def posted(bot: Bot) -> list[dict[str, Any]]:
    """Messages the bot posted in the compliance channel."""
    return bot.slack.messages.get(CHANNEL, [])


def block_text(blocks: list[dict[str, Any]]) -> str:
    """All the text a person would read in the blocks."""
    out = []
    for b in blocks:
        if "text" in b and isinstance(b["text"], dict):
            out.append(b["text"]["text"])
        out.extend(f["text"] for f in b.get("fields", []))
        out.extend(e.get("text", "") for e in b.get("elements", []) if e.get("type") == "mrkdwn")
    return "\n".join(out)


def finding_message(bot: Bot) -> dict[str, Any]:
    """The one finding message (threaded under the summary)."""
    found = [m for m in posted(bot) if m.get("thread_ts")]
    assert len(found) == 1, posted(bot)
    return found[0]


# ---- request verification ----------------------------------------------------------------------


def test_unsigned_forged_and_stale_requests_get_401_and_change_nothing(bot: Bot) -> None:
    """Only Slack may talk to the bot: bad signatures are refused and nothing is done."""
    scan_and_notify(bot, obs("vol-1"))
    finding = only_finding(bot.sessions)
    click = json.dumps(
        {
            "type": "block_actions",
            "user": {"id": "UEVE"},
            "actions": [{"action_id": str(ActionId.claim), "value": str(finding.id)}],
        }
    )
    body = f"payload={click}"

    assert bot.post(body, signed=False).status_code == 401
    assert bot.post(body, secret="not-the-secret").status_code == 401
    assert bot.post(body, timestamp=int(bot.clock().timestamp()) - 3600).status_code == 401
    bot.executor.drain()
    assert only_finding(bot.sessions).status == "open"
    assert bot.slack.calls_to("chat.update") == []


# ---- findings in a channel ---------------------------------------------------------------------


def test_scan_posts_a_summary_and_threads_findings_at_or_above_the_threshold(bot: Bot) -> None:
    """After a scan: one summary, and one threaded message per new finding of high or worse."""
    scan_and_notify(
        bot,
        obs("vol-1", severity="critical"),
        obs("vol-2", severity="high"),
        obs("vol-3", severity="low"),
    )

    bot.deliver()

    summary, *threaded = posted(bot)
    assert "Compliance scan #1" in block_text(summary["blocks"])
    assert "*3* new" in block_text(summary["blocks"])
    assert "1 more below high" in block_text(summary["blocks"])
    assert [m["thread_ts"] for m in threaded] == [summary["ts"], summary["ts"]]
    assert "[CRITICAL]" in threaded[0]["text"]
    assert "[HIGH]" in threaded[1]["text"]
    assert "164.312(a)(2)(iv)" in block_text(threaded[0]["blocks"])


def test_delivery_posts_each_message_once(bot: Bot) -> None:
    """Running delivery again, or recording the same scan twice, posts nothing more."""
    counts = scan_and_notify(bot, obs("vol-1"))
    bot.deliver()
    with transaction(bot.sessions) as session:
        last = session.scalar(select(Scan).order_by(Scan.id.desc()).limit(1))
        assert last is not None
        enqueue_scan(
            session=session, slack=bot.services.slack, scan=last, counts=counts, now=bot.clock()
        )
    bot.deliver()

    assert len(bot.slack.calls_to("chat.postMessage")) == 2


def test_a_rate_limited_post_waits_for_retry_after_and_is_posted_once(bot: Bot) -> None:
    """A 429 keeps the message queued; after Retry-After it is posted, exactly once."""
    bot.slack.fail("chat.postMessage", status=429, retry_after=30)
    scan_and_notify(bot, obs("vol-1"))

    bot.deliver()
    assert posted(bot) == []
    bot.clock.advance(seconds=31)
    bot.deliver()
    bot.clock.advance(seconds=5)
    bot.deliver()

    assert len(posted(bot)) == 2
    assert posted(bot)[0]["thread_ts"] is None


def test_an_unknown_outcome_is_adopted_not_posted_twice(bot: Bot) -> None:
    """If Slack got a post whose answer was lost, the retry finds it instead of reposting."""
    scan_and_notify(bot, obs("vol-1"))
    bot.slack.fail("chat.postMessage", status=503)
    bot.deliver()  # the summary's first attempt fails with 503: outcome unknown
    with bot.sessions() as session:
        item = session.scalar(select(OutboxItem).where(OutboxItem.kind == "summary"))
        assert item is not None
        assert item.attempts == 1
        key = item.key
    # As if that attempt had in fact reached Slack:
    WebClient(token="xoxb-test", base_url=bot.slack.base_url).chat_postMessage(
        channel=CHANNEL, text="summary", metadata={"event_type": "x", "event_payload": {"key": key}}
    )

    bot.clock.advance(minutes=5)
    bot.deliver()

    texts = [m["text"] for m in posted(bot)]
    assert texts.count("summary") == 1
    assert not any("Compliance scan" in t for t in texts)
    finding_msg = finding_message(bot)
    assert finding_msg["thread_ts"] == posted(bot)[0]["ts"]


def test_a_refused_post_is_kept_failed_with_slacks_error(bot: Bot) -> None:
    """channel_not_found is not retried forever: the item is failed with Slack's error."""
    bot.slack.fail("chat.postMessage", error="channel_not_found", times=5)
    scan_and_notify(bot, obs("vol-1"))

    bot.deliver()

    with bot.sessions() as session:
        summary = session.scalar(select(OutboxItem).where(OutboxItem.kind == "summary"))
        assert summary is not None
        assert (summary.status, summary.last_error) == (
            "failed",
            "Slack refused it: channel_not_found",
        )


# ---- buttons -----------------------------------------------------------------------------------


def test_claim_assigns_the_clicker_audits_and_updates_the_message(bot: Bot) -> None:
    """Claim: the finding is the clicker's, the audit log says so, the message shows it."""
    scan_and_notify(bot, obs("vol-1"))
    bot.deliver()
    message = finding_message(bot)
    finding = only_finding(bot.sessions)

    response = bot.click(str(ActionId.claim), str(finding.id), user="UALICE", message=message)
    bot.executor.drain()

    assert response.status_code == 200
    claimed = only_finding(bot.sessions)
    assert (claimed.status, claimed.assignee) == ("claimed", "UALICE")
    entry = audit(bot.sessions, object_type="finding", object_id=str(finding.id))[-1]
    assert (entry.actor, entry.action) == ("UALICE", "finding.claimed")
    updated = bot.slack.message(CHANNEL, message["ts"])
    assert "Claimed by <@UALICE>" in block_text(updated["blocks"])


def test_a_change_from_the_cli_re_renders_the_slack_message(bot: Bot) -> None:
    """A finding resolved outside Slack shows as resolved in its message after delivery runs."""
    scan_and_notify(bot, obs("vol-1"))
    bot.deliver()
    message = finding_message(bot)
    with transaction(bot.sessions) as session:
        ledger.resolve(
            session=session,
            finding_id=only_finding(bot.sessions).id,
            user="cli-bob",
            now=bot.clock(),
        )

    bot.deliver()

    updated = bot.slack.message(CHANNEL, message["ts"])
    assert "Resolved by cli-bob" in block_text(updated["blocks"])
    assert not any(b["type"] == "actions" for b in updated["blocks"])


def test_claiming_a_resolved_finding_says_why_not(bot: Bot) -> None:
    """A stale button on a settled finding answers with the reason, privately."""
    scan_and_notify(bot, obs("vol-1"))
    finding = only_finding(bot.sessions)
    with transaction(bot.sessions) as session:
        ledger.resolve(session=session, finding_id=finding.id, user="bob", now=bot.clock())

    bot.click(str(ActionId.claim), str(finding.id))
    bot.executor.drain()

    assert "cannot be claimed" in bot.slack.responses[-1]["text"]
    assert only_finding(bot.sessions).status == "resolved"


def test_a_malformed_button_value_gets_an_error_not_a_crash(bot: Bot) -> None:
    """A button value that is not a finding id is answered privately and changes nothing."""
    response = bot.click(str(ActionId.claim), "drop table findings")
    bot.executor.drain()

    assert response.status_code == 200
    assert "is not a finding id" in bot.slack.responses[-1]["text"]


def test_accept_risk_is_for_approvers_only(bot: Bot) -> None:
    """A non-approver is told who may accept; no modal opens and nothing changes."""
    scan_and_notify(bot, obs("vol-1"))
    finding = only_finding(bot.sessions)

    bot.click(str(ActionId.accept), str(finding.id), user="UALICE")
    bot.executor.drain()

    assert bot.slack.views_opened == []
    assert f"<@{APPROVER}>" in bot.slack.responses[-1]["text"]
    assert only_finding(bot.sessions).status == "open"


def test_an_approver_accepts_with_reason_and_expiry(bot: Bot) -> None:
    """The approver's modal asks reason and date; submitting records the acceptance."""
    scan_and_notify(bot, obs("vol-1"))
    bot.deliver()
    message = finding_message(bot)
    finding = only_finding(bot.sessions)

    bot.click(str(ActionId.accept), str(finding.id), user=APPROVER, message=message)
    bot.executor.drain()
    modal = bot.slack.views_opened[-1]["view"]
    assert modal["callback_id"] == ViewId.accept

    empty = bot.submit(
        str(ViewId.accept),
        modal["private_metadata"],
        {
            REASON_BLOCK: {REASON_INPUT: {"value": " "}},
            DATE_BLOCK: {DATE_INPUT: {"selected_date": "2026-10-01"}},
        },
        APPROVER,
    )
    assert empty.json()["response_action"] == "errors"
    assert set(empty.json()["errors"]) == {REASON_BLOCK, DATE_BLOCK}

    ok = bot.submit(
        str(ViewId.accept),
        modal["private_metadata"],
        {
            REASON_BLOCK: {REASON_INPUT: {"value": "WAF in front; vendor fix due"}},
            DATE_BLOCK: {DATE_INPUT: {"selected_date": "2027-01-31"}},
        },
        APPROVER,
    )
    bot.executor.drain()

    assert ok.status_code == 200
    accepted = only_finding(bot.sessions)
    assert (accepted.status, accepted.accepted_by) == ("accepted", APPROVER)
    assert f"{accepted.accepted_until:%Y-%m-%d}" == "2027-01-31"
    assert "until 2027-01-31" in block_text(bot.slack.message(CHANNEL, message["ts"])["blocks"])


def test_resolve_rechecks_and_keeps_a_still_failing_finding_open(bot: Bot) -> None:
    """Resolve re-checks the resource; still failing: the thread says so, the finding stays."""
    scan_and_notify(bot, obs("vol-1"))
    bot.deliver()
    message = finding_message(bot)
    finding = only_finding(bot.sessions)
    bot.aws.verdict, bot.aws.detail = "fail", "EBS volumes are encrypted at rest (vol-1)"

    bot.click(str(ActionId.resolve), str(finding.id), message=message)
    bot.executor.drain()
    modal = bot.slack.views_opened[-1]["view"]
    bot.submit(
        str(ViewId.resolve),
        modal["private_metadata"],
        {NOTE_BLOCK: {NOTE_INPUT: {"value": "encrypted it"}}},
        "UALICE",
    )
    bot.executor.drain()
    bot.deliver()

    assert bot.aws.rechecks == [("ec2_volume_encrypted", "111122223333", "us-east-1", "vol-1")]
    after = only_finding(bot.sessions)
    assert (after.status, after.verification) == ("open", "failed")
    replies = bot.slack.thread(CHANNEL, message["thread_ts"])
    assert any("still fails" in r["text"] for r in replies)
    assert "Open" in block_text(bot.slack.message(CHANNEL, message["ts"])["blocks"])


def test_resolve_that_passes_the_recheck_is_verified(bot: Bot) -> None:
    """A re-check that passes leaves the finding resolved and marked verified."""
    scan_and_notify(bot, obs("vol-1"))
    finding = only_finding(bot.sessions)
    ref = ModalRef(finding.id)

    bot.submit(
        str(ViewId.resolve), ref.dump(), {NOTE_BLOCK: {NOTE_INPUT: {"value": None}}}, "UALICE"
    )
    bot.executor.drain()

    after = only_finding(bot.sessions)
    assert (after.status, after.verification, after.resolved_by) == (
        "resolved",
        "verified",
        "UALICE",
    )


def test_snooze_beyond_the_limit_is_refused(bot: Bot) -> None:
    """Snoozing past slack.max_snooze_days is refused in the modal, naming the setting."""
    scan_and_notify(bot, obs("vol-1"))
    ref = ModalRef(only_finding(bot.sessions).id)

    far = bot.submit(
        str(ViewId.snooze),
        ref.dump(),
        {DATE_BLOCK: {DATE_INPUT: {"selected_date": "2028-01-01"}}},
        "UALICE",
    )
    near = bot.submit(
        str(ViewId.snooze),
        ref.dump(),
        {DATE_BLOCK: {DATE_INPUT: {"selected_date": "2026-11-08"}}},
        "UALICE",
    )
    bot.executor.drain()

    assert "max_snooze_days" in far.json()["errors"][DATE_BLOCK]
    assert near.status_code == 200
    assert f"{only_finding(bot.sessions).snoozed_until:%Y-%m-%d}" == "2026-11-08"


# ---- slash commands ----------------------------------------------------------------------------


def test_status_answers_with_posture_and_open_by_severity(bot: Bot) -> None:
    """`/compliance status` answers at once with the posture per framework."""
    ledger_scan(bot.sessions, bot.clock, [obs("vol-1", severity="critical")])

    answer = bot.command("status")

    shown = block_text(answer["blocks"])
    assert answer["response_type"] == "ephemeral"
    assert "1 critical" in shown
    assert "*Unclaimed critical:* 1" in shown
    assert "HIPAA" in shown
    assert "Last scan #1" in shown


def test_unknown_subcommand_says_what_is_valid(bot: Bot) -> None:
    """A typo gets a private answer listing the valid subcommands."""
    answer = bot.command("stauts")

    assert answer["response_type"] == "ephemeral"
    assert "valid: status, findings, show, scan, report, tasks, help" in block_text(
        answer["blocks"]
    )


def test_findings_paginate_and_next_page_replaces_the_answer(bot: Bot) -> None:
    """25 findings: page 1 shows 10 with Next; clicking Next shows page 2 in place."""
    ledger_scan(bot.sessions, bot.clock, [obs(f"vol-{i:02d}") for i in range(25)])

    answer = bot.command("findings high")
    assert "page 1 of 3" in block_text(answer["blocks"])
    nav = answer["blocks"][-1]["elements"]
    bot.click(str(ActionId.page), nav[0]["value"], ephemeral=True)
    bot.executor.drain()

    page2 = bot.slack.responses[-1]
    assert page2["replace_original"] is True
    assert "page 2 of 3" in block_text(page2["blocks"])


def test_mine_lists_only_my_claimed_findings(bot: Bot) -> None:
    """`findings mine` shows what the asker has claimed, nothing else."""
    ledger_scan(bot.sessions, bot.clock, [obs("vol-1"), obs("vol-2")])
    first = min(f.id for f in [only_finding_by(bot, "vol-1")])
    with transaction(bot.sessions) as session:
        ledger.claim(session=session, finding_id=first, user="UALICE", now=bot.clock())

    answer = bot.command("findings mine", user="UALICE")

    assert "1 finding(s)" in block_text(answer["blocks"])
    assert f"#{first}" in block_text(answer["blocks"])


def only_finding_by(bot: Bot, resource_id: str) -> Finding:
    """The finding on one resource."""
    with bot.sessions() as session:
        found = session.scalar(select(Finding).where(Finding.resource_id == resource_id))
        assert found is not None
        return found


def test_report_is_posted_as_a_file_in_the_channel(bot: Bot) -> None:
    """`/compliance report hipaa` uploads a Markdown report naming the failing controls."""
    ledger_scan(bot.sessions, bot.clock, [obs("vol-1")])

    bot.command("report hipaa")
    bot.executor.drain()

    upload = bot.slack.files[-1]
    assert upload["channel_id"] == CHANNEL
    assert upload["filename"].startswith("hipaa-report-")
    content = upload["content"].decode()
    assert "164.312(a)(2)(iv)" in content
    assert "ec2_volume_encrypted" in content


def test_scan_failure_is_reported_to_the_asker(bot: Bot) -> None:
    """`/compliance scan` acks at once and tells the asker when the scan fails, and why."""
    answer = bot.command("scan")
    bot.executor.drain()

    assert "Scanning every configured account" in answer["text"]
    assert bot.aws.scans == [(None, "slack:UALICE")]
    assert "The scan failed: no AWS in this test" in bot.slack.responses[-1]["text"]


def test_scan_of_an_unknown_account_names_the_configured_ones(bot: Bot) -> None:
    """`/compliance scan nope` names the targets that exist and starts nothing."""
    answer = bot.command("scan nope")

    assert "no AWS target named 'nope'; configured: default" in block_text(answer["blocks"])
    assert bot.aws.scans == []


# ---- events, home, health ----------------------------------------------------------------------


def test_app_home_is_published_once_even_when_slack_retries(bot: Bot) -> None:
    """app_home_opened publishes the dashboard; Slack's retry of the same event is ignored."""
    ledger_scan(bot.sessions, bot.clock, [obs("vol-1")])
    with transaction(bot.sessions) as session:
        ledger.claim(
            session=session,
            finding_id=only_finding(bot.sessions).id,
            user="UALICE",
            now=bot.clock(),
        )
    event = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0001",
            "api_app_id": "A0001",
            "event_id": "Ev001",
            "event_time": 1,
            "event": {"type": "app_home_opened", "user": "UALICE", "tab": "home"},
        }
    )

    first = bot.post(event, content_type="application/json")
    retry = bot.post(
        event,
        content_type="application/json",
        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    bot.executor.drain()

    assert first.status_code == retry.status_code == 200
    assert len(bot.slack.calls_to("views.publish")) == 1
    home = bot.slack.views_published["UALICE"]
    assert "*Claimed by you* (1)" in block_text(home["blocks"])


def test_health_readiness_and_metrics(bot: Bot) -> None:
    """/healthz is up, /readyz checks the database, /metrics counts requests and findings."""
    ledger_scan(bot.sessions, bot.clock, [obs("vol-1")])
    bot.command("status")

    assert bot.http.get(f"{bot.url}/healthz").json() == {"status": "ok"}
    assert bot.http.get(f"{bot.url}/readyz").json() == {"status": "ready"}
    metrics = bot.http.get(f"{bot.url}/metrics").text
    assert 'compliancebot_slack_requests_total{kind="command",outcome="200"} 1.0' in metrics
    assert 'compliancebot_findings{status="open"} 1.0' in metrics
    assert "compliancebot_slack_handler_seconds_bucket" in metrics


def test_status_before_any_scan_says_how_to_start(bot: Bot) -> None:
    """A fresh bot has no findings and its status says how to run the first scan."""
    with bot.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Finding)) == 0
    assert "No scan yet" in block_text(bot.command("status")["blocks"])


@pytest.mark.usefixtures("moto_world")
def test_scan_from_slack_scans_stores_and_posts_the_summary(bot: Bot) -> None:
    """`/compliance scan` scans the (simulated) account, answers the asker, posts the summary."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=False)
    bot.services.scan = build_services(
        settings=bot.services.settings,
        catalog=bot.services.catalog,
        engine=bot.sessions.kw["bind"],
        clock=bot.clock,
    ).scan

    bot.command("scan")
    bot.executor.drain()
    bot.deliver()

    answer = bot.slack.responses[-1]["text"]
    assert "Scan #1 complete" in answer
    summary = posted(bot)[0]
    assert "Compliance scan #1" in block_text(summary["blocks"])
    with bot.sessions() as session:
        volume = session.scalar(select(Finding).where(Finding.rule_id == "ec2_volume_encrypted"))
        assert volume is not None
        assert volume.status == "open"
