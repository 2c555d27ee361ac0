"""`compliancebot serve`: the long-running process: Slack (HTTP or Socket Mode), health, metrics.

One ASGI app (uvicorn) serves POST /slack/events, GET /healthz, GET /readyz and GET /metrics.
Bolt's dispatch is synchronous and may wait up to 3 s for an ack, so it runs in a thread pool,
never on the event loop. SIGTERM (uvicorn) stops accepting requests, lets in-flight ones finish,
then drains the listener threads and the delivery worker: nothing is left half-written, and
the process exits 0.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from types import FrameType
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App, BoltRequest
from slack_bolt.adapter.starlette.handler import to_starlette_response
from slack_bolt.error import BoltError
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.ics import feed as ics_feed
from bot.ics import token_allows
from bot.metrics import Metrics
from bot.middleware import AccessLog, BodyLimit
from bot.reminders import ReminderSweep, TaskBook, check_calendar
from bot.scanning import (
    ScanListener,
    ScanOutcome,
    collector_for,
    rechecker,
    run_scan,
    utcnow,
)
from bot.scheduler import ComplianceScheduler, JobSpec, cron, every, retention
from bot.settings import ENV_PREFIX, ConfigError, Settings, require_secrets
from bot.slack.app import BotServices, build_app, make_client
from bot.slack.delivery import SlackDelivery
from bot.slack.notify import enqueue_scan
from bot.slack.signing import RefusedError, SignedRequest
from bot.slack.signing import check as check_slack_request
from integrations import email_sink, splunk_sink, webhook_sink
from integrations.delivery import DeliveryWorker, OutboxSink, OutboxWorker
from integrations.ticket_sync import TicketSync
from integrations.tickets import TicketError, TicketSink
from ledger import db, events, snapshots
from ledger.audit import check_chain, use_key
from ledger.db import transaction
from ledger.inbound import first_delivery
from ledger.models import Scan
from ledger.services import ScanCounts
from rules.catalog import Catalog
from rules.tasks import load_tasks

log = structlog.get_logger(__name__)


def task_book(settings: Settings, catalog: Catalog) -> TaskBook:
    """The task catalog (built-in and the user's) with the calendar settings."""
    calendar = settings.calendar
    tasks = load_tasks(
        frameworks=catalog.frameworks, extra_paths=calendar.paths, disabled=calendar.disabled
    )
    return TaskBook(tasks=tasks, calendar=calendar, frameworks=catalog.frameworks)


def scan_listeners(*, settings: Settings, clock: Callable[[], datetime]) -> list[ScanListener]:
    """What a stored scan tells, in its own transaction: Slack (its notices), so none of it
    is lost if the process dies after. (Ticket work is planned by each tracker's sync round.)"""
    listeners: list[ScanListener] = []
    if settings.slack.enabled:

        def notify(session: Session, scan: Scan, counts: ScanCounts) -> None:
            enqueue_scan(
                session=session, slack=settings.slack, scan=scan, counts=counts, now=clock()
            )

        listeners.append(notify)
    return listeners


def event_stream(*, settings: Settings, catalog: Catalog) -> events.Stream | None:
    """Where events go (a subscription per enabled sink); None when no sink is enabled, and
    then nothing is recorded. An unknown framework in a filter is an error naming the known."""
    sections = settings.events.sections()
    enabled = settings.events.enabled()
    if not enabled:
        return None
    for name in enabled:
        unknown = sorted(set(sections[name].frameworks) - set(catalog.frameworks))
        if unknown:
            raise ConfigError(
                f"events.{name}.frameworks: unknown framework(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(catalog.frameworks))}"
            )
    try:
        from importlib.metadata import version

        product = version("compliancebot")
    except Exception:  # noqa: BLE001 - a source tree without metadata
        product = "0+unknown"
    return events.Stream(
        sinks=tuple(sections[name].subscription(name) for name in enabled),
        rules=catalog.rule,
        product_version=product,
    )


def event_sinks(*, settings: Settings, clock: Callable[[], datetime]) -> list[OutboxSink]:
    """The enabled event sinks (webhook, Splunk HEC, e-mail), their secrets required."""
    config = settings.events
    require_secrets(config.missing_secrets())
    sinks: list[OutboxSink] = []
    if config.webhook.enabled:
        sinks.append(webhook_sink.build_sink(config.webhook, clock=clock))
    if config.splunk.enabled:
        sinks.append(splunk_sink.build_sink(config.splunk, clock=clock))
    if config.email.enabled:
        sinks.append(email_sink.build_sink(config.email, clock=clock))
    return sinks


def send_digest(
    *,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    recipients: Sequence[str],
    period: str,
    sla_days: Mapping[str, int],
) -> int:
    """Record the e-mail digest of the period ending now for each recipient (the e-mail sink
    sends them); a second run the same day records nothing."""
    with transaction(sessions) as session:
        return events.enqueue_digest(
            session,
            sink="email",
            recipients=recipients,
            period=period,
            now=clock(),
            sla_days=sla_days,
        )


def digest_jobs(*, settings: Settings, services: BotServices) -> dict[str, JobSpec]:
    """The e-mail digest's job, when events.email.digest is daily or weekly: 08:00 each day,
    or on Mondays, in schedule.timezone."""
    email = settings.events.email
    if not email.enabled or email.digest == "off":
        return {}
    expression = "0 8 * * *" if email.digest == "daily" else "0 8 * * 1"
    run = functools.partial(
        send_digest,
        sessions=services.sessions,
        clock=services.clock,
        recipients=tuple(email.to),
        period=email.digest,
        sla_days={str(k): v for k, v in settings.calendar.sla_days.items()},
    )
    return {"digest:email": JobSpec(cron(expression, settings.schedule.timezone), run)}


def build_services(
    *,
    settings: Settings,
    catalog: Catalog,
    engine: Engine,
    clock: Callable[[], datetime] = utcnow,
    metrics: Metrics | None = None,
) -> BotServices:
    """Wire the ledger, the scanner and the Slack client together."""
    if settings.slack.enabled:  # the client is Slack's only with its token
        require_secrets(settings.slack.missing_secrets())
    sessions = db.session_factory(engine)
    use_key(sessions, settings.audit.key())  # audit entries are chained with it
    metrics = metrics or Metrics(sessions)
    client = make_client(settings.slack)
    book = task_book(settings, catalog) if settings.calendar.enabled else None
    # The one outbox worker: every sink's items are drained by it (see `serve`).
    outbox = OutboxWorker(sessions=sessions, clock=clock, on_outcome=metrics.outbox_outcome)
    delivery = SlackDelivery(
        worker=outbox,
        client=client,
        sessions=sessions,
        catalog=catalog,
        slack=settings.slack,
        clock=clock,
        metrics=metrics,
        book=book,
    )

    if settings.slack.enabled:
        outbox.add(delivery)
    # The event stream: ledger.events records each event and its items in the change's own
    # transaction (for the sinks in the sessions' stream); the one worker delivers them.
    for sink in event_sinks(settings=settings, clock=clock):
        outbox.add(sink)
    events.use_stream(sessions, event_stream(settings=settings, catalog=catalog))

    listeners = scan_listeners(settings=settings, clock=clock)

    def scan(account: str | None, trigger: str) -> ScanOutcome:
        outcome = run_scan(
            catalog=catalog,
            collector=collector_for(settings),
            sessions=sessions,
            clock=clock,
            accounts={account} if account else None,
            trigger=trigger[:32],
            listeners=listeners,
        )
        metrics.scans.labels(trigger.split(":", maxsplit=1)[0], outcome.scan.status).inc()
        return outcome

    check = rechecker(catalog=catalog, settings=settings, sessions=sessions, clock=clock)

    return BotServices(
        settings=settings,
        catalog=catalog,
        sessions=sessions,
        clock=clock,
        client=client,
        delivery=delivery,
        metrics=metrics,
        scan=scan,
        recheck=check,
        book=book,
    )


def _kind(body: dict[str, Any]) -> str:
    if "command" in body:
        return "command"
    kind = str(body.get("type", ""))
    return {
        "block_actions": "action",
        "view_submission": "view",
        "view_closed": "view",
        "event_callback": "event",
        "url_verification": "event",
    }.get(kind, "other")


def slack_endpoint(app: App, services: BotServices) -> Callable[[Request], Awaitable[Response]]:
    """POST /slack/events: verify on the raw bytes, refuse replays, then let Bolt dispatch."""
    metrics = services.metrics
    signing = services.slack.signing_secret
    secret = signing.get_secret_value() if signing else ""

    def _first_time(signed: SignedRequest) -> bool:
        return first_delivery(
            sessions=services.sessions,
            key=signed.replay_key,
            source="slack-request",
            at=services.clock(),
        )

    async def slack_events(request: Request) -> Response:
        started = time.perf_counter()
        body = await request.body()  # bounded by BodyLimit
        try:
            # Verified on the raw bytes before Bolt parses anything (Bolt's check is off).
            signed = check_slack_request(
                secret=secret,
                headers=request.headers,
                body=body,
                now=services.clock().timestamp(),
            )
        except RefusedError as exc:
            # Only our reason and the peer address: nothing the client sent reaches the log.
            log.warning(
                "slack.refused", status=exc.status, reason=exc.reason, client=_peer(request)
            )
            metrics.requests.labels("refused", str(exc.status)).inc()
            return JSONResponse({"error": exc.reason}, exc.status)
        kind = _kind(signed.body)
        if not await run_in_threadpool(_first_time, signed):
            # The same signed request again (captured and replayed, or resent by a proxy): it
            # was applied once. Slack's own retries are signed anew and deduped by event_id.
            log.warning("slack.replayed_request", kind=kind, client=_peer(request))
            metrics.requests.labels(kind, "replay").inc()
            return Response(status_code=200)
        try:
            bolt_request = BoltRequest(
                body=signed.text,
                query=str(request.url.query),
                # Bolt's x-slack-bolt-* headers switch it into its FaaS lazy-only mode; they
                # are not covered by the signature, so a client never gets to set them.
                headers={
                    k: v for k, v in request.headers.items() if not k.startswith("x-slack-bolt-")
                },
            )
        except Exception:  # noqa: BLE001 - Bolt reads Slack's shapes; a signed odd one is a 400
            log.warning("slack.unreadable_request", kind=kind, client=_peer(request))
            metrics.requests.labels(kind, "400").inc()
            return JSONResponse({"error": "the request body is not a Slack payload"}, 400)
        response = await run_in_threadpool(app.dispatch, bolt_request)
        metrics.requests.labels(kind, str(response.status)).inc()
        metrics.latency.labels(kind).observe(time.perf_counter() - started)
        return to_starlette_response(response)

    return slack_events


def build_asgi(
    *,
    app: App | None,
    services: BotServices,
    engine: Engine,
    executor: ThreadPoolExecutor,
    workers: Sequence[DeliveryWorker] = (),
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    extra_routes: Sequence[Route] = (),
) -> Starlette:
    """The HTTP face: Slack events (when over HTTP), tracker webhooks, health and metrics.

    Every request body is bounded by server.max_body_bytes before a route reads it, and every
    request is logged without its query string.
    """
    metrics = services.metrics
    slack_events = slack_endpoint(app, services) if app is not None else _no_slack

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def _ready() -> str | None:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db.require_current_schema(engine)
        except Exception as exc:  # noqa: BLE001 - any reason not to be ready counts
            return str(exc)
        return None

    last_problem: list[str | None] = [None]

    async def readyz(_: Request) -> Response:
        problem = await run_in_threadpool(_ready)
        # The reason names hosts, users and schema revisions: it goes to our log, once per
        # change (a probe every few seconds must not flood it), and never to the caller.
        if problem != last_problem[0]:
            if problem:
                log.warning("serve.not_ready", reason=problem)
            else:
                log.info("serve.ready_again")
            last_problem[0] = problem
        if problem:
            return JSONResponse({"status": "unavailable"}, 503)
        return JSONResponse({"status": "ready"})

    def _calendar(token: str | None, user: str | None) -> Response:
        calendar = services.settings.calendar
        secret = calendar.feed_token.get_secret_value() if calendar.feed_token else None
        if services.book is None or secret is None:
            return JSONResponse(
                {"error": "the calendar feed is off: set calendar.enabled and calendar.feed_token"},
                404,
            )
        if not token_allows(secret, token, user):
            return JSONResponse({"error": "a wrong or missing ?token= (for this ?user=)"}, 401)
        with services.sessions() as session:
            data = ics_feed(
                session=session,
                book=services.book,
                sla_days={str(k): v for k, v in calendar.sla_days.items()},
                now=services.clock(),
                horizon_days=calendar.horizon_days,
                user=user,
            )
        return Response(
            data,
            media_type="text/calendar; charset=utf-8",
            headers={"Content-Disposition": 'inline; filename="compliance.ics"'},
        )

    async def calendar_feed(request: Request) -> Response:
        params = request.query_params
        return await run_in_threadpool(_calendar, params.get("token"), params.get("user"))

    async def metrics_endpoint(_: Request) -> Response:
        payload = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        for worker in workers:
            worker.start()
        if on_start is not None:
            on_start()
        log.info("serve.started", mode=services.slack.mode)
        try:
            yield
        finally:
            log.info("serve.stopping")
            if on_stop is not None:
                on_stop()
            # Handlers still running after their ack (a re-check) finish before we exit.
            await run_in_threadpool(executor.shutdown, True)
            for worker in workers:
                await run_in_threadpool(worker.stop)
            await run_in_threadpool(services.cache.close)
            log.info("serve.stopped")

    return Starlette(
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/calendar.ics", calendar_feed, methods=["GET"]),
            *extra_routes,
        ],
        # AccessLog outermost: a refused oversized body is logged like any other answer.
        middleware=[
            Middleware(AccessLog),
            Middleware(BodyLimit, limit=services.settings.server.max_body_bytes),
        ],
        lifespan=lifespan,
    )


