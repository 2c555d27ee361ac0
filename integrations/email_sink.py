"""The e-mail event sink: an immediate message, plain text and HTML, for each event it takes
(by default critical findings that are new or reopened), over SMTP with STARTTLS.

Plain SMTP is refused unless the server is on a loopback address and `allow_plaintext_loopback`
says so (a local relay, a test). The Message-ID is made from the event id, so a message resent
after a lost answer is the same message to every mail system that dedupes on it.
"""

from __future__ import annotations

import hashlib
import html
import json
import smtplib
import ssl
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from sqlalchemy.orm import Session

from integrations.delivery import Refused, RetryLater
from integrations.event_sink import LOOPBACK, MAX_MESSAGE, EventSinkSettings
from integrations.markup import one_line
from integrations.trackers import Secret, unset_secrets
from ledger import events
from ledger.models import Event, OutboxItem
from rules.catalog import Severity

ADDRESS = r"^[^@\s<>,;:\"\\]{1,64}@[A-Za-z0-9.-]{1,255}$"
_WHAT = {
    "finding.created": "new finding",
    "finding.reopened": "finding reopened",
    "finding.claimed": "finding claimed",
    "finding.resolved": "finding resolved",
    "finding.accepted": "risk accepted",
    "finding.acceptance_expired": "risk acceptance expired",
    "finding.detail_changed": "finding changed",
}
MAX_SUBJECT = 200


class EmailSettings(EventSinkSettings):
    """events.email: the SMTP server and the recipients; the password comes from the
    environment (COMPLIANCEBOT_EVENTS__EMAIL__PASSWORD) or the secrets file."""

    kinds: list[str] = ["finding.created", "finding.reopened"]
    min_severity: Severity = Severity.critical
    host: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    username: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    password: Secret = None
    sender: Annotated[str | None, Field(pattern=ADDRESS)] = None
    to: list[Annotated[str, Field(pattern=ADDRESS)]] = []
    starttls: bool = True
    # Plain SMTP (no STARTTLS): only to a server on a loopback address, and only when set.
    allow_plaintext_loopback: bool = False
    # A digest to each recipient (open findings by severity, new in the period, overdue
    # tasks, SLA breaches), besides the immediate messages; `serve` sends it on its schedule.
    digest: Literal["off", "daily", "weekly"] = "off"

    @model_validator(mode="after")
    def _complete_and_encrypted(self) -> EmailSettings:
        if not self.enabled:
            return self
        if not self.host or not self.sender or not self.to:
            raise ValueError(
                "events.email is enabled but events.email.host, .sender and .to (a list of "
                "addresses) are not all set"
            )
        if not self.starttls and not (self.allow_plaintext_loopback and self.host in LOOPBACK):
            raise ValueError(
                "events.email.starttls is off: plain SMTP is allowed only to 127.0.0.1 with "
                "events.email.allow_plaintext_loopback: true"
            )
        return self

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and any(c in value for c in "/:@ \t\r\n"):
            raise ValueError("must be a host name or address, without scheme, port or user")
        return value

    def missing_secrets(self) -> list[str]:
        """The SMTP password, when a username is set without one ([]: none missing)."""
        if self.enabled and self.username and self.password is None:
            return [unset_secrets([("events", "email", "password")], "SMTP login needs")]
        return []


def _text(value: Any, limit: int = 2000) -> str:
    """Data from the event for a mail line: plain, one line, bounded."""
    return one_line("" if value is None else str(value), limit)


def _facts(event: Event) -> tuple[str, list[tuple[str, str]], str]:
    """(title, [(label, value)], longer text) of an event, for both parts of the message."""
    body = event.body or {}
    if event.body_schema == events.OCSF_SCHEMA:
        info = body.get("finding_info") or {}
        resource = (body.get("resources") or [{}])[0]
        extra = body.get("unmapped") or {}
        compliance = body.get("compliance") or {}
        facts = [
            ("Severity", _text(event.severity)),
            ("Rule", _text(compliance.get("control"))),
            ("Account", _text(event.account)),
            ("Region", _text(resource.get("region"))),
            ("Resource", _text(resource.get("name") or resource.get("uid"))),
            ("Resource id", _text(resource.get("uid"))),
            ("Controls", _text(", ".join(map(str, compliance.get("requirements") or [])))),
            ("Status", _text(body.get("status"))),
            ("Event id", event.id),
        ]
        detail = extra.get("detail") or ""
        remediation = (body.get("remediation") or {}).get("desc") or ""
        longer = "\n\n".join(
            part
            for part in (
                _text(detail, 4000),
                f"Remediation: {_text(remediation, 4000)}" if remediation else "",
            )
            if part
        )
        return _text(info.get("title"), MAX_SUBJECT), facts, longer
    facts = [
        ("Severity", _text(event.severity)),
        ("Account", _text(event.account)),
        ("Event id", event.id),
    ]
    return _text(event.kind), facts, json.dumps(body, indent=2, sort_keys=True)[:20000]


