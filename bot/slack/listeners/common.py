"""What every finding action does after changing the ledger: show the new state everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from slack_bolt import BoltResponse

from bot.slack import blocks as kit
from bot.slack.app import BotServices
from bot.slack.ids import SlackInputError, parse_finding_id
from bot.slack.render import finding_view
from ledger.services import get_finding

log = structlog.get_logger(__name__)


def finding_ref(body: dict[str, Any], context: dict[str, Any], next: Callable[[], Any]) -> Any:
    """Listener middleware: the clicked button's value as `context["finding_id"]`, or an error."""
    try:
        action = (body.get("actions") or [{}])[0]
        context["finding_id"] = parse_finding_id(action.get("value"))
    except SlackInputError as exc:
        respond = context.get("respond")
        if respond is not None:
            # The message quotes the forged value: mrkdwn-escaped like any data.
            respond(
                text=f":warning: {kit.esc(str(exc))}",
                response_type="ephemeral",
                replace_original=False,
            )
        log.warning("slack.bad_button", error=str(exc))
        return BoltResponse(status=200, body="")
    return next()


def render_finding(services: BotServices, finding_id: int) -> tuple[str, list[dict[str, Any]]]:
    """(text, blocks) of a finding as the database has it now."""
    with services.sessions() as session:
        finding = get_finding(session=session, finding_id=finding_id)
        view = finding_view(finding, services.catalog, services.clock())
    return kit.finding_text(view), kit.finding_blocks(view)


def after_change(
    services: BotServices, finding_id: int, body: dict[str, Any], respond: Any | None
) -> None:
    """Re-render every posted message of the finding; an ephemeral copy is replaced in place."""
    services.delivery.refresh_finding(finding_id)
    container = body.get("container") or {}
    if respond is not None and container.get("is_ephemeral"):
        text, blocks = render_finding(services, finding_id)
        respond(text=text, blocks=blocks, replace_original=True)


def user_of(body: dict[str, Any]) -> str:
    """The Slack user id behind a payload."""
    user = body.get("user") or {}
    return str(user.get("id") or body.get("user_id") or "unknown")


def refused_acceptance(services: BotServices, user: str, finding_id: int) -> str | None:
    """None when `user` may accept risk; else the refusal, audited, as the text to show them."""
    if services.is_approver(user):
        return None
    services.refuse(
        user=user,
        action="finding.accept",
        object_type="finding",
        object_id=str(finding_id),
        why="not an approver",
    )
    return f"Only approvers may accept a risk: {services.approvers_text()}"
