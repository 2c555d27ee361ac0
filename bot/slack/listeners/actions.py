"""Button clicks on finding messages, pages and lists."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.slack import blocks as kit
from bot.slack.app import BotServices
from bot.slack.ids import ActionId, FindingsQuery, ModalRef, SlackInputError
from bot.slack.listeners.common import (
    after_change,
    finding_ref,
    refused_acceptance,
    render_finding,
    user_of,
)
from bot.slack.render import findings_page
from ledger import services as ledger
from ledger.db import transaction
from ledger.models import ACTIVE
from ledger.services import LedgerError


def _ref(body: dict[str, Any], finding_id: int) -> ModalRef:
    container = body.get("container") or {}
    if container.get("is_ephemeral"):
        return ModalRef(finding_id)
    return ModalRef(finding_id, container.get("channel_id"), container.get("message_ts"))


def register(app: App, services: BotServices) -> None:
    """Claim, Resolve, Accept risk, Snooze, Show, and page buttons."""

    @app.action(str(ActionId.claim), middleware=[finding_ref])
    def claim(ack: Ack, body: dict[str, Any], context: dict[str, Any], respond: Respond) -> None:
        ack()
        finding_id = context["finding_id"]
        try:
            with transaction(services.sessions) as session:
                ledger.claim(
                    session=session, finding_id=finding_id, user=user_of(body), now=services.clock()
                )
        except LedgerError as exc:
            respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
        after_change(services, finding_id, body, respond)

    def _open_modal(
        body: dict[str, Any],
        client: WebClient,
        respond: Respond,
        finding_id: int,
        build: Callable[[ModalRef, str], dict[str, Any]],
        verb: str,
    ) -> None:
        with services.sessions() as session:
            try:
                finding = ledger.get_finding(session=session, finding_id=finding_id)
            except LedgerError as exc:
                respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
                return
            if finding.status not in ACTIVE:
                respond(
                    text=f":information_source: Finding #{finding_id} is {finding.status}: "
                    f"it cannot be {verb}.",
                    response_type="ephemeral",
                    replace_original=False,
                )
                return
            title = finding.title
        # trigger_id lives 3 seconds: the modal opens before anything slow happens.
        client.views_open(trigger_id=body["trigger_id"], view=build(_ref(body, finding_id), title))

    @app.action(str(ActionId.resolve), middleware=[finding_ref])
    def resolve(
        ack: Ack,
        body: dict[str, Any],
        context: dict[str, Any],
        client: WebClient,
        respond: Respond,
    ) -> None:
        ack()
        _open_modal(body, client, respond, context["finding_id"], kit.resolve_modal, "resolved")

    @app.action(str(ActionId.accept), middleware=[finding_ref])
    def accept(
        ack: Ack,
        body: dict[str, Any],
        context: dict[str, Any],
        client: WebClient,
        respond: Respond,
    ) -> None:
        ack()
        refused = refused_acceptance(services, user_of(body), context["finding_id"])
        if refused is not None:
            respond(
                text=f":no_entry: {refused}.", response_type="ephemeral", replace_original=False
            )
            return
        default = (services.clock() + timedelta(days=90)).date()
        _open_modal(
            body,
            client,
            respond,
            context["finding_id"],
            lambda ref, title: kit.accept_modal(ref, title, default),
            "risk-accepted",
        )

    @app.action(str(ActionId.snooze), middleware=[finding_ref])
    def snooze(
        ack: Ack,
        body: dict[str, Any],
        context: dict[str, Any],
        client: WebClient,
        respond: Respond,
    ) -> None:
        ack()
        default = (services.clock() + timedelta(days=7)).date()
        max_days = services.slack.max_snooze_days
        _open_modal(
            body,
            client,
            respond,
            context["finding_id"],
            lambda ref, title: kit.snooze_modal(ref, title, default, max_days),
            "snoozed",
        )

    @app.action(str(ActionId.show), middleware=[finding_ref])
    def show(ack: Ack, context: dict[str, Any], respond: Respond) -> None:
        ack()
        try:
            text, found = render_finding(services, context["finding_id"])
        except LedgerError as exc:
            respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
            return
        respond(text=text, blocks=found, response_type="ephemeral", replace_original=False)

    def page(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        action = (body.get("actions") or [{}])[0]
        try:
            query = FindingsQuery.load(action.get("value"))
            if query.framework and query.framework not in services.catalog.frameworks:
                raise SlackInputError(f"unknown framework {query.framework!r}")
        except SlackInputError as exc:
            respond(text=f":warning: {exc}", response_type="ephemeral", replace_original=False)
            return
        with services.sessions() as session:
            found = findings_page(
                session=session,
                catalog=services.catalog,
                query=query,
                user=user_of(body),
                page_size=services.slack.page_size,
                cache=services.cache,
            )
        in_place = bool((body.get("container") or {}).get("is_ephemeral"))
        respond(
            text=f"{found.total} finding(s)",
            blocks=kit.findings_page_blocks(found),
            response_type="ephemeral",
            replace_original=in_place,
        )

    # Every page button carries its page in its value, so one handler serves them all.
    for action in (ActionId.page, ActionId.page_previous, ActionId.page_next):
        app.action(str(action))(page)
