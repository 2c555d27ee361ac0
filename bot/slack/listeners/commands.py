"""The slash command (`/compliance` by default) and its subcommands."""

from __future__ import annotations

from datetime import date
from typing import Any

import structlog
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.reports import make_document
from bot.slack import blocks as kit
from bot.slack import commands as cmd
from bot.slack.app import BotServices
from bot.slack.ids import SlackInputError
from bot.slack.render import finding_view, findings_page, status_view
from bot.slack.task_blocks import (
    HISTORY_SHOWN,
    history_blocks,
    history_text,
    tasks_list_blocks,
)
from bot.trends import CHART_DAYS, MIN_CHART_DAYS, NO_TREND_YET, days_with_snapshots, span
from ledger import snapshots
from ledger.models import PostureSnapshot
from ledger.scanlock import ScanAlreadyRunningError, current_holder
from ledger.services import LedgerError, get_finding
from ledger.tasks import completions, count_completions

log = structlog.get_logger(__name__)
TASKS_DAYS = 30  # how far ahead `/compliance tasks` looks


def _running(exc: ScanAlreadyRunningError) -> str:
    """`A scan is already running (started by ..., scan #3); its summary will be posted ...`."""
    text = kit.esc(str(exc))  # the holder's trigger names a Slack user: data, not markup
    return f"{text[:1].upper()}{text[1:]}; its summary will be posted when it finishes."