async def _no_slack(_: Request) -> Response:
    return JSONResponse({"error": "Slack is off, or in socket mode: no HTTP endpoint"}, 404)


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"


def _nothing() -> None:
    return None


def integration_problems(
    *,
    settings: Settings,
    sinks: Sequence[TicketSink],
    book: TaskBook | None,
    unreachable: Callable[[TicketSink, TicketError], str | None],
) -> list[str]:
    """Every reason an enabled integration cannot work, all of them at once: each tracker's
    mapping against what the tracker has (every name it maps, users included) and the
    calendar's owners. `unreachable` says what a tracker that could not be asked amounts to
    (a problem, or None when it is only logged). Shared by `config check` and `serve`."""
    problems = []
    for sink in sinks:
        try:
            found = sink.validate()
        except TicketError as exc:
            problem = unreachable(sink, exc)
            if problem is not None:
                problems.append(problem)
            continue
        # A sink names its keys within its own section (`jira.project`).
        problems += [f"tickets.{problem}" for problem in found]
    if book is not None:
        # Each already reads `file:line: field: message`, naming its task file.
        problems += check_calendar(book.tasks, settings.calendar)
    return problems


def problems_error(problems: Sequence[str]) -> ConfigError:
    """One error listing every problem found, one a line (a lone problem is that one line)."""
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError(
        f"{len(problems)} problems in the configuration:\n  " + "\n  ".join(problems)
    )


