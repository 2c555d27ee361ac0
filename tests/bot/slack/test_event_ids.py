"""Slack event ids are recorded by the ledger under a bounded hash, whatever their length."""

from __future__ import annotations

import json

from sqlalchemy import select

from ledger.inbound import delivery_key
from ledger.models import ProcessedEvent
from tests.bot.slack.conftest import Bot


def home_opened(event_id: str) -> str:
    """An app_home_opened event callback with this id."""
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0001",
            "api_app_id": "A0001",
            "event_id": event_id,
            "event_time": 1,
            "event": {"type": "app_home_opened", "user": "UALICE", "tab": "home"},
        }
    )


def test_two_events_whose_long_ids_differ_only_at_the_end_are_both_handled(bot: Bot) -> None:
    """Two distinct events with 300-character ids sharing their first 200 characters each
    publish the App Home: neither is taken for a retry of the other."""
    first_id, second_id = "Ev" + "A" * 298, "Ev" + "A" * 297 + "B"

    first = bot.post(home_opened(first_id), content_type="application/json")
    second = bot.post(home_opened(second_id), content_type="application/json")
    bot.executor.drain()

    assert first.status_code == second.status_code == 200
    assert len(bot.slack.calls_to("views.publish")) == 2
    with bot.sessions() as session:
        recorded = set(
            session.scalars(select(ProcessedEvent.event_id).where(ProcessedEvent.source == "slack"))
        )
    assert recorded == {
        delivery_key("slack-event", first_id),
        delivery_key("slack-event", second_id),
    }