def message_for(event: Event, *, sender: str, to: list[str]) -> EmailMessage:
    """The message for one event: plain text, and HTML with every value escaped."""
    title, facts, longer = _facts(event)
    what = _WHAT.get(event.kind, event.kind)
    message = EmailMessage()
    message["Subject"] = one_line(
        f"[compliancebot] {event.severity.upper()} {what}: {title}", MAX_SUBJECT
    )
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(event.occurred_at)
    message["Message-ID"] = f"<{event.id}@{sender.rsplit('@', 1)[1]}>"
    message["X-Compliancebot-Event-Id"] = event.id
    message["X-Compliancebot-Event-Kind"] = event.kind
    lines = [f"{what.capitalize()}: {title}", ""]
    lines += [f"{label}: {value}" for label, value in facts if value]
    if longer:
        lines += ["", longer]
    message.set_content("\n".join(lines) + "\n")
    rows = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in facts
        if value
    )
    message.add_alternative(
        "<!doctype html><html><body>"
        f"<h2>{html.escape(what.capitalize())}: {html.escape(title)}</h2>"
        f"<table>{rows}</table>"
        + (f"<pre>{html.escape(longer)}</pre>" if longer else "")
        + "</body></html>",
        subtype="html",
    )
    return message


def _counts(by_severity: Any) -> str:
    if not isinstance(by_severity, dict) or not by_severity:
        return "none"
    return ", ".join(f"{_text(sev, 16)}: {_text(n, 12)}" for sev, n in by_severity.items())


def _total(by_severity: Any) -> int:
    if not isinstance(by_severity, dict):
        return 0
    return sum(n for n in by_severity.values() if isinstance(n, int))


def _finding_line(f: Any) -> str:
    f = f if isinstance(f, dict) else {}
    return (
        f"[{_text(f.get('severity'), 16)}] {_text(f.get('title'), 200)} - "
        f"{_text(f.get('resource'), 200)} ({_text(f.get('account'), 64)} "
        f"{_text(f.get('region'), 32)}), since {_text(f.get('first_seen'), 32)[:10]}"
    )


def _task_line(t: Any) -> str:
    t = t if isinstance(t, dict) else {}
    who = f", {_text(t.get('assignee'), 64)}" if t.get("assignee") else ""
    return (
        f"{_text(t.get('task_id'), 80)} due {_text(t.get('due_on'), 10)} "
        f"({_text(t.get('days_late'), 6)} days late{who})"
    )


def digest_message(payload: dict[str, Any], *, sender: str) -> EmailMessage:
    """A digest (ledger.events.digest, as recorded for one recipient): text and HTML."""
    summary = payload.get("digest") or {}
    period = _text(payload.get("period"), 16)
    recipient = str(payload.get("to"))
    opened = _total(summary.get("open_by_severity"))
    critical = (summary.get("open_by_severity") or {}).get("critical", 0)
    new = _total(summary.get("new_by_severity"))
    breaches = _total(summary.get("sla_breaches_by_severity"))
    overdue = summary.get("overdue_tasks_total", 0)
    sections: list[tuple[str, str, list[str]]] = [
        ("Open findings", _counts(summary.get("open_by_severity")), []),
        (
            f"New this period ({new})",
            _counts(summary.get("new_by_severity")),
            [_finding_line(f) for f in summary.get("new") or []],
        ),
        (
            f"Past their remediation SLA ({breaches})",
            _counts(summary.get("sla_breaches_by_severity")),
            [_finding_line(f) for f in summary.get("sla_breaches") or []],
        ),
        (
            f"Overdue tasks ({_text(overdue, 12)})",
            "",
            [_task_line(t) for t in summary.get("overdue_tasks") or []],
        ),
    ]
    message = EmailMessage()
    message["Subject"] = one_line(
        f"[compliancebot] {period.capitalize()} digest: {opened} open ({critical} critical), "
        f"{new} new, {breaches} past SLA, {overdue} overdue tasks",
        MAX_SUBJECT,
    )
    message["From"] = sender
    message["To"] = recipient
    key = f"{period}:{summary.get('until')}:{recipient}".encode()
    message["Message-ID"] = (
        f"<digest-{hashlib.sha256(key).hexdigest()[:32]}@{sender.rsplit('@', 1)[1]}>"
    )
    span = f"{_text(summary.get('since'), 32)} to {_text(summary.get('until'), 32)}"
    lines = [f"Compliance digest, {span}", ""]
    for title, counts, items in sections:
        lines.append(f"{title}: {counts}" if counts else title)
        lines += [f"  - {item}" for item in items]
        lines.append("")
    message.set_content("\n".join(lines))
    parts = [f"<h2>Compliance digest</h2><p>{html.escape(span)}</p>"]
    for title, counts, items in sections:
        parts.append(f"<h3>{html.escape(title)}</h3>")
        if counts:
            parts.append(f"<p>{html.escape(counts)}</p>")
        if items:
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
    message.add_alternative(
        "<!doctype html><html><body>" + "".join(parts) + "</body></html>", subtype="html"
    )
    return message


