"""Hostile text and ids in Slack: data is mrkdwn-escaped everywhere, ids are bounded."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slack import blocks as kit
from bot.slack.ids import (
    ActionId,
    FindingsQuery,
    ModalRef,
    SlackInputError,
    TaskRef,
    ViewId,
    parse_finding_id,
)
from bot.slack.task_blocks import TaskView, task_blocks, task_text, tasks_list_blocks
from ledger.models import MAX_ID
from tests.bot.slack.conftest import CHANNEL, Bot
from tests.bot.slack.test_app import scan_and_notify
from tests.hostile import hostile_text, long_hostile_text
from tests.ledger.helpers import obs, only_finding

USER = "UALICE"
WHEN = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
# What the bot writes on purpose: a real user's mention. Anything else in angle brackets is data.
OURS = re.compile(rf"<@{USER}>")
ENTITY = re.compile(r"&(amp|lt|gt);")


def mrkdwn_texts(node: Any) -> Iterator[str]:
    """Every mrkdwn string in blocks, a view or a message (plain_text is not parsed by Slack)."""
    if isinstance(node, list):
        for item in node:
            yield from mrkdwn_texts(item)
    elif isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            if isinstance(value, dict | list):
                yield from mrkdwn_texts(value)


def assert_inert(text: str) -> None:
    """No `<…>` control sequence but the bot's own mention, and `&` only in escapes."""
    rest = OURS.sub("", text)
    assert "<" not in rest, text
    assert ">" not in rest, text
    assert "&" not in ENTITY.sub("", rest), text


def finding_view(text: str, other: str, *, status: str = "claimed") -> kit.FindingView:
    """A finding whose every string field an attacker chose; claimed by a real Slack user."""
    return kit.FindingView(
        id=7,
        title=text,
        severity="critical",
        status=status,
        rule_id=other,
        resource_type=other,
        resource_id=text,
        resource_name=other,
        account=other,
        region=text,
        first_seen=WHEN,
        last_seen=WHEN,
        assignee=USER,
        controls=[(text, [other, text])],
        remediation=other,
        remediation_cli=f"aws s3 rm {text}",
        resolved_by=USER,
        resolution_note=text,
        accepted_by=other,
        accepted_reason=text,
        accepted_until=WHEN,
    )


@given(hostile_text, long_hostile_text, st.sampled_from(list(kit.STATUS_LABEL)))
def test_finding_messages_escape_every_value_but_keep_the_bots_mention(
    text: str, other: str, status: str
) -> None:
    """A resource named `<!channel>` pings nobody, in the blocks and in the notification text."""
    view = finding_view(text, other, status=status)
    for shown in [kit.finding_text(view), *mrkdwn_texts(kit.finding_blocks(view))]:
        assert_inert(shown)
    if status == "claimed":
        assert f"Claimed by <@{USER}>" in json.dumps(kit.finding_blocks(view))


@given(hostile_text, long_hostile_text)
def test_lists_home_and_status_escape_every_value(text: str, other: str) -> None:
    """Finding lists, the App Home and `/compliance status` show hostile names as text."""
    item = kit.ListedFinding(7, text, "high", text, other, other, text, USER)
    page = kit.FindingsPage(FindingsQuery(page=2), [item], total=30, page_size=10, filters=text)
    status = kit.StatusView(
        frameworks=[kit.FrameworkLine(text, 1, 2, 3)],
        open_by_severity={"high": 1},
        accepted=0,
        unclaimed_critical=0,
        oldest_open=item,
        oldest_open_since=WHEN,
        last_scan_id=1,
        last_scan_at=WHEN,
        last_scan_status=other,
    )
    summary = kit.ScanSummary(
        1, other, 1, 0, 0, {"high": 1}, [kit.FrameworkLine(other, 1, 0, 0)], 3, 4, 0, 1, 1, other
    )
    home = kit.home_view(kit.HomeView(USER, [item], 1, status, tasks=[text]))
    built = [
        kit.findings_page_blocks(page),
        kit.status_blocks(status),
        home,
        kit.summary_blocks(summary),
        kit.help_blocks("/compliance", text),
        kit.text_blocks(other),
    ]
    for shown in [kit.summary_text(summary), *mrkdwn_texts(built)]:
        assert_inert(shown)


@given(hostile_text, long_hostile_text, st.booleans())
def test_task_reminders_escape_every_value(text: str, other: str, escalation: bool) -> None:
    """A task titled `<!channel>` in a hostile tasks file pings nobody; its owner is mentioned."""
    view = TaskView(
        occurrence_id=3,
        task_id=other,
        title=text,
        policy=other,
        due_on=date(2026, 12, 15),
        days_left=-2,
        owner=USER,
        evidence=text,
        procedure=other,
        controls=[(text, [other])],
        status="done",
        completed_by=text,
    )
    texts = [
        task_text(view),
        *mrkdwn_texts(task_blocks(view, escalation=escalation)),
        *mrkdwn_texts(tasks_list_blocks([view], horizon_days=30)),
    ]
    for shown in texts:
        assert_inert(shown)
    assert f"<@{USER}>" in json.dumps(tasks_list_blocks([view], horizon_days=30))


# ---- ids -----------------------------------------------------------------------------------------

HUGE = [str(10**30), str(MAX_ID + 1), "9" * 5000, "-1", "0", "1e3", " 7", "7_0", "١٢", "true"]


