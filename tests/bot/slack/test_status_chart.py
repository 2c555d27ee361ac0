"""`/compliance status` with the 30-day posture trend as a PNG uploaded to the channel, and
`/compliance report <framework> pdf`: both through the signed request and the fake Slack."""

from __future__ import annotations

import struct
import sys
import zlib
from dataclasses import replace
from typing import Any

import pytest

from bot.reports.pdf import INSTALL_HINT
from bot.trends import CHART_DPI, CHART_SIZE
from ledger import snapshots
from ledger.db import transaction
from rules.catalog import load_catalog
from tests.bot.slack.conftest import CHANNEL, Bot
from tests.bot.slack.test_app import block_text
from tests.ledger.helpers import obs
from tests.ledger.helpers import scan as ledger_scan
from tests.logs import captured_logs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CATALOG = load_catalog()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature and its CRC."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (kind, length) == (b"IHDR", 13)
    body = data[16 : 16 + length]
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert zlib.crc32(kind + body) == crc
    width, height = struct.unpack(">II", body[:8])
    assert data.endswith(b"IEND\xaeB`\x82")
    return width, height


def snapshot_days(bot: Bot, count: int) -> None:
    """`count` days, each with a scan (one more failing volume a day) and the day's snapshot."""
    for day in range(count):
        ledger_scan(bot.sessions, bot.clock, [obs(f"vol-{i}") for i in range(day + 1)])
        with transaction(bot.sessions) as session:
            snapshots.take_snapshot(
                session=session,
                catalog=CATALOG,
                day=snapshots.local_day(bot.clock(), "UTC"),
                now=bot.clock(),
            )
        if day < count - 1:
            bot.clock.advance(days=1)


def charts(bot: Bot) -> list[dict[str, Any]]:
    """The PNG files uploaded so far."""
    return [f for f in bot.slack.files if str(f["filename"]).endswith(".png")]


def test_status_posts_the_text_then_the_trend_chart_as_a_png(bot: Bot) -> None:
    """With three days of snapshots: the status answers at once, and a PNG chart of the
    posture (800 x 500, a valid PNG) is uploaded to the channel, naming who asked."""
    snapshot_days(bot, 3)

    answer = bot.command("status")
    bot.executor.drain()

    assert answer["response_type"] == "ephemeral"
    shown = block_text(answer["blocks"])
    assert "3 high" in shown
    assert "Trend available" not in shown
    (chart,) = charts(bot)
    assert chart["channel_id"] == CHANNEL
    assert chart["filename"] == f"posture-trend-{bot.clock():%Y-%m-%d}.png"
    assert "<@UALICE>" in chart["initial_comment"]
    width, height = png_size(chart["content"])
    assert (width, height) == (CHART_SIZE[0] * CHART_DPI, CHART_SIZE[1] * CHART_DPI)
    assert [c.method for c in bot.slack.calls if c.method.startswith("files.")] == [
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]


@pytest.mark.parametrize("days", [0, 1])
def test_with_fewer_than_two_days_only_the_text_says_when_the_trend_comes(
    bot: Bot, days: int
) -> None:
    """No snapshot, or one day of them: no image, and the status says the trend comes after
    two daily snapshots."""
    if days:
        snapshot_days(bot, days)
    else:
        ledger_scan(bot.sessions, bot.clock, [obs("vol-1")])

    answer = bot.command("status")
    bot.executor.drain()

    shown = block_text(answer["blocks"])
    assert "Compliance status" in answer["text"]
    assert f"Trend available after 2 daily snapshots ({days} so far)" in shown
    assert bot.slack.files == []
    assert bot.slack.calls_to("files.getUploadURLExternal") == []


@pytest.mark.parametrize("error", ["not_in_channel", "ratelimited"])
def test_a_refused_upload_still_gives_the_text_and_is_logged(bot: Bot, error: str) -> None:
    """Slack refuses the chart's upload: the text status has already arrived, the failure is
    logged with Slack's error, the asker is told, and nothing crashes."""
    snapshot_days(bot, 2)
    bot.slack.fail("files.getUploadURLExternal", error=error)

    with captured_logs("info", "json") as logs:
        answer = bot.command("status")
        bot.executor.drain()

    assert "Compliance status" in answer["text"]
    assert "2 high" in block_text(answer["blocks"])
    assert charts(bot) == []
    failures = [r for r in logs.records() if r.get("event") == "slack.status_chart_failed"]
    assert [(r["stage"], r["error"]) for r in failures] == [("upload", error)]
    (told,) = bot.slack.responses
    assert told["text"].startswith(f":x: The trend chart could not be posted here: {error}.")
    assert ("Invite the bot" in told["text"]) is (error == "not_in_channel")


def test_a_framework_name_with_tex_markup_is_drawn_as_text(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A framework named like broken TeX (`$\\frac{1}{0$ and $x^$`: matplotlib's math text
    would fail on it) in a hostile catalog file: the chart is still drawn and uploaded."""
    hostile = replace(CATALOG.frameworks["hipaa"], name="$\\frac{1}{0$ and $x^$ \\")
    monkeypatch.setitem(bot.services.catalog.frameworks, "hipaa", hostile)
    snapshot_days(bot, 2)

    bot.command("status")
    bot.executor.drain()

    (chart,) = charts(bot)
    assert png_size(chart["content"])[0] > 0


def test_the_pdf_report_is_uploaded_as_a_pdf_file(bot: Bot) -> None:
    """`/compliance report hipaa pdf` uploads a .pdf naming the failing volume."""
    ledger_scan(bot.sessions, bot.clock, [obs("vol-1")])

    bot.command("report hipaa pdf")
    bot.executor.drain()

    (upload,) = bot.slack.files
    assert upload["channel_id"] == CHANNEL
    assert upload["filename"].endswith(".pdf")
    assert upload["content"].startswith(b"%PDF-")


def test_without_the_pdf_extra_the_report_says_how_to_install_it(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """xhtml2pdf missing: the answer is the install line, and nothing is uploaded."""
    monkeypatch.setitem(sys.modules, "xhtml2pdf", None)
    ledger_scan(bot.sessions, bot.clock, [obs("vol-1")])

    answer = bot.command("report hipaa pdf")
    bot.executor.drain()

    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == INSTALL_HINT
    assert "pip install 'compliancebot[pdf]'" in block_text(answer["blocks"])
    assert bot.slack.files == []