def register(app: App, services: BotServices) -> None:
    """One command, many subcommands; fast answers go in the ack, slow ones after it."""
    name = services.slack.command

    @app.command(name)
    def on_command(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        user = str(command.get("user_id", ""))
        try:
            parsed = cmd.parse(str(command.get("text") or ""), services.catalog.frameworks)
        except SlackInputError as exc:
            ack(text=str(exc), blocks=kit.help_blocks(name, str(exc)), response_type="ephemeral")
            return
        if isinstance(parsed, cmd.Help):
            ack(text="Usage", blocks=kit.help_blocks(name), response_type="ephemeral")
        elif isinstance(parsed, cmd.Status):
            _status(ack, respond, client, command)
        elif isinstance(parsed, cmd.Findings):
            with services.sessions() as session:
                page = findings_page(
                    session=session,
                    catalog=services.catalog,
                    query=parsed.query,
                    user=user,
                    page_size=services.slack.page_size,
                    cache=services.cache,
                )
            ack(
                text=f"{page.total} finding(s)",
                blocks=kit.findings_page_blocks(page),
                response_type="ephemeral",
            )
        elif isinstance(parsed, cmd.Show):
            with services.sessions() as session:
                try:
                    finding = get_finding(session=session, finding_id=parsed.finding_id)
                except LedgerError as exc:
                    ack(text=str(exc), blocks=kit.text_blocks(str(exc)), response_type="ephemeral")
                    return
                shown = finding_view(finding, services.catalog, services.clock())
            ack(
                text=kit.finding_text(shown),
                blocks=kit.finding_blocks(shown),
                response_type="ephemeral",
            )
        elif isinstance(parsed, cmd.Tasks):
            if services.book is None:
                text = "The compliance calendar is off (calendar.enabled in the configuration)."
                ack(text=text, blocks=kit.text_blocks(text), response_type="ephemeral")
                return
            views = services.task_views(TASKS_DAYS)
            overdue = sum(1 for v in views if v.overdue)
            ack(
                text=f"{len(views)} compliance task(s) due, {overdue} overdue",
                blocks=tasks_list_blocks(views, horizon_days=TASKS_DAYS),
                response_type="ephemeral",
            )
        elif isinstance(parsed, cmd.TasksHistory):
            _history(ack, parsed.task)
        elif isinstance(parsed, cmd.Scan):
            _scan(ack, respond, parsed.account, user)
        elif isinstance(parsed, cmd.Report):
            _report(ack, respond, client, command, parsed)

    def _status(ack: Ack, respond: Respond, client: WebClient, command: dict[str, Any]) -> None:
        """The posture at once; then, with two days of snapshots or more, their 30-day trend as
        a PNG uploaded to the channel (the text never waits for, nor depends on, the chart)."""
        now = services.clock()
        days = span(
            today=snapshots.local_day(now, services.settings.schedule.timezone), days=CHART_DAYS
        )
        with services.sessions() as session:
            view = status_view(
                session=session, catalog=services.catalog, now=now, cache=services.cache
            )
            found = snapshots.trends(
                session=session, frameworks=sorted(services.catalog.frameworks), since=days[0]
            )
        blocks = kit.status_blocks(view)
        charted = days_with_snapshots(found) >= MIN_CHART_DAYS
        if not charted:
            blocks += kit.text_blocks(f"{NO_TREND_YET} ({days_with_snapshots(found)} so far).")
        ack(text="Compliance status", blocks=blocks, response_type="ephemeral")
        if charted:
            _trend_chart(respond, client, command, found, days)

    def _trend_chart(
        respond: Respond,
        client: WebClient,
        command: dict[str, Any],
        found: dict[str, list[PostureSnapshot]],
        days: list[date],
    ) -> None:
        from bot.trends import trend_png

        try:
            png = trend_png(catalog=services.catalog, snapshots=found, days=days)
        except Exception:
            log.exception("slack.status_chart_failed", stage="render")
            return
        try:
            client.files_upload_v2(
                channel=str(command.get("channel_id")),
                content=png,
                filename=f"posture-trend-{days[-1]}.png",
                title=f"Compliance posture, {days[0]} to {days[-1]}",
                initial_comment=f"Compliance posture over the last {CHART_DAYS} days, requested "
                f"by <@{command.get('user_id')}>.",
            )
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            log.warning("slack.status_chart_failed", stage="upload", error=str(error or exc))
            hint = " Invite the bot to this channel first." if error == "not_in_channel" else ""
            respond(
                text=f":x: The trend chart could not be posted here: {error or exc}.{hint}",
                response_type="ephemeral",
            )
        except OSError as exc:  # Slack or its upload host unreachable: the text is there
            log.warning("slack.status_chart_failed", stage="upload", error=type(exc).__name__)

    def _history(ack: Ack, task: str | None) -> None:
        book = services.book
        if book is None:
            text = "The compliance calendar is off (calendar.enabled in the configuration)."
            ack(text=text, blocks=kit.text_blocks(text), response_type="ephemeral")
            return
        with services.sessions() as session:
            rows = completions(session=session, task_id=task, limit=HISTORY_SHOWN)
            total = count_completions(session=session, task_id=task)
        ack(
            text=history_text(total, task),
            blocks=history_blocks(
                rows,
                {t.id: t.title for t in book.tasks.tasks.values()},
                total=total,
                zone=book.calendar_clock.zone,
                task=task,
            ),
            response_type="ephemeral",
        )

    def _scan(ack: Ack, respond: Respond, account: str | None, user: str) -> None:
        targets = services.settings.aws.targets
        if account is not None and not any(account in (t.name, t.account_id) for t in targets):
            valid = ", ".join(t.name for t in targets)
            problem = f"no AWS target named {account!r}; configured: {valid}"
            ack(text=problem, blocks=kit.help_blocks(name, problem), response_type="ephemeral")
            return
        # Asked before the ack so the asker is told at once; the scan itself takes the lock
        # (whichever process runs the other scan) and refuses if it lost a race since.
        holder = current_holder(sessions=services.sessions, now=services.clock())
        if holder is not None:
            ack(text=_running(ScanAlreadyRunningError(holder)), response_type="ephemeral")
            return
        try:
            ack(
                text=f":mag: Scanning {account or 'every configured account'}; I will answer "
                "here when it finishes.",
                response_type="ephemeral",
            )
            try:
                outcome = services.scan(account, f"slack:{user}")
            except ScanAlreadyRunningError as exc:
                respond(text=_running(exc), response_type="ephemeral")
                return
            except Exception as exc:
                log.exception("slack.scan_failed")
                respond(text=f":x: The scan failed: {exc}", response_type="ephemeral")
                return
            s, c = outcome.scan, outcome.counts
            respond(
                text=f":white_check_mark: Scan #{s.id} {s.status}: {c.new} new, "
                f"{c.reopened} reopened, {c.resolved} resolved, {c.still_failing} still failing "
                f"({s.resources} resources, {s.api_calls} AWS API calls"
                + (f", {s.error_count} error(s)" if s.error_count else "")
                + ").",
                response_type="ephemeral",
            )
        finally:
            services.wake()

    def _report(
        ack: Ack, respond: Respond, client: WebClient, command: dict[str, Any], asked: cmd.Report
    ) -> None:
        framework, fmt = asked.framework, asked.format
        fw_name = services.catalog.frameworks[framework].name
        if fmt == "pdf":
            from bot.reports.pdf import PdfUnavailableError, require

            try:
                require()
            except PdfUnavailableError as exc:
                ack(text=str(exc), blocks=kit.text_blocks(str(exc)), response_type="ephemeral")
                return
        ack(text=f"Preparing the {fw_name} report…", response_type="ephemeral")
        now = services.clock()
        book = services.book
        with services.sessions() as session:
            content = make_document(
                session=session,
                settings=services.settings,
                catalog=services.catalog,
                tasks=list(book.tasks.tasks.values()) if book is not None else [],
                framework=framework,
                fmt=fmt,
                at=now,
                now=now,
            )
        try:
            client.files_upload_v2(
                channel=str(command.get("channel_id")),
                content=content,
                filename=f"{framework}-report-{now:%Y-%m-%d}.{fmt}",
                title=f"{fw_name} report {now:%Y-%m-%d}",
                initial_comment=f"{fw_name} compliance report, requested by "
                f"<@{command.get('user_id')}>.",
            )
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            hint = " Invite the bot to this channel first." if error == "not_in_channel" else ""
            respond(
                text=f":x: The report could not be posted here: {error or exc}.{hint}",
                response_type="ephemeral",
            )
