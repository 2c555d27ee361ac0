"""Slack delivery under lost answers, crashes and rate limits: every post appears exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import format_datetime

import pytest
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.slack import delivery as delivery_module
from bot.slack.app import make_client
from bot.slack.ids import NOTE_BLOCK, NOTE_INPUT, ActionId, ViewId
from ledger.models import OutboxItem
from tests.bot.slack.conftest import CHANNEL, Bot, serving, slack_settings
from tests.bot.slack.test_app import finding_message, posted, scan_and_notify
from tests.conftest import FakeClock
from tests.fakes.slack import Call, FakeSlack
from tests.ledger.helpers import obs, only_finding


@pytest.fixture
def retrying_bot(
    sessions: sessionmaker[Session], fake_slack: FakeSlack, clock: FakeClock
) -> Iterator[Bot]:
    """The bot with SDK-level retries on, as deployed (slack.max_retries: 3)."""
    settings = slack_settings(fake_slack, max_retries=3)
    with serving(sessions, fake_slack, clock, settings) as served:
        yield served


def summaries(bot: Bot) -> list[str]:
    """The texts of the scan summaries in the channel."""
    return [m["text"] for m in posted(bot) if m["text"].startswith("Compliance scan")]


def summary_item(bot: Bot) -> OutboxItem:
    """The summary's outbox item as the database has it."""
    with bot.sessions() as session:
        item = session.scalar(select(OutboxItem).where(OutboxItem.kind == "summary"))
        assert item is not None
        session.expunge(item)
        return item


class Crash(BaseException):
    """The worker dies (SIGKILL, OOM): nothing after this point runs, nothing is committed."""


# ---- lost answers ------------------------------------------------------------------------------


def test_a_post_whose_connection_resets_after_slack_took_it_appears_once(
    retrying_bot: Bot,
) -> None:
    """The connection drops after Slack posted the summary: the channel shows it once, not 3x."""
    bot = retrying_bot
    bot.slack.fail("chat.postMessage", reset=True)
    scan_and_notify(bot, obs("vol-1"))

    bot.deliver()
    assert len(bot.slack.calls_to("chat.postMessage")) == 1  # the SDK did not re-send it
    bot.clock.advance(minutes=1)
    bot.deliver()

    assert len(summaries(bot)) == 1
    assert summary_item(bot).result["adopted"] is True
    assert finding_message(bot)["thread_ts"] == posted(bot)[0]["ts"]