@pytest.mark.parametrize("value", HUGE)
def test_an_id_outside_the_database_range_is_refused_with_a_short_message(value: str) -> None:
    """A forged id is a clear, bounded error message, never an int the database cannot hold."""
    with pytest.raises(SlackInputError, match="is not a finding id") as refused:
        parse_finding_id(value)
    assert len(str(refused.value)) < 200
    assert parse_finding_id(str(MAX_ID)) == MAX_ID


@pytest.mark.parametrize(
    "raw",
    [json.dumps({"f": 10**30}), "[" * 100_000, "[" * 2_000, json.dumps([7]), "x" * 5000, ""],
)
def test_forged_modal_metadata_is_refused_with_a_short_message(raw: str) -> None:
    """Forged private_metadata (huge id, deeply nested, oversized, not an object) is refused."""
    for load in (ModalRef.load, TaskRef.load):
        with pytest.raises(SlackInputError) as refused:
            load(raw)
        assert len(str(refused.value)) < 200


@pytest.mark.parametrize(
    "extra", [{"c": {"x": 1}, "t": [1]}, {"c": "C" * 500, "t": 1.5}, {"c": None}]
)
def test_modal_metadata_of_the_wrong_type_is_dropped(extra: dict[str, Any]) -> None:
    """A channel or ts that is not a short string is not carried on to a Slack call."""
    ref = ModalRef.load(json.dumps({"f": 7, **extra}))
    task = TaskRef.load(json.dumps({"o": 7, **extra}))
    assert (ref.finding_id, ref.channel, ref.ts) == (7, None, None)
    assert (task.occurrence_id, task.channel, task.ts) == (7, None, None)


@pytest.mark.parametrize("page", [10**30, MAX_ID + 1, 0, "1e3", True, [2]])
def test_a_page_button_past_any_real_page_is_refused(page: object) -> None:
    """A forged page number is an error, not an OFFSET the database cannot take."""
    with pytest.raises(SlackInputError):
        FindingsQuery.load(json.dumps({"p": page}))


@pytest.mark.parametrize("value", [str(10**30), str(MAX_ID + 1)])
def test_a_button_with_a_huge_finding_id_gets_an_ephemeral_error(bot: Bot, value: str) -> None:
    """Clicking a forged Claim button with id 10^30 answers privately; nothing breaks."""
    scan_and_notify(bot, obs("vol-1"))
    response = bot.click(str(ActionId.claim), value)
    bot.executor.drain()

    assert response.status_code == 200
    answer = bot.slack.responses[-1]
    assert answer["response_type"] == "ephemeral"
    assert "is not a finding id" in answer["text"]
    assert only_finding(bot.sessions).status == "open"


def test_a_forged_button_value_is_quoted_escaped_and_short(bot: Bot) -> None:
    """A button value of `<!channel>` repeated is quoted back escaped and cut short."""
    response = bot.click(str(ActionId.show), "<!channel>" * 500)
    bot.executor.drain()

    assert response.status_code == 200
    text = bot.slack.responses[-1]["text"]
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
    assert len(text) < 300


def test_a_page_button_with_a_huge_page_gets_an_ephemeral_error(bot: Bot) -> None:
    """A forged page 10^30 of `/compliance findings` answers privately; nothing breaks."""
    response = bot.click(str(ActionId.page), json.dumps({"p": 10**30}))
    bot.executor.drain()

    assert response.status_code == 200
    assert "is not a page id" in bot.slack.responses[-1]["text"]


def test_a_task_button_with_a_huge_id_gets_an_ephemeral_error(bot: Bot) -> None:
    """A forged Done button on occurrence 10^30 answers privately that it is no occurrence."""
    response = bot.click(str(ActionId.task_done), str(10**30))
    bot.executor.drain()

    assert response.status_code == 200
    assert "is not a task occurrence id" in bot.slack.responses[-1]["text"]


def test_a_modal_naming_a_huge_finding_id_answers_with_an_error(bot: Bot) -> None:
    """A forged Resolve modal about finding 10^30 is answered with a field error, not a 500."""
    response = bot.submit(
        str(ViewId.resolve), json.dumps({"f": 10**30, "c": CHANNEL, "t": "1.0"}), {}, USER
    )
    bot.executor.drain()

    assert response.status_code == 200
    assert response.json()["response_action"] == "errors"


def test_show_command_with_a_huge_id_is_a_usage_error(bot: Bot) -> None:
    """`/compliance show 1000000000000000000000000000000` explains ids instead of failing."""
    answer = bot.command(f"show {10**30}")

    assert answer["response_type"] == "ephemeral"
    assert "is not a finding id" in json.dumps(answer)


# ---- over the wire -------------------------------------------------------------------------------


def test_a_finding_named_like_a_mention_pings_nobody_in_the_posted_message(bot: Bot) -> None:
    """A volume named `<!channel> <https://evil|click>` is posted as that text, not a ping."""
    hostile = "<!channel> <https://evil.example|click> & <@U0BOSS>"
    scan_and_notify(bot, obs(hostile, title=f"Title {hostile}"))
    bot.deliver()

    (message,) = [m for m in bot.slack.messages.get(CHANNEL, []) if m.get("thread_ts")]
    for shown in [message["text"], *mrkdwn_texts(message["blocks"])]:
        assert "<!channel>" not in shown
        assert "<https://evil" not in shown
        assert "<@U0BOSS>" not in shown
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp;" in message["text"]
