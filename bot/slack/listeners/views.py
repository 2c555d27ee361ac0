"""Modal submissions: resolve (with an immediate re-check), accept risk, snooze."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import structlog
from slack_bolt import Ack, App

from bot.slack.app import BotServices
from bot.slack.ids import (
    DATE_BLOCK,
    DATE_INPUT,
    NOTE_BLOCK,
    NOTE_INPUT,
    REASON_BLOCK,
    REASON_INPUT,
    ModalRef,
    SlackInputError,
    ViewId,
)
from bot.slack.listeners.common import refused_acceptance, user_of
from bot.slack.notify import enqueue_reply
from ledger import services as ledger
from ledger.db import transaction
from ledger.services import LedgerError, LimitError
from ledger.verification import recheck_resolution

log = structlog.get_logger(__name__)


def _value(view: dict[str, Any], block: str, action: str) -> Any:
    state = ((view.get("state") or {}).get("values") or {}).get(block) or {}
    element = state.get(action) or {}
    return element.get("value") if "value" in element else element.get("selected_date")


def _date(view: dict[str, Any]) -> date | None:
    raw = _value(view, DATE_BLOCK, DATE_INPUT)
    try:
        return date.fromisoformat(str(raw)) if raw else None
    except ValueError:
        return None


# The modal's block of each field the ledger's acceptance rules name.
_ACCEPT_BLOCKS = {"reason": REASON_BLOCK, "until": DATE_BLOCK}


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


def register(app: App, services: BotServices) -> None:
    """Handlers for the three modals."""

    def _ref(ack: Ack, view: dict[str, Any]) -> ModalRef | None:
        try:
            return ModalRef.load(view.get("private_metadata"))
        except SlackInputError as exc:
            log.warning("slack.bad_modal", error=str(exc))
            ack(response_action="errors", errors={NOTE_BLOCK: str(exc), DATE_BLOCK: str(exc)})
            return None

    @app.view(str(ViewId.resolve))
    def resolve(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        ref = _ref(ack, view)
        if ref is None:
            return
        note = (_value(view, NOTE_BLOCK, NOTE_INPUT) or "").strip() or None
        user = user_of(body)
        try:
            with transaction(services.sessions) as session:
                finding = ledger.resolve(
                    session=session,
                    finding_id=ref.finding_id,
                    user=user,
                    now=services.clock(),
                    note=note,
                    verify=True,
                )
        except LedgerError as exc:
            ack(response_action="errors", errors={NOTE_BLOCK: str(exc)})
            return
        ack()
        services.delivery.refresh_finding(ref.finding_id)
        # After the ack: the re-check calls AWS and may take seconds.
        with transaction(services.sessions) as session:
            finding = ledger.get_finding(session=session, finding_id=ref.finding_id)
            done = recheck_resolution(
                session=session, finding=finding, check=services.recheck, clock=services.clock
            )
            verdict, detail = done or ("unknown", "")
            if verdict == "fail" and finding.verification == "failed":
                enqueue_reply(
                    session=session,
                    key=f"slack:recheck:{ref.finding_id}:{finding.version}",
                    channel=ref.channel or services.slack.channel or "",
                    finding_id=ref.finding_id,
                    text=f"the re-check of #{ref.finding_id} still fails ({detail}); "
                    f"the finding stays {finding.status}.",
                    mention=user,
                    now=services.clock(),
                )
        services.delivery.refresh_finding(ref.finding_id)
        services.wake()

    @app.view(str(ViewId.accept))
    def accept(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        ref = _ref(ack, view)
        if ref is None:
            return
        user = user_of(body)
        refused = refused_acceptance(services, user, ref.finding_id)
        if refused is not None:
            ack(response_action="errors", errors={REASON_BLOCK: refused})
            return
        reason = (_value(view, REASON_BLOCK, REASON_INPUT) or "").strip()
        day = _date(view)
        until = _end_of(day) if day is not None else None
        now = services.clock()
        max_days = services.slack.max_acceptance_days
        # The ledger's rules, every field's problem shown at once beside it.
        problems = ledger.acceptance_problems(
            reason=reason, until=until, now=now, max_days=max_days
        )
        if problems:
            errors = {_ACCEPT_BLOCKS[at_fault]: p for at_fault, p in problems.items()}
            ack(response_action="errors", errors=errors)
            return
        assert until is not None
        try:
            with transaction(services.sessions) as session:
                ledger.accept_risk(
                    session=session,
                    finding_id=ref.finding_id,
                    user=user,
                    reason=reason,
                    until=until,
                    now=now,
                    max_days=max_days,
                )
        except LedgerError as exc:
            block = DATE_BLOCK if exc.field == "until" else REASON_BLOCK
            ack(response_action="errors", errors={block: str(exc)})
            return
        ack()
        services.delivery.refresh_finding(ref.finding_id)

    @app.view(str(ViewId.snooze))
    def snooze(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        ref = _ref(ack, view)
        if ref is None:
            return
        day = _date(view)
        if day is None:
            ack(response_action="errors", errors={DATE_BLOCK: "Pick a date."})
            return
        try:
            with transaction(services.sessions) as session:
                ledger.snooze(
                    session=session,
                    finding_id=ref.finding_id,
                    user=user_of(body),
                    until=_end_of(day),
                    now=services.clock(),
                    max_days=services.slack.max_snooze_days,
                )
        except LimitError as exc:  # the ledger knows the limit, we know which setting it is
            ack(response_action="errors", errors={DATE_BLOCK: f"{exc} (slack.max_snooze_days)"})
            return
        except LedgerError as exc:
            ack(response_action="errors", errors={DATE_BLOCK: str(exc)})
            return
        ack()
        services.delivery.refresh_finding(ref.finding_id)