def test_a_crash_between_slacks_answer_and_the_commit_leaves_one_post(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies after Slack posted but before it wrote that down: still one summary."""
    scan_and_notify(bot, obs("vol-1"))
    real = delivery_module.SlackDelivery._remember

    def die(*args: object, **kwargs: object) -> None:
        raise Crash

    monkeypatch.setattr(delivery_module.SlackDelivery, "_remember", die)
    with pytest.raises(Crash):
        bot.deliver()
    assert len(summaries(bot)) == 1
    monkeypatch.setattr(delivery_module.SlackDelivery, "_remember", real)

    bot.deliver()  # another replica, at once: the dead worker's attempt still holds the item
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    bot.clock.advance(minutes=10)  # past the attempt's lease
    bot.deliver()

    assert len(summaries(bot)) == 1
    assert summary_item(bot).result["adopted"] is True
    assert finding_message(bot)["thread_ts"] == posted(bot)[0]["ts"]


# ---- rate limits -------------------------------------------------------------------------------


def test_retry_after_counts_from_slacks_answer_not_from_before_the_call(retrying_bot: Bot) -> None:
    """A 429 with Retry-After: 3 answered after a slow call: no post before +3 s, one after."""
    bot = retrying_bot
    bot.slack.fail("chat.postMessage", status=429, retry_after=3)
    answered: list[datetime] = []

    def slow(call: Call) -> None:
        if call.method == "chat.postMessage" and not answered:
            answered.append(bot.clock.advance(seconds=4))  # the call takes 4 s

    bot.slack.on_call = slow
    scan_and_notify(bot, obs("vol-1"))

    bot.deliver()
    assert len(bot.slack.calls_to("chat.postMessage")) == 1  # no SDK wait-and-retry inside
    bot.clock.now = answered[0] + timedelta(seconds=2.9)
    bot.deliver()
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    assert summaries(bot) == []

    bot.clock.now = answered[0] + timedelta(seconds=3)
    bot.deliver()
    assert len(summaries(bot)) == 1


def test_retry_after_as_an_http_date_is_honoured(bot: Bot) -> None:
    """Retry-After given as a date: nothing is posted before that moment, the post comes after."""
    until = bot.clock() + timedelta(seconds=40)
    bot.slack.fail("chat.postMessage", status=429, retry_after=format_datetime(until, usegmt=True))
    scan_and_notify(bot, obs("vol-1"))

    bot.deliver()
    bot.clock.now = until - timedelta(seconds=1)
    bot.deliver()
    assert summaries(bot) == []
    bot.clock.now = until
    bot.deliver()
    assert len(summaries(bot)) == 1


@pytest.mark.parametrize("hostile", ["9" * 5000, "99999999999"])
def test_a_hostile_retry_after_neither_crashes_nor_parks_the_post(bot: Bot, hostile: str) -> None:
    """An absurd Retry-After is capped (15 min): the post still goes out, delivery never crashes."""
    bot.slack.fail("chat.postMessage", status=429, retry_after=hostile)
    scan_and_notify(bot, obs("vol-1"))

    bot.deliver()
    bot.clock.advance(minutes=16)
    bot.deliver()

    assert len(summaries(bot)) == 1


# ---- the client the whole bot uses -------------------------------------------------------------


def test_the_client_repeats_reads_and_updates_but_never_a_post(fake_slack: FakeSlack) -> None:
    """A reset is retried for a history read or an update, never for a post (no duplicate)."""
    client = make_client(slack_settings(fake_slack, max_retries=3).slack)
    posted_ts = client.chat_postMessage(channel=CHANNEL, text="one")["ts"]

    fake_slack.fail("conversations.history", reset=True)
    assert client.conversations_history(channel=CHANNEL)["ok"] is True
    fake_slack.fail("chat.update", reset=True)
    client.chat_update(channel=CHANNEL, ts=posted_ts, text="two")
    fake_slack.fail("chat.postMessage", reset=True)
    with pytest.raises(ConnectionError):
        client.chat_postMessage(channel=CHANNEL, text="three")
    fake_slack.fail("chat.postMessage", status=429, retry_after=3)
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel=CHANNEL, text="four")

    texts = [m["text"] for m in fake_slack.messages[CHANNEL]]
    assert texts == ["two", "three"]
    assert len(fake_slack.calls_to("conversations.history")) == 2


# ---- the re-check reply ------------------------------------------------------------------------


def test_a_still_failing_recheck_mentions_the_user_and_escapes_the_resource(bot: Bot) -> None:
    """The reply notifies the person who resolved; a hostile resource name stays plain text."""
    scan_and_notify(bot, obs("vol-1"))
    bot.deliver()
    message = finding_message(bot)
    finding = only_finding(bot.sessions)
    bot.aws.verdict, bot.aws.detail = "fail", "vol-1 <!channel> is <https://evil.test|unencrypted>"

    bot.click(str(ActionId.resolve), str(finding.id), message=message)
    bot.executor.drain()
    modal = bot.slack.views_opened[-1]["view"]
    bot.submit(
        str(ViewId.resolve),
        modal["private_metadata"],
        {NOTE_BLOCK: {NOTE_INPUT: {"value": "done"}}},
        "UALICE",
    )
    bot.executor.drain()
    bot.deliver()

    reply = next(
        r for r in bot.slack.thread(CHANNEL, message["thread_ts"]) if "still fails" in r["text"]
    )
    shown = reply["blocks"][0]["text"]["text"]
    assert shown.startswith("<@UALICE> ")
    assert reply["text"].startswith("<@UALICE> ")
    for text in (shown, reply["text"]):
        assert "&lt;!channel&gt; is &lt;https://evil.test|unencrypted&gt;" in text
        assert "<!channel>" not in text
        assert "&lt;@UALICE" not in text
