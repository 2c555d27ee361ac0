"""`/compliance scan` while another scan runs, in this process or any other: told, not failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.scanning import ScanOutcome
from ledger.scanlock import HeldScan, Holder, ScanAlreadyRunningError, begin_scan
from tests.bot.slack.conftest import Bot


@pytest.fixture
def running_scan(bot: Bot) -> Iterator[HeldScan]:
    """A scheduled scan holding the scan lock (as `serve`'s scheduler or a CLI would)."""
    held = begin_scan(sessions=bot.sessions, clock=bot.clock, trigger="schedule", scope={})
    yield held
    held.release()


@pytest.mark.usefixtures("running_scan")
def test_scan_while_another_runs_is_answered_at_once_and_starts_nothing(bot: Bot) -> None:
    """The asker sees, only to them, which scan is running since when; no scan is started."""
    answer = bot.command("scan")
    bot.executor.drain()

    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == (
        "A scan is already running (started by schedule at 2026-11-01 09:00:00 UTC, scan #1); "
        "its summary will be posted when it finishes."
    )
    assert bot.aws.scans == []
    assert bot.slack.responses == []


def test_scan_that_loses_the_race_for_the_lock_is_told_not_failed(bot: Bot) -> None:
    """A scan started elsewhere between the check and the start: the asker is told it is
    running (its trigger shown as text, never as a mention), not that the scan failed."""

    def refused(account: str | None, trigger: str) -> ScanOutcome:
        bot.aws.scans.append((account, trigger))
        raise ScanAlreadyRunningError(Holder(7, "slack:<!channel>", bot.clock(), "pid 1 on x"))

    bot.services.scan = refused

    answer = bot.command("scan")
    bot.executor.drain()

    assert "Scanning every configured account" in answer["text"]
    reply = bot.slack.responses[-1]
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == (
        "A scan is already running (started by slack:&lt;!channel&gt; at 2026-11-01 09:00:00 "
        "UTC, scan #7); its summary will be posted when it finishes."
    )
