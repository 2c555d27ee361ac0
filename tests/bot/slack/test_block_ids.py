"""Action and block ids Slack accepts: paging works in real Slack, not just in a builder test."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bot.slack import blocks as kit
from bot.slack.ids import ActionId, FindingsQuery
from tests.bot.slack.conftest import Bot
from tests.bot.slack.test_app import block_text
from tests.fakes.slack import block_errors
from tests.ledger.helpers import obs
from tests.ledger.helpers import scan as ledger_scan


def nav_buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The paging buttons of an answer, by their label."""
    nav = blocks[-1]
    assert nav["type"] == "actions", blocks
    return {b["text"]["text"]: b for b in nav["elements"]}


def test_page_two_has_distinct_previous_and_next_and_next_goes_to_page_three(bot: Bot) -> None:
    """Page 2's Previous and Next both work; Next shows page 3; old page buttons still page."""
    ledger_scan(bot.sessions, bot.clock, [obs(f"vol-{i:02d}") for i in range(25)])
    first = bot.command("findings high")
    assert block_errors(first["blocks"]) == []
    go = nav_buttons(first["blocks"])["Next"]

    bot.click(go["action_id"], go["value"], ephemeral=True)
    bot.executor.drain()
    page2 = bot.slack.responses[-1]  # the fake refuses blocks Slack would refuse
    assert "page 2 of 3" in block_text(page2["blocks"])
    nav = nav_buttons(page2["blocks"])
    assert nav["Previous"]["action_id"] != nav["Next"]["action_id"]

    bot.click(nav["Next"]["action_id"], nav["Next"]["value"], ephemeral=True)
    bot.executor.drain()
    page3 = bot.slack.responses[-1]
    assert page3["replace_original"] is True
    assert "page 3 of 3" in block_text(page3["blocks"])
    assert list(nav_buttons(page3["blocks"])) == ["Previous"]

    # Summaries already in Slack carry the one page button id of before: it still pages.
    bot.click(str(ActionId.page), FindingsQuery(severities=("high",), page=2).dump())
    bot.executor.drain()
    assert "page 2 of 3" in block_text(bot.slack.responses[-1]["blocks"])


@given(
    total=st.integers(min_value=0, max_value=500),
    page_size=st.integers(min_value=1, max_value=20),
    page=st.integers(min_value=1, max_value=40),
)
def test_every_findings_page_is_one_slack_accepts(total: int, page_size: int, page: int) -> None:
    """Whatever the page and the count, the answer has no id Slack would refuse as a duplicate."""
    shown = min(page_size, max(0, total - (page - 1) * page_size))
    items = [
        kit.ListedFinding(i, f"finding {i}", "high", "open", f"vol-{i}", "1", "us-east-1", None)
        for i in range(shown)
    ]
    found = kit.FindingsPage(
        query=FindingsQuery(page=page), items=items, total=total, page_size=page_size
    )

    assert block_errors(kit.findings_page_blocks(found)) == []
