"""The compliance calendar in Slack: Done, Snooze and Reassign on task reminders, and their
modals. Only the task's owner, its assignee, a member of an owning group or an approver may use
them; anyone else is told so and the attempt is audited. Done checks the evidence the task
requires before it closes the modal; an uploaded file is fetched from Slack by its ID and kept
(with its SHA-256) after the acknowledgement."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import structlog
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.reminders import evidence_store
from bot.slack.app import BotServices
from bot.slack.blocks import clip, esc
from bot.slack.files import FILE_ID, EvidenceError, SlackFiles, too_large
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
    parse_id,
)
from bot.slack.listeners.common import user_of
from bot.slack.task_blocks import (
    TaskView,
    done_modal,
    mention,
    reassign_modal,
    task_snooze_modal,
)
from ledger import tasks as occurrences
from ledger.db import transaction
from ledger.models import OccurrenceStatus
from ledger.services import LedgerError
from ledger.tasks import EvidenceFile

log = structlog.get_logger(__name__)


# The modal's block of each field the ledger's evidence rules name.
_EVIDENCE_BLOCKS = {"note": NOTE_BLOCK, "link": LINK_BLOCK, "file": FILE_BLOCK}


def _sentence(text: str) -> str:
    """A ledger message as a modal shows it: capitalized, with a full stop."""
    return f"{text[:1].upper()}{text[1:]}."


def _state(view: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    values = ((view.get("state") or {}).get("values") or {}).get(block) or {}
    return dict(values.get(action) or {})


def _occurrence_id(body: dict[str, Any]) -> int:
    action = (body.get("actions") or [{}])[0]
    return parse_id(action.get("value"), "task occurrence")


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

    def refused(user: str, view: TaskView, verb: str) -> str | None:
        """None when `user` may `verb` the occurrence; else the attempt is audited and the
        answer says who may."""
        if services.may_act_for(user, view.holders):
            return None
        who = " or ".join(mention(h) for h in view.holders) or "its owner"
        services.refuse(
            user=user,
            action=f"task.{verb}",
            object_type="task_occurrence",
            object_id=str(view.occurrence_id),
            why=f"not {', '.join(view.holders) or 'the owner'}, a member, or an approver",
        )
        return (
            f"Only {who} or an approver ({services.approvers_text()}) may {verb} this task "
            f"(occurrence #{view.occurrence_id})."
        )

    def open_modal(
        ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, build: Any, verb: str
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
                f"(by {mention(view.completed_by or '')}).",
                response_type="ephemeral",
                replace_original=False,
            )
            return
        refusal = refused(user_of(body), view, verb)
        if refusal is not None:
            respond(text=f":no_entry: {refusal}", response_type="ephemeral", replace_original=False)
            return
        # trigger_id lives 3 seconds: the modal opens before anything slow happens.
        client.views_open(
            trigger_id=body["trigger_id"], view=build(ref_of(body, occurrence_id), view)
        )

    @app.action(str(ActionId.task_done))
    def done(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        open_modal(ack, body, client, respond, done_modal, "complete")

    @app.action(str(ActionId.task_snooze))
    def snooze(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        max_days = services.settings.calendar.max_snooze_days
        # The calendar's today, as the ledger counts the limit (not UTC's).
        today = services.clock().date()
        if services.book is not None:
            today = services.book.calendar_clock.today(services.clock())
        default = today + timedelta(days=min(3, max_days))
        open_modal(
            ack,
            body,
            client,
            respond,
            lambda ref, view: task_snooze_modal(ref, view, default, max_days),
            "snooze",
        )

    @app.action(str(ActionId.task_reassign))
    def reassign(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        open_modal(ack, body, client, respond, reassign_modal, "reassign")

    def authorized(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], block: str, verb: str
    ) -> tuple[TaskRef, TaskView] | None:
        """The submitted modal's occurrence, when its submitter may `verb` it; else the modal
        shows why on `block` (the submission is checked again: a modal can be forged)."""
        try:
            ref = TaskRef.load(view.get("private_metadata"))
            shown = view_of(ref.occurrence_id)
        except (SlackInputError, LedgerError) as exc:
            log.warning("slack.bad_modal", error=str(exc))
            ack(response_action="errors", errors={block: str(exc)})
            return None
        refusal = refused(user_of(body), shown, verb)
        if refusal is not None:
            ack(response_action="errors", errors={block: refusal})
            return None
        return ref, shown

    def refresh(occurrence_id: int) -> None:
        """Show the occurrence's new state on every reminder posted about it now; the delivery
        worker redraws any it could not (the change bumped the occurrence's version)."""
        services.delivery.refresh_occurrence(occurrence_id)

    max_bytes = services.settings.calendar.max_evidence_mb * 1024 * 1024

    def evidence_file(files: Any) -> tuple[str | None, str | None]:
        """(the uploaded file's ID, or None; what is wrong with the upload, or None). Only the
        ID is taken: the URLs in a submission are the sender's to choose."""
        if not files:
            return None, None
        first = files[0] if isinstance(files, list) else None
        if not isinstance(first, dict) or not FILE_ID.fullmatch(str(first.get("id") or "")):
            return None, "That is not a file uploaded to Slack: upload it again."
        file_id, size = str(first["id"]), first.get("size")
        if isinstance(size, int) and size > max_bytes:
            # Said by the sender, so only ever a reason to refuse; files.info is asked anyway.
            return None, too_large(clip(str(first.get("name") or file_id), 80), size, max_bytes)
        return file_id, None

    @app.view(str(ViewId.task_done))
    def done_submitted(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient
    ) -> None:
        found = authorized(ack, body, view, NOTE_BLOCK, "complete")
        if found is None:
            return
        ref, shown = found
        note = (_state(view, NOTE_BLOCK, NOTE_INPUT).get("value") or "").strip() or None
        link = (_state(view, LINK_BLOCK, LINK_INPUT).get("value") or "").strip() or None
        file_id, file_error = evidence_file(_state(view, FILE_BLOCK, FILE_INPUT).get("files"))
        book = services.book
        assert book is not None  # view_of refused the submission otherwise
        task = book.tasks.tasks[shown.task_id]
        # The ledger's evidence rules, shown beside their fields before the modal closes.
        problems = occurrences.evidence_problems(
            task.evidence, note=note, link=link, has_file=file_id is not None
        )
        errors = {_EVIDENCE_BLOCKS[at_fault]: _sentence(p) for at_fault, p in problems.items()}
        if file_error is not None:
            errors[FILE_BLOCK] = file_error
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        user = user_of(body)
        # After the ack: fetching a file from Slack may take longer than Slack waits.
        try:
            kept = fetch_evidence(client, file_id) if file_id else None
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
            text = f":warning: {esc(shown.title)} is not marked done: {esc(str(exc))}"
            tell(client, user, ref, text)
            return
        refresh(ref.occurrence_id)

    def fetch_evidence(client: WebClient, file_id: str) -> EvidenceFile:
        """The file, looked up by ID and downloaded from Slack's file host only, kept."""
        slack = services.settings.slack
        files = SlackFiles(
            client=client,
            files_url=slack.files_url,
            token=slack.bot_token.get_secret_value() if slack.bot_token else None,
            timeout=slack.timeout,
            max_bytes=max_bytes,
        )
        return files.fetch(file_id, evidence_store(services.settings))

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
        found = authorized(ack, body, view, DATE_BLOCK, "snooze")
        if found is None or services.book is None:
            return
        ref, _ = found
        raw = _state(view, DATE_BLOCK, DATE_INPUT).get("selected_date")
        try:
            day = date.fromisoformat(str(raw))
        except ValueError:
            ack(response_action="errors", errors={DATE_BLOCK: "Pick a date."})
            return
        try:
            with transaction(services.sessions) as session:
                occurrences.snooze(
                    session=session,
                    occurrence_id=ref.occurrence_id,
                    user=user_of(body),
                    until=day,
                    clock=services.book.calendar_clock,
                    now=services.clock(),
                    max_days=services.settings.calendar.max_snooze_days,
                )
        except LedgerError as exc:
            ack(response_action="errors", errors={DATE_BLOCK: str(exc)})
            return
        ack()
        refresh(ref.occurrence_id)

    @app.view(str(ViewId.task_reassign))
    def reassign_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        found = authorized(ack, body, view, USER_BLOCK, "reassign")
        if found is None:
            return
        ref, _ = found
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
                occurrences.record_notices(
                    session=session,
                    sink="slack",
                    now=now,
                    reminders=[occurrences.Reminder(occurrence.id, to, "reassigned")],
                )
        except LedgerError as exc:
            ack(response_action="errors", errors={USER_BLOCK: str(exc)})
            return
        ack()
        refresh(ref.occurrence_id)
        services.wake()
