"""Agents: other hosts send their file integrity and package results to `serve`.

    compliancebot agent enroll NAME --user U     # prints the agent's token, once
    compliancebot agent run --server URL [--once] [--interval S]   # on the agent's host
    compliancebot agent revoke NAME --user U / agent list

An agent runs the host collectors on its own host (its own `fim` baseline and `vulns`
advisories, in its own database) and POSTs each collection to `serve` at
`/agent/v1/results` with `Authorization: Bearer <token>` (from COMPLIANCEBOT_AGENT_TOKEN, never
a command-line argument). `serve` checks the token (stored as its SHA-256 only; revocable), the
body (bounded by server.max_body_bytes, then validated), and its time (a replay or a stale
result is refused), then stores the findings with the agent's enrolled name as their account:
an agent only ever reports for itself. An enrolled agent silent for agents.silent_after_minutes
is a finding (`host_agent_silent`), checked every few minutes by `serve`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import structlog
import typer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.scanning import ScanOutcome, run_scan
from ledger import agents
from ledger.db import transaction
from ledger.scanlock import ScanAlreadyRunningError
from rules.catalog import Catalog
from rules.errors import CompliancebotError
from scanners.host.remote import (
    AgentState,
    PayloadCollector,
    Results,
    SilentAgents,
    collection_document,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from bot.settings import Settings

log = structlog.get_logger(__name__)

PATH = "/agent/v1/results"
TOKEN_VARIABLE = "COMPLIANCEBOT_AGENT_TOKEN"  # noqa: S105 - the variable's name, not a token
RETRY_AFTER_BUSY = 60  # seconds an agent is told to wait while another scan runs


# ---- serve's side ----------------------------------------------------------------------------


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def receive_results(
    *,
    body: bytes,
    token: str | None,
    catalog: Catalog,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
) -> tuple[int, dict[str, Any]]:
    """Check and store one agent's results: (HTTP status, answer)."""
    try:
        with transaction(sessions) as session:
            agent = agents.authenticate(session=session, token=token)
            name = agent.name
    except agents.Refusal as refused:
        return refused.status, {"error": str(refused)}
    try:
        results = Results.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return 400, {"error": f"{where}: {first['msg']}", "errors": exc.error_count()}
    sent_at = results.sent_at if results.sent_at.tzinfo else results.sent_at.replace(tzinfo=UTC)
    try:
        with transaction(sessions) as session:
            agent = agents.authenticate(session=session, token=token)
            agents.take(agent=agent, sent_at=sent_at, now=clock())
    except agents.Refusal as refused:
        return refused.status, {"error": str(refused)}
    scans: list[dict[str, Any]] = []
    for sent in results.collections:
        try:
            outcome: ScanOutcome = run_scan(
                catalog=catalog,
                collector=PayloadCollector(agent=name, sent=sent),
                sessions=sessions,
                clock=clock,
                accounts={name},
                trigger=f"agent:{name}"[:32],
            )
        except ScanAlreadyRunningError as exc:
            return 503, {"error": str(exc), "retry_after": RETRY_AFTER_BUSY, "scans": scans}
        except CompliancebotError as exc:
            return 422, {"error": str(exc), "scans": scans}
        scans.append(
            {"scan_id": outcome.scan.id, "status": outcome.scan.status, **outcome.counts.as_dict()}
        )
    log.info("agent.results_taken", agent=name, scans=len(scans))
    return 200, {"agent": name, "scans": scans}


def agent_routes(
    *, catalog: Catalog, sessions: sessionmaker[Session], clock: Callable[[], datetime]
) -> list[Route]:
    """POST /agent/v1/results (its body is bounded by server.max_body_bytes before it is read)."""

    async def results(request: Request) -> Response:
        body = await request.body()
        status, answer = await run_in_threadpool(
            lambda: receive_results(
                body=body, token=_bearer(request), catalog=catalog, sessions=sessions, clock=clock
            )
        )
        headers = {"Retry-After": str(RETRY_AFTER_BUSY)} if status == 503 else None
        return JSONResponse(answer, status, headers=headers)

    return [Route(PATH, results, methods=["POST"])]


def check_silent(
    *,
    catalog: Catalog,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime],
    after_minutes: int,
) -> ScanOutcome | None:
    """The scheduler's job: a host_agent_silent finding per enrolled agent gone quiet."""
    with sessions() as session:
        states = [
            AgentState(name=a.name, enrolled_at=a.enrolled_at, last_seen=a.last_seen_at)
            for a in agents.active(session=session)
        ]
    if not states:
        return None
    return run_scan(
        catalog=catalog,
        collector=SilentAgents(agents=states, now=clock(), after_minutes=after_minutes),
        sessions=sessions,
        clock=clock,
        trigger="agents",
    )


