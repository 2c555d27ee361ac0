"""The compliance calendar in Slack: Done, Snooze and Reassign on task reminders, and their
modals. Done checks the evidence the task requires before it closes the modal; an uploaded
file is fetched from Slack and kept (with its SHA-256) after the acknowledgement."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import structlog
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.reminders import evidence_store
from bot.slack.app import BotServices
from bot.slack.ids import (
    DATE_BLOCK,
    DATE_INPUT,
    FILE_BLOCK,
    FILE_INPUT,
    LINK_BLOCK,
    LINK_INPUT,
    NOTE_BLOCK,
    NOTE_INPUT,
    USER_BLOCK,
    USER_INPUT,
    ActionId,
    SlackInputError,
    TaskRef,
    ViewId,
)
from bot.slack.listeners.common import user_of
from bot.slack.task_blocks import (
    TaskView,
    done_modal,
    reassign_modal,
    task_blocks,
    task_snooze_modal,
    task_text,
)
from ledger import outbox
from ledger import tasks as occurrences
from ledger.db import transaction
from ledger.models import OccurrenceStatus, SlackMessage
from ledger.services import LedgerError
from ledger.tasks import EvidenceFile

log = structlog.get_logger(__name__)

MAX_EVIDENCE_BYTES = 50 * 1024 * 1024


def _state(view: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    values = ((view.get("state") or {}).get("values") or {}).get(block) or {}
    return dict(values.get(action) or {})


def _occurrence_id(body: dict[str, Any]) -> int:
    action = (body.get("actions") or [{}])[0]
    try:
        value = int(str(action.get("value")))
    except ValueError:
        raise SlackInputError(f"button value {action.get('value')!r} is not a task") from None
    if value <= 0:
        raise SlackInputError(f"button value {value!r} is not a task")
    return value


def register(app: App, services: BotServices) -> None:
    """Buttons and modals of task reminders."""

    def view_of(occurrence_id: int) -> TaskView:
        book = services.book
        if book is None:
            raise LedgerError("the compliance calendar is off (calendar.enabled)")
        with services.sessions() as session:
            occurrence = occurrences.get_occurrence(session=session, occurrence_id=occurrence_id)
            view = book.view(occurrence, services.clock())
        if view is None:
            raise LedgerError(f"task {occurrence.task_id!r} is no longer in the catalog")
        return view

    def ref_of(body: dict[str, Any], occurrence_id: int) -> TaskRef:
        container = body.get("container") or {}
        if container.get("is_ephemeral"):
            return TaskRef(occurrence_id)
        return TaskRef(occurrence_id, container.get("channel_id"), container.get("message_ts"))

    def open_modal(
        ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, build: Any
    ) -> None:
        ack()
        try:
            occurrence_id = _occurrence_id(body)
            view = view_of(occurrence_id)
        except (SlackInputError, LedgerError) as exc:
            respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
            return
        if view.status == OccurrenceStatus.done:
            respond(
                text=f":white_check_mark: {view.title} due {view.due_on} is already done "
                f"(by {view.completed_by}).",
                response_type="ephemeral",
                replace_original=False,
            )
            return
        # trigger_id lives 3 seconds: the modal opens before anything slow happens.
        client.views_open(
            trigger_id=body["trigger_id"], view=build(ref_of(body, occurrence_id), view)
        )

    @app.action(str(ActionId.task_done))
    def done(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        open_modal(ack, body, client, respond, done_modal)

    @app.action(str(ActionId.task_snooze))
    def snooze(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        max_days = services.settings.calendar.max_snooze_days
        default = services.clock().date() + timedelta(days=min(3, max_days))
        open_modal(
            ack,
            body,
            client,
            respond,
            lambda ref, view: task_snooze_modal(ref, view, default, max_days),
        )

    @app.action(str(ActionId.task_reassign))
    def reassign(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        open_modal(ack, body, client, respond, reassign_modal)

    def load_ref(ack: Ack, view: dict[str, Any], block: str) -> TaskRef | None:
        try:
            return TaskRef.load(view.get("private_metadata"))
        except SlackInputError as exc:
            log.warning("slack.bad_modal", error=str(exc))
            ack(response_action="errors", errors={block: str(exc)})
            return None

    def refresh(occurrence_id: int, client: WebClient) -> None:
        """Show the occurrence's new state on every reminder posted about it."""
        try:
            view = view_of(occurrence_id)
        except LedgerError:
            return
        with services.sessions() as session:
            messages = session.scalars(
                select(SlackMessage).where(SlackMessage.occurrence_id == occurrence_id)
            ).all()
            posted = [(m.channel, m.ts) for m in messages]
        for channel, ts in posted:
            try:
                client.chat_update(
                    channel=channel, ts=ts, text=task_text(view), blocks=task_blocks(view)
                )
            except SlackApiError as exc:
                log.warning("slack.task_update_failed", channel=channel, ts=ts, error=str(exc))

    @app.view(str(ViewId.task_done))
    def done_submitted(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient
    ) -> None:
        ref = load_ref(ack, view, NOTE_BLOCK)
        if ref is None:
            return
        note = (_state(view, NOTE_BLOCK, NOTE_INPUT).get("value") or "").strip() or None
        link = (_state(view, LINK_BLOCK, LINK_INPUT).get("value") or "").strip() or None
        files = _state(view, FILE_BLOCK, FILE_INPUT).get("files") or []
        try:
            shown = view_of(ref.occurrence_id)
        except LedgerError as exc:
            ack(response_action="errors", errors={NOTE_BLOCK: str(exc)})
            return
        errors = {}
        if shown.evidence == "note" and note is None:
            errors[NOTE_BLOCK] = "This task needs a note saying what was done."
        if shown.evidence == "link" and link is None:
            errors[LINK_BLOCK] = "This task needs a link to the evidence."
        if shown.evidence == "file" and not files:
            errors[FILE_BLOCK] = "This task needs a file as evidence."
        if link is not None and not link.startswith(("https://", "http://")):
            errors[LINK_BLOCK] = "The link must start with https:// or http://."
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        user = user_of(body)
        # After the ack: fetching a file from Slack may take longer than Slack waits.
        try:
            kept = fetch_evidence(files[0]) if files else None
            book = services.book
            assert book is not None
            task = book.tasks.tasks[shown.task_id]
            with transaction(services.sessions) as session:
                occurrences.complete(
                    session=session,
                    occurrence_id=ref.occurrence_id,
                    task=task,
                    user=user,
                    now=services.clock(),
                    note=note,
                    link=link,
                    file=kept,
                )
        except (LedgerError, EvidenceError) as exc:
            tell(client, user, ref, f":warning: {shown.title} is not marked done: {exc}")
            return
        refresh(ref.occurrence_id, client)

    def fetch_evidence(file: dict[str, Any]) -> EvidenceFile:
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        name = str(file.get("name") or file.get("id") or "evidence")
        if not url:
            raise EvidenceError(f"Slack gave no download URL for {name}")
        token = services.settings.slack.bot_token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        try:
            with httpx.Client(
                timeout=services.settings.slack.timeout, follow_redirects=True
            ) as http:
                response = http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise EvidenceError(f"could not fetch {name} from Slack: {exc}") from exc
        kind = response.headers.get("content-type", "")
        if response.status_code != 200 or kind.startswith("text/html"):
            raise EvidenceError(
                f"could not fetch {name} from Slack (HTTP {response.status_code}); "
                "the app needs the files:read scope"
            )
        if len(response.content) > MAX_EVIDENCE_BYTES:
            raise EvidenceError(f"{name} is over {MAX_EVIDENCE_BYTES // (1024 * 1024)} MB")
        try:
            return evidence_store(services.settings)(name, response.content)
        except Exception as exc:
            raise EvidenceError(f"could not keep {name}: {type(exc).__name__}: {exc}") from exc

    def tell(client: WebClient, user: str, ref: TaskRef, text: str) -> None:
        try:
            if ref.channel:
                client.chat_postEphemeral(channel=ref.channel, user=user, text=text)
            else:
                channel = client.conversations_open(users=user)["channel"]["id"]
                client.chat_postMessage(channel=channel, text=text)
        except SlackApiError as exc:
            log.warning("slack.task_notice_failed", user=user, error=str(exc))

    @app.view(str(ViewId.task_snooze))
    def snooze_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        ref = load_ref(ack, view, DATE_BLOCK)
        if ref is None or services.book is None:
            return
        raw = _state(view, DATE_BLOCK, DATE_INPUT).get("selected_date")
        try:
            day = date.fromisoformat(str(raw))
        except ValueError:
            ack(response_action="errors", errors={DATE_BLOCK: "Pick a date."})
            return
        until = services.book.calendar_clock.due_at(day)
        try:
            with transaction(services.sessions) as session:
                occurrences.snooze(
                    session=session,
                    occurrence_id=ref.occurrence_id,
                    user=user_of(body),
                    until=until,
                    now=services.clock(),
                    max_days=services.settings.calendar.max_snooze_days,
                )
        except LedgerError as exc:
            ack(response_action="errors", errors={DATE_BLOCK: str(exc)})
            return
        ack()

    @app.view(str(ViewId.task_reassign))
    def reassign_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        ref = load_ref(ack, view, USER_BLOCK)
        if ref is None:
            return
        to = str(_state(view, USER_BLOCK, USER_INPUT).get("selected_user") or "")
        if not to:
            ack(response_action="errors", errors={USER_BLOCK: "Pick someone."})
            return
        now = services.clock()
        try:
            with transaction(services.sessions) as session:
                occurrence = occurrences.reassign(
                    session=session,
                    occurrence_id=ref.occurrence_id,
                    user=user_of(body),
                    to=to,
                    now=now,
                )
                # The new owner hears of it now, through the Slack worker (retried, once).
                outbox.enqueue(
                    session=session,
                    sink="slack",
                    kind="task_remind",
                    key=f"calendar:remind:{occurrence.id}:reassigned:{to}",
                    payload={"occurrence_id": occurrence.id, "to": to, "tag": "reassigned"},
                    now=now,
                )
        except LedgerError as exc:
            ack(response_action="errors", errors={USER_BLOCK: str(exc)})
            return
        ack()
        services.wake()


class EvidenceError(Exception):
    """An evidence file could not be fetched or kept."""