def _logged(sink: TicketSink, exc: TicketError) -> None:
    # Down for now: the outbox waits for it, and serve starts without the check.
    log.warning("tickets.mapping_unchecked", tracker=sink.name, error=str(exc))


def check_integrations(
    syncs: Sequence[TicketSync], services: BotServices, settings: Settings
) -> None:
    """Refuse to start on a tracker mapping or a calendar that cannot work, naming every why."""
    problems = integration_problems(
        settings=settings,
        sinks=[sync.sink for sync in syncs],
        book=services.book,
        unreachable=_logged,
    )
    if problems:
        raise problems_error(problems)
    if services.book is not None and not settings.slack.enabled:
        log.warning(
            "calendar.without_slack",
            note="reminders are recorded but not sent until slack.enabled; the feed and "
            "`compliancebot tasks` work",
        )


def scheduled_jobs(
    *, settings: Settings, services: BotServices, syncs: Sequence[TicketSync]
) -> dict[str, JobSpec]:
    """What the scheduler runs: scans on their cron, ticket sync (and polling) per tracker,
    the reminder sweep, the nightly retention and audit chain check, the daily snapshot."""
    tz = settings.schedule.timezone
    jobs: dict[str, JobSpec] = {}
    for target, expression in settings.schedule.scans.items():  # names checked by Settings
        account = None if target == "all" else target
        jobs[f"scan:{target}"] = JobSpec(
            cron(expression, tz), functools.partial(services.scan, account, "schedule")
        )
    for sync in syncs:
        section = settings.tickets.section(sync.sink.name)
        jobs[f"tickets:{sync.sink.name}"] = JobSpec(
            every(section.interval), sync.run_once, at_once=True
        )
    if services.book is not None:
        sweep = ReminderSweep(
            tasks=services.book.tasks,
            calendar=settings.calendar,
            sessions=services.sessions,
            clock=services.clock,
        )
        jobs["reminders"] = JobSpec(
            every(settings.calendar.sweep_interval), sweep.run_once, at_once=True
        )
    jobs["retention"] = JobSpec(
        cron("30 3 * * *", tz),
        functools.partial(
            retention,
            sessions=services.sessions,
            clock=services.clock,
            days=settings.schedule.retention_days,
        ),
    )
    # The audit chain verified nightly; a break is logged and alerted in Slack once.
    jobs["audit"] = JobSpec(
        cron(settings.audit.verify_cron, tz),
        functools.partial(
            check_chain,
            sessions=services.sessions,
            clock=services.clock,
            key=settings.audit.key(),
            channel=settings.slack.channel if settings.slack.enabled else None,
        ),
    )
    jobs.update(digest_jobs(settings=settings, services=services))  # events.email.digest
    # Enrolled agents gone quiet are host_agent_silent findings (nothing runs with no agent).
    from bot.agent import check_silent

    jobs["agents"] = JobSpec(
        every(settings.agents.check_seconds),
        functools.partial(
            check_silent,
            catalog=services.catalog,
            sessions=services.sessions,
            clock=services.clock,
            after_minutes=settings.agents.silent_after_minutes,
        ),
    )
    # Old rows to the archive (read back and checked before they are deleted), per kind with an
    # age in archive.days; nothing is scheduled while none is set.
    if any(age is not None for age in settings.archive.ages().values()):
        from bot.archive import archive_job

        jobs["archive"] = JobSpec(
            cron(settings.archive.cron, tz),
            functools.partial(
                archive_job, settings=settings, sessions=services.sessions, clock=services.clock
            ),
        )
    # Each framework's and control's posture at the end of the day just over; on the first run
    # every day since the first scan, back-filled from the finding history (no rescan).
    jobs["snapshot"] = JobSpec(
        cron("5 0 * * *", tz),
        functools.partial(
            snapshots.daily,
            sessions=services.sessions,
            catalog=services.catalog,
            clock=services.clock,
            timezone=tz,
        ),
    )
    return jobs