# ---- the agent's side ------------------------------------------------------------------------


def collect_here(settings: Settings, sessions: sessionmaker[Session]) -> dict[str, Any]:
    """This host's results, as an agent sends them: file integrity (when a baseline exists)
    and installed packages."""
    from bot.fim_cli import fim_collector
    from bot.vulns_cli import package_collector

    collections = []
    fim = fim_collector(settings=settings, sessions=sessions)
    if fim.baseline:
        collections.append(collection_document(["host.file"], fim.collect()))
    packages = package_collector(settings, sessions)
    collections.append(collection_document(["host.package"], packages.collect()))
    return {"version": 1, "sent_at": datetime.now(UTC).isoformat(), "collections": collections}


def _checked_server(url: str) -> str:
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise CompliancebotError(
            f"--server must be https:// (http only to 127.0.0.1 or localhost), not {url!r}"
        )
    return url.rstrip("/")


def send(
    server: str, token: str, document: dict[str, Any], *, client: httpx.Client | None = None
) -> tuple[int, dict[str, Any]]:
    """POST one result; (status, answer)."""
    own = client or httpx.Client(timeout=60, follow_redirects=False)
    try:
        answer = own.post(
            _checked_server(server) + PATH,
            content=json.dumps(document, default=str).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
    finally:
        if client is None:
            own.close()
    try:
        parsed = answer.json()
    except ValueError:
        parsed = {"error": answer.text[:200]}
    return answer.status_code, parsed if isinstance(parsed, dict) else {"answer": parsed}


agent_app = typer.Typer(help="Agents: other hosts sending their results to serve.")


def register(app: typer.Typer, context: Any, printer: Any) -> None:
    """Add `agent` to the CLI; `context(ctx)` gives (settings, sessions, catalog)."""

    @agent_app.command("enroll")
    def enroll_command(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="The agent's name: its findings' account.")],
        user: Annotated[str, typer.Option(help="Who enrolls it (audited).")],
    ) -> None:
        """Enroll an agent and print its token (shown only now; kept as a SHA-256)."""
        _settings, sessions, _catalog = context(ctx)
        with transaction(sessions) as session:
            token = agents.enroll(session=session, name=name, by=user, now=datetime.now(UTC))
        printer(f"agent {name} enrolled; its token (shown once, set {TOKEN_VARIABLE} to it):")
        printer(token)

    @agent_app.command("revoke")
    def revoke_command(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument()],
        user: Annotated[str, typer.Option(help="Who revokes it (audited).")],
    ) -> None:
        """Revoke an agent's token: its results are refused from now on."""
        _settings, sessions, _catalog = context(ctx)
        with transaction(sessions) as session:
            agents.revoke(session=session, name=name, by=user, now=datetime.now(UTC))
        printer(f"agent {name} revoked")

    @agent_app.command("list")
    def list_command(ctx: typer.Context) -> None:
        """The agents: enrolled or revoked, and when each last reported."""
        _settings, sessions, _catalog = context(ctx)
        with sessions() as session:
            rows = agents.listing(session=session)
        if not rows:
            printer("no agents")
        for a in rows:
            state = f"revoked {a.revoked_at:%Y-%m-%d}" if a.revoked_at else "enrolled"
            seen = f"{a.last_seen_at:%Y-%m-%d %H:%M} UTC" if a.last_seen_at else "never"
            printer(f"{a.name}  {state}  last result {seen}")

    @agent_app.command("run")
    def run_command(
        ctx: typer.Context,
        server: Annotated[str, typer.Option(help="serve's base URL, https://...")],
        once: Annotated[bool, typer.Option(help="Send one result and exit.")] = False,
        interval: Annotated[int, typer.Option(min=60, help="Seconds between results.")] = 3600,
    ) -> None:
        """Collect this host's results and send them to serve (token: COMPLIANCEBOT_AGENT_TOKEN)."""
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        if not token:
            raise CompliancebotError(f"set {TOKEN_VARIABLE} to the token `agent enroll` printed")
        _checked_server(server)
        settings, sessions, _catalog = context(ctx)
        while True:
            status, answer = send(server, token, collect_here(settings, sessions))
            if status == 200:
                printer(f"sent: {len(answer.get('scans', []))} scans stored")
            else:
                printer(f"refused ({status}): {answer.get('error', answer)}")
                if once:
                    raise typer.Exit(1)
            if once:
                return
            time.sleep(interval)  # the agent's own schedule: a long-running process

    app.add_typer(agent_app, name="agent")
