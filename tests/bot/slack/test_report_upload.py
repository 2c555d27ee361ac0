"""`/compliance report [framework] [format]`: the report uploaded to the channel as a file."""

from __future__ import annotations

import json

import pytest

from bot.slack import commands as cmd
from bot.slack.ids import SlackInputError
from tests.bot.slack.conftest import CHANNEL, Bot
from tests.ledger.helpers import obs
from tests.ledger.helpers import scan as ledger_scan

FRAMEWORKS = {"hipaa", "cis_aws"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("report hipaa", cmd.Report("hipaa", "md")),
        ("report HIPAA html", cmd.Report("hipaa", "html")),
        ("report cis csv", cmd.Report("cis_aws", "csv")),
        ("report hipaa json", cmd.Report("hipaa", "json")),
    ],
)
def test_a_format_may_follow_the_framework(text: str, expected: cmd.Report) -> None:
    """`report hipaa html` asks for the HTML report; without a format it is Markdown."""
    assert cmd.parse(text, FRAMEWORKS) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("report hipaa docx", "'docx' is not a format; valid: md, html, csv, json, pdf"),
        ("report hipaa html x", "`report` takes one framework: cis_aws, hipaa"),
        ("report nope html", "`report` takes one framework: cis_aws, hipaa"),
    ],
)
def test_a_bad_format_names_the_valid_ones(text: str, message: str) -> None:
    """An unknown format or an extra word gets a message naming what would be valid."""
    with pytest.raises(SlackInputError) as caught:
        cmd.parse(text, FRAMEWORKS)
    assert message in str(caught.value)


def test_the_html_report_is_uploaded_as_an_html_file(bot: Bot) -> None:
    """`/compliance report hipaa html` uploads one self-contained .html file naming the failing
    control and its resource; `json` uploads the JSON document."""
    ledger_scan(bot.sessions, bot.clock, [obs("vol-1")])

    bot.command("report hipaa html")
    bot.executor.drain()
    upload = bot.slack.files[-1]
    assert upload["channel_id"] == CHANNEL
    assert upload["filename"].startswith("hipaa-report-")
    assert upload["filename"].endswith(".html")
    page = upload["content"].decode()
    assert page.startswith("<!DOCTYPE html>")
    assert 'data-control="164.312(a)(2)(iv)" data-status="failing"' in page
    assert "vol-1" in page

    bot.command("report hipaa json")
    bot.executor.drain()
    doc = json.loads(bot.slack.files[-1]["content"].decode())
    assert doc["framework"]["id"] == "hipaa"
    assert doc["summary"]["open_findings"] == 1
