"""POST /jira/webhook and POST /trello/webhook: what people did in the tracker, pushed to us.

Jira: a webhook whose URL carries `?secret=<tickets.jira.webhook_secret>` (Server, Data
Center, Cloud automation), or a Cloud admin webhook with that secret, which signs the body
(`X-Hub-Signature: sha256=<hex HMAC-SHA256>`). Trello: `X-Trello-Webhook` is the base64
HMAC-SHA1 of the body followed by the callback URL, keyed with the app's API secret; Trello
sends HEAD to the callback when the webhook is created, answered 200.

A delivery's size is bounded before it is read (`bot.middleware.BodyLimit`), then it is
verified, parsed, and applied in a worker thread (`TicketSync.receive`, which is
idempotent: a tracker's retry of the same event changes nothing). The ticket worker is then
woken, so a re-check of a ticket closed by a person runs within seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.metrics import Metrics
from bot.tickets import TicketSync
from integrations.tickets import TicketError, TicketRef

log = structlog.get_logger(__name__)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def jira_signed(request: Request, body: bytes, secret: str) -> bool:
    """The body is signed with the secret (Cloud), or the URL carries it (Server, automation)."""
    signature = request.headers.get("X-Hub-Signature", "")
    if signature.startswith("sha256="):
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return _equal(signature.removeprefix("sha256="), digest)
    given = request.query_params.get("secret")
    return given is not None and _equal(given, secret)


def trello_signed(request: Request, body: bytes, secret: str, callback_url: str) -> bool:
    """Trello's X-Trello-Webhook: base64(HMAC-SHA1(secret, body + callback URL))."""
    digest = hmac.new(secret.encode(), body + callback_url.encode(), hashlib.sha1).digest()
    return _equal(request.headers.get("X-Trello-Webhook", ""), base64.b64encode(digest).decode())


def tracker_routes(
    *,
    syncs: Mapping[str, TicketSync],
    settings: Any,
    metrics: Metrics,
    wake: Mapping[str, Callable[[], None]],
) -> list[Route]:
    """The webhook endpoints; one that is not configured answers 404 saying what to set."""

    async def receive(
        name: str,
        request: Request,
        verify: Callable[[bytes, str], bool],
        read: Callable[[TicketSync, dict[str, Any]], TicketRef | None],
    ) -> Response:
        section = getattr(settings.tickets, name)
        sync = syncs.get(name)
        secret = section.webhook_secret.get_secret_value() if section.webhook_secret else None
        if sync is None or secret is None:
            return _answer(
                metrics,
                name,
                404,
                {
                    "error": f"this webhook is off: set tickets.{name}.enabled and "
                    f"tickets.{name}.webhook_secret"
                },
            )
        # Bounded by server.max_body_bytes (bot.middleware.BodyLimit, around every route of
        # `serve`): a larger body is refused with 413 before it is buffered.
        body = await request.body()
        if not verify(body, secret):
            log.warning("webhook.bad_signature", tracker=name, client=_client(request))
            return _answer(metrics, name, 401, {"error": "the signature or secret is wrong"})
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return _answer(metrics, name, 400, {"error": f"the body is not JSON: {exc}"})
        if not isinstance(payload, dict):
            return _answer(metrics, name, 400, {"error": "the body is not a JSON object"})
        try:
            ref = await run_in_threadpool(read, sync, payload)
        except TicketError as exc:  # the tracker could not tell us who we are: try again later
            return _answer(metrics, name, 503, {"error": str(exc)})
        counts = await run_in_threadpool(sync.receive, [ref] if ref else [])
        if name in wake and (counts["closed"] or counts["reopened"] or counts["deleted"]):
            wake[name]()
        return _answer(metrics, name, 200, {"ok": True, **counts})

    def read_jira(
        sync: TicketSync, payload: dict[str, Any], delivery: str | None
    ) -> TicketRef | None:
        # Jira sends the same X-Atlassian-Webhook-Identifier on every retry of a delivery: the
        # ref carries it, so a retry is known as one (TicketSync applies each change once).
        sink: Any = sync.sink
        return sink.ref_from_event(payload, delivery=delivery)  # type: ignore[no-any-return]

    def read_trello(sync: TicketSync, payload: dict[str, Any]) -> TicketRef | None:
        action = payload.get("action")
        if not isinstance(action, dict):
            return None
        sink: Any = sync.sink
        if action.get("idMemberCreator") == sink.me:
            return None  # our own move, maybe delivered late: not news
        # The action's id names the change: a redelivery, or the same action polled, is a replay.
        return sink.ref_from_action(action)  # type: ignore[no-any-return]

    async def jira_webhook(request: Request) -> Response:
        delivery = request.headers.get("X-Atlassian-Webhook-Identifier") or None
        return await receive(
            "jira",
            request,
            lambda body, secret: jira_signed(request, body, secret),
            lambda sync, payload: read_jira(sync, payload, delivery),
        )

    async def trello_webhook(request: Request) -> Response:
        if request.method == "HEAD":  # Trello checks the callback exists when it is created
            return Response(status_code=200)
        callback = str(settings.tickets.trello.webhook_url or "")
        return await receive(
            "trello",
            request,
            lambda body, secret: trello_signed(request, body, secret, callback),
            read_trello,
        )

    return [
        Route("/jira/webhook", jira_webhook, methods=["POST"]),
        Route("/trello/webhook", trello_webhook, methods=["POST", "HEAD"]),
    ]


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _answer(metrics: Metrics, name: str, status: int, body: dict[str, Any]) -> Response:
    metrics.webhooks.labels(name, str(status)).inc()
    return JSONResponse(body, status)