def serve(*, settings: Settings, catalog: Catalog, engine: Engine) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully and exit 0."""
    import uvicorn

    from bot.agent import agent_routes
    from bot.tickets import ticket_syncs
    from bot.webhooks import tracker_routes

    services = build_services(settings=settings, catalog=catalog, engine=engine)
    executor = ThreadPoolExecutor(
        max_workers=settings.server.handler_threads, thread_name_prefix="slack-handler"
    )
    app = None
    workers = []
    if settings.slack.enabled:
        try:
            # Bolt checks the token with auth.test here: a wrong token stops us now, not later.
            app = build_app(services, executor=executor)
        except (SlackApiError, BoltError, OSError) as exc:
            executor.shutdown()
            raise ConfigError(
                f"Slack did not accept the bot token at {settings.slack.api_url} "
                f"(slack.bot_token / {ENV_PREFIX}SLACK__BOT_TOKEN): {exc}"
            ) from exc
    # The one outbox worker's thread: every sink registered in services.outbox, each round.
    worker = DeliveryWorker(services.deliver_round, settings.slack.delivery_interval)
    services.wake = worker.wake
    workers.append(worker)
    syncs = ticket_syncs(
        settings=settings,
        catalog=catalog,
        sessions=services.sessions,
        clock=services.clock,
        check=services.recheck,
        worker=services.outbox,
    )
    for sync in syncs:  # their items go out with the one worker's every round too
        services.outbox.add(sync)
    try:
        check_integrations(syncs, services, settings)
        jobs = scheduled_jobs(settings=settings, services=services, syncs=syncs)
    except ConfigError:
        executor.shutdown()
        raise
    scheduler = None
    if settings.schedule.enabled:
        scheduler = ComplianceScheduler(
            engine=engine,
            jobs=jobs,
            timezone=settings.schedule.timezone,
            grace_seconds=settings.schedule.grace_seconds,
            poll_seconds=settings.schedule.leader_poll_seconds,
        )
    wakers: dict[str, Callable[[], Any]] = {
        sync.sink.name: functools.partial(scheduler.run_now, f"tickets:{sync.sink.name}")
        if scheduler is not None
        else _nothing
        for sync in syncs
    }
    starts: list[Callable[[], None]] = []
    stops: list[Callable[[], None]] = []
    if scheduler is not None:
        starts.append(scheduler.start)
        stops.append(scheduler.stop)
    if app is not None and settings.slack.mode == "socket":
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        assert settings.slack.app_token is not None
        handler = SocketModeHandler(
            app, settings.slack.app_token.get_secret_value(), web_client=services.client
        )
        starts.append(handler.connect)
        stops.append(handler.close)

    def on_start() -> None:
        for start in starts:
            start()

    def on_stop() -> None:
        for stop in reversed(stops):
            stop()

    asgi = build_asgi(
        app=app if settings.slack.mode == "http" else None,
        services=services,
        engine=engine,
        executor=executor,
        workers=workers,
        on_start=on_start,
        on_stop=on_stop,
        extra_routes=agent_routes(catalog=catalog, sessions=services.sessions, clock=services.clock)
        + tracker_routes(
            syncs={sync.sink.name: sync for sync in syncs},
            settings=settings,
            metrics=services.metrics,
            wake=wakers,
        ),
    )
    with _signals_end_cleanly():
        uvicorn.run(
            asgi,
            host=settings.server.host,
            port=settings.server.port,
            log_config=None,  # bot.logging's handlers render uvicorn's lines too
            access_log=False,  # uvicorn's line has the query string (secrets): AccessLog does
            timeout_graceful_shutdown=30,
        )


def _exit_zero(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@contextmanager
def _signals_end_cleanly() -> Iterator[None]:
    """SIGTERM and SIGINT end `serve` with status 0 once uvicorn's graceful shutdown is done.

    uvicorn handles both while it serves, then raises the signal again to the handlers that
    were there before it: Python's defaults would end the process "killed by SIGTERM" (143) or
    with a KeyboardInterrupt (130), which a supervisor or an orchestrator reads as a crash.
    The handlers set here take that re-raised signal and exit 0; before uvicorn has set its
    own (start-up), a signal stops the process at once, as it did before, but with status 0.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; whoever runs us there decides
        return
    before = {sig: signal.signal(sig, _exit_zero) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
