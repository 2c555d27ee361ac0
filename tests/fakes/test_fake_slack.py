"""The fake Slack refuses what Slack refuses: a Block Kit mistake fails a test, not production."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse
from slack_sdk.webhook import WebhookClient

from tests.fakes.slack import FakeSlack

TWIN_BUTTONS: list[dict[str, Any]] = [
    {
        "type": "actions",
        "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": t}, "action_id": "same"}
            for t in ("Previous", "Next")
        ],
    }
]
SPREAD_BUTTONS: list[dict[str, Any]] = [
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f"row {i}"},
        "accessory": {
            "type": "button",
            "text": {"type": "plain_text", "text": "Show"},
            "action_id": "same",
        },
    }
    for i in range(2)
]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    """A fake Slack on 127.0.0.1."""
    with FakeSlack() as slack:
        yield slack


def client(fake: FakeSlack) -> WebClient:
    """The real SDK client, retrying nothing."""
    return WebClient(token=fake.bot_token, base_url=fake.base_url, retry_handlers=[])


def test_duplicate_action_ids_in_one_block_are_refused_everywhere_slack_refuses_them(
    fake: FakeSlack,
) -> None:
    """Posting, updating, ephemerals and every view call refuse two buttons with one action_id."""
    web = client(fake)
    ts = web.chat_postMessage(channel="C1", text="ok")["ts"]
    view = {"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": TWIN_BUTTONS}
    calls: dict[str, Callable[[], SlackResponse]] = {
        "chat.postMessage": lambda: web.chat_postMessage(
            channel="C1", text="x", blocks=TWIN_BUTTONS
        ),
        "chat.update": lambda: web.chat_update(channel="C1", ts=ts, text="x", blocks=TWIN_BUTTONS),
        "chat.postEphemeral": lambda: web.chat_postEphemeral(
            channel="C1", user="U1", text="x", blocks=TWIN_BUTTONS
        ),
        "views.open": lambda: web.views_open(trigger_id="t1", view=view),
        "views.update": lambda: web.views_update(view_id="V1", view=view),
        "views.publish": lambda: web.views_publish(
            user_id="U1", view={"type": "home", "blocks": TWIN_BUTTONS}
        ),
    }
    for method, call in calls.items():
        with pytest.raises(SlackApiError) as refused:
            call()
        error = refused.value.response["error"]
        assert error in ("invalid_blocks", "invalid_arguments"), method
        assert "duplicate action_id 'same'" in json.dumps(refused.value.response.data), method

    assert [m["text"] for m in fake.messages["C1"]] == ["ok"]
    assert (fake.ephemerals, fake.views_opened, fake.views_updated) == ([], [], [])
    assert fake.views_published == {}


def test_a_response_url_with_duplicate_action_ids_is_refused_and_shows_nothing(
    fake: FakeSlack,
) -> None:
    """A respond() whose blocks Slack would refuse gets 400 and nothing is shown."""
    # What Bolt's respond() uses.
    answer = WebhookClient(fake.response_url()).send(text="x", blocks=TWIN_BUTTONS)

    assert answer.status_code == 400
    assert fake.responses == []


def test_one_action_id_in_different_blocks_is_accepted(fake: FakeSlack) -> None:
    """A Show button on every row of a list is fine: uniqueness is per block, as in Slack."""
    client(fake).chat_postMessage(channel="C1", text="list", blocks=SPREAD_BUTTONS)

    assert len(fake.messages["C1"]) == 1


def test_duplicate_block_ids_are_refused(fake: FakeSlack) -> None:
    """Two blocks with one block_id in a message are refused, as Slack does."""
    twins = [{"type": "section", "block_id": "b", "text": {"type": "mrkdwn", "text": "x"}}] * 2

    with pytest.raises(SlackApiError):
        client(fake).chat_postMessage(channel="C1", text="x", blocks=twins)