def _said(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return one_line(text, MAX_MESSAGE) or "(no message)"


class EmailSink:
    """Sends each event as a message (OutboxSink); the server accepting it is delivered."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        to: list[str],
        clock: Callable[[], datetime],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        name: str = "email",
    ) -> None:
        self._name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.to = list(to)
        self.clock = clock
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout = timeout
        self.tls = tls or ssl.create_default_context()
        self._lease = timedelta(seconds=timeout * 4 + 60)

    @property
    def name(self) -> str:
        """The outbox's sink name."""
        return self._name

    @property
    def lease(self) -> timedelta:
        """Longer than the slowest conversation."""
        return self._lease

    def deliver(self, session: Session, item: OutboxItem) -> dict[str, Any]:
        """Send the item's event as a message (OutboxSink)."""
        if item.kind == events.DIGEST_KIND:
            message = digest_message(item.payload, sender=self.sender)
        else:
            event = events.get(session, str(item.payload.get("event")))
            if event is None:
                return {"skipped": "the event no longer exists"}
            message = message_for(event, sender=self.sender, to=self.to)
        where = f"the SMTP server {self.host}:{self.port}"
        try:
            refused = self._send(message, where)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _said_ in exc.recipients.values()]
            said = "; ".join(
                f"{to}: {code} {_said(text)}" for to, (code, text) in exc.recipients.items()
            )
            if any(400 <= code < 500 for code in codes):
                raise RetryLater(f"{where} refused every recipient for now: {said}") from exc
            raise Refused(f"{where} refused every recipient: {said}", error="smtp_rcpt") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise Refused(
                f"{where} refused the login of {self.username}: {exc.smtp_code} "
                f"{_said(exc.smtp_error)}",
                error="smtp_auth",
            ) from exc
        except smtplib.SMTPResponseException as exc:
            text = f"{where} answered {exc.smtp_code} {_said(exc.smtp_error)}"
            if exc.smtp_code >= 500:
                raise Refused(text, error=f"smtp_{exc.smtp_code}") from exc
            raise RetryLater(text, error=f"smtp_{exc.smtp_code}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise Refused(f"{where}: {_said(str(exc))}", error="smtp_unsupported") from exc
        except ssl.SSLError as exc:
            raise Refused(
                f"{where}: TLS failed ({_said(exc.reason or type(exc).__name__)})",
                error="smtp_tls",
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Disconnected, timed out, refused: the server may have taken it or not; a resend
            # has the same Message-ID.
            raise RetryLater(
                f"{where}: connection failed ({type(exc).__name__})", error="connection"
            ) from exc
        result: dict[str, Any] = {"message_id": message["Message-ID"]}
        if refused:
            result["refused"] = {
                to: f"{code} {_said(text)}" for to, (code, text) in refused.items()
            }
        return result

    def _send(self, message: EmailMessage, where: str) -> dict[str, tuple[int, bytes]]:
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.starttls:
                if not smtp.has_extn("starttls"):
                    # Never fall back to plain text: the password and the findings would go
                    # over the wire readable.
                    raise Refused(
                        f"{where} does not offer STARTTLS; nothing was sent (plain SMTP only "
                        "to 127.0.0.1 with events.email.allow_plaintext_loopback)",
                        error="smtp_no_starttls",
                    )
                smtp.starttls(context=self.tls)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password or "")
            return smtp.send_message(message)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def build_sink(section: EmailSettings, *, clock: Callable[[], datetime]) -> EmailSink:
    """The sink as configured (checked by EmailSettings: host, sender and recipients set)."""
    if section.host is None or section.sender is None:
        raise ValueError("events.email needs its host and sender")
    return EmailSink(
        host=section.host,
        port=section.port,
        sender=section.sender,
        to=list(section.to),
        clock=clock,
        username=section.username,
        password=section.password.get_secret_value() if section.password else None,
        starttls=section.starttls,
        timeout=section.timeout,
    )
