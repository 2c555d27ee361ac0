"""POST /<tracker>/webhook: what people did in a tracker, pushed to us (one route per
registered tracker with a webhook: /jira/webhook, /trello/webhook).

How a delivery is authenticated and read is the tracker's (`integrations.trackers.Webhook`,
e.g. Jira's `?secret=` or `X-Hub-Signature`, Trello's `X-Trello-Webhook`); the shared secret
is `tickets.<tracker>.webhook_secret`, and while it is unset the route answers 404.

A delivery's size is bounded before it is read (`bot.middleware.BodyLimit`), then it is
verified, parsed, and applied in a worker thread (`TicketSync.receive`, which is
idempotent: a tracker's retry of the same event changes nothing). The ticket worker is then
woken, so a re-check of a ticket closed by a person runs within seconds.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.metrics import Metrics
from bot.settings import Settings
from integrations.ticket_sync import TicketSync
from integrations.tickets import TicketError
from integrations.trackers import TRACKERS, Webhook

log = structlog.get_logger(__name__)


def tracker_routes(
    *,
    syncs: Mapping[str, TicketSync],
    settings: Settings,
    metrics: Metrics,
    wake: Mapping[str, Callable[[], None]],
) -> list[Route]:
    """The webhook endpoints; one that is not configured answers 404 saying what to set."""

    def endpoint(name: str, hook: Webhook[Any, Any]) -> Callable[[Request], Awaitable[Response]]:
        async def receive(request: Request) -> Response:
            section = settings.tickets.get(name)
            sync = syncs.get(name)
            secret = (
                section.webhook_secret.get_secret_value()
                if section is not None and section.webhook_secret is not None
                else None
            )
            if section is None or sync is None or secret is None:
                return _answer(
                    metrics,
                    name,
                    404,
                    {
                        "error": f"this webhook is off: set tickets.{name}.enabled and "
                        f"tickets.{name}.webhook_secret"
                    },
                )
            # Bounded by server.max_body_bytes (bot.middleware.BodyLimit, around every route
            # of `serve`): a larger body is refused with 413 before it is buffered.
            body = await request.body()
            if not hook.verify(request.headers, request.query_params, body, secret, section):
                log.warning("webhook.bad_signature", tracker=name, client=_client(request))
                return _answer(metrics, name, 401, {"error": "the signature or secret is wrong"})
            try:
                payload = json.loads(body)
            except ValueError as exc:
                return _answer(metrics, name, 400, {"error": f"the body is not JSON: {exc}"})
            if not isinstance(payload, dict):
                return _answer(metrics, name, 400, {"error": "the body is not a JSON object"})
            try:
                ref = await run_in_threadpool(hook.parse, sync.sink, payload, request.headers)
            except TicketError as exc:  # the tracker could not tell us who we are: try later
                return _answer(metrics, name, 503, {"error": str(exc)})
            counts = await run_in_threadpool(sync.receive, [ref] if ref else [])
            if name in wake and (counts["closed"] or counts["reopened"] or counts["deleted"]):
                wake[name]()
            return _answer(metrics, name, 200, {"ok": True, **counts})

        return receive

    routes = []
    for tracker in TRACKERS:
        hook = tracker.webhook
        if hook is None:
            continue
        path = f"/{tracker.name}/webhook"
        routes.append(Route(path, endpoint(tracker.name, hook), methods=["POST"]))
        if hook.head:  # the tracker checks that the callback exists when the webhook is made
            routes.append(Route(path, _exists, methods=["HEAD"]))
    return routes


async def _exists(request: Request) -> Response:
    return Response(status_code=200)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _answer(metrics: Metrics, name: str, status: int, body: dict[str, Any]) -> Response:
    metrics.webhooks.labels(name, str(status)).inc()
    return JSONResponse(body, status)
