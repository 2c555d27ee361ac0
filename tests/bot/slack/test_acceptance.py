"""Risk acceptance limits: at most slack.max_acceptance_days ahead (in the ledger, so Slack and
the CLI share it), and a refused acceptance by a non-approver left in the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.slack.ids import (
    DATE_BLOCK,
    DATE_INPUT,
    REASON_BLOCK,
    REASON_INPUT,
    ActionId,
    ModalRef,
    ViewId,
)
from ledger import services as ledger
from ledger.db import transaction
from ledger.services import LedgerError
from tests.bot.slack.conftest import APPROVER, Bot
from tests.conftest import FakeClock
from tests.ledger.helpers import audit, obs, only_finding, scan

STRANGER = "UALICE"


def accept_values(reason: str, day: str) -> dict[str, Any]:
    """The Accept risk modal's state."""
    return {
        REASON_BLOCK: {REASON_INPUT: {"type": "plain_text_input", "value": reason}},
        DATE_BLOCK: {DATE_INPUT: {"type": "datepicker", "selected_date": day}},
    }


def refused(bot: Bot, finding_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, actor, detail) of the refused attempts on a finding."""
    return [
        (e.action, e.actor, e.detail)
        for e in audit(bot.sessions, object_type="finding", object_id=str(finding_id))
        if e.action.endswith(".refused")
    ]


def test_an_acceptance_past_the_limit_is_refused_on_the_date_field(bot: Bot) -> None:
    """400 days ahead: the date field says the limit and the latest date; 365 days is taken."""
    scan(bot.sessions, bot.clock, [obs("vol-1")])
    finding = only_finding(bot.sessions)
    ref = ModalRef(finding.id).dump()  # the clock is 2026-11-01

    too_long = bot.submit(str(ViewId.accept), ref, accept_values("vendor", "2027-12-06"), APPROVER)
    assert only_finding(bot.sessions).status == "open"
    longest = bot.submit(str(ViewId.accept), ref, accept_values("vendor", "2027-11-01"), APPROVER)
    bot.executor.drain()

    assert too_long.json() == {
        "response_action": "errors",
        "errors": {
            DATE_BLOCK: "a risk acceptance can last at most 365 days: pick 2027-11-01 or "
            "earlier, not 2027-12-06"
        },
    }
    assert longest.status_code == 200
    assert only_finding(bot.sessions).status == "accepted"


def test_a_non_approvers_acceptance_is_refused_and_audited(bot: Bot) -> None:
    """A non-approver's Accept click and a forged submission are both refused, the finding
    stays open, and the audit trail holds both attempts with who tried."""
    scan(bot.sessions, bot.clock, [obs("vol-1")])
    finding = only_finding(bot.sessions)

    bot.click(str(ActionId.accept), str(finding.id), user=STRANGER)
    bot.executor.drain()
    values = accept_values("fine", "2027-01-01")
    forged = bot.submit(str(ViewId.accept), ModalRef(finding.id).dump(), values, STRANGER)

    assert bot.slack.views_opened == []
    assert "Only approvers may accept a risk" in forged.json()["errors"][REASON_BLOCK]
    assert only_finding(bot.sessions).status == "open"
    assert refused(bot, finding.id) == [
        ("finding.accept.refused", STRANGER, {"reason": "not an approver"}),
        ("finding.accept.refused", STRANGER, {"reason": "not an approver"}),
    ]


@pytest.mark.parametrize(("days", "allowed"), [(30, True), (31, False)])
def test_the_ledger_enforces_the_limit_for_every_caller(
    sessions: sessionmaker[Session], clock: FakeClock, days: int, allowed: bool
) -> None:
    """accept_risk itself (the CLI calls it too) refuses an expiry past max_days, naming the
    field at fault."""
    scan(sessions, clock, [obs("vol-1")])
    finding = only_finding(sessions)
    until = datetime.combine(clock().date() + timedelta(days=days), time.max, tzinfo=UTC)

    with transaction(sessions) as session:
        if allowed:
            ledger.accept_risk(
                session=session,
                finding_id=finding.id,
                user="cto",
                reason="r",
                until=until,
                now=clock(),
                max_days=30,
            )
        else:
            with pytest.raises(LedgerError) as caught:
                ledger.accept_risk(
                    session=session,
                    finding_id=finding.id,
                    user="cto",
                    reason="r",
                    until=until,
                    now=clock(),
                    max_days=30,
                )
            assert caught.value.field == "until"
            assert "at most 30 days" in str(caught.value)

    assert only_finding(sessions).status == ("accepted" if allowed else "open")


def test_without_a_limit_given_the_ledger_still_caps_at_365_days(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """A caller that passes no max_days gets the default (365), not an unlimited acceptance."""
    scan(sessions, clock, [obs("vol-1")])
    finding = only_finding(sessions)

    with transaction(sessions) as session, pytest.raises(LedgerError, match="365 days"):
        ledger.accept_risk(
            session=session,
            finding_id=finding.id,
            user="cto",
            reason="r",
            until=clock() + timedelta(days=400),
            now=clock(),
        )
