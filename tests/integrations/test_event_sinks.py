"""The event sinks through the one outbox worker to real local receivers: a webhook that checks
the signature, a Splunk HEC, an SMTP server. Every event arrives, none is lost, a lost answer is
resent with the same id, Retry-After is honoured, and a refusal is kept with its message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.server import build_services
from bot.settings import Settings
from integrations.delivery import OutboxSink, OutboxWorker
from integrations.email_sink import EmailSettings, EmailSink
from integrations.splunk_sink import SplunkSink
from integrations.webhook_sink import WebhookSettings, WebhookSink
from ledger import events, outbox
from ledger.db import transaction
from ledger.events import NewEvent, Stream, Subscription
from ledger.models import Event, Finding, OutboxItem, OutboxStatus
from rules.catalog import Severity, load_catalog
from tests.conftest import FakeClock
from tests.fakes.event_receiver import Answer, FakeHec, WebhookReceiver
from tests.fakes.smtp import FakeSmtp
from tests.ledger.helpers import obs, scan

SECRET = "s3cr3t-" + "x" * 32
TOKEN = "11111111-2222-3333-4444-555555555555"
HOSTILE = "<script>alert(1)</script> \x1b[2J\u202e [link=https://evil]x[/link] & *bold*"


# ---- helpers -------------------------------------------------------------------------------------


def record(
    sessions: sessionmaker[Session], clock: FakeClock, sinks: list[str], n: int = 1
) -> list[str]:
    """`n` scan events recorded for `sinks`, as a ledger change would record them."""
    with transaction(sessions) as session:
        return events.record_many(
            session,
            [
                NewEvent(
                    kind="scan.finished",
                    occurred_at=clock(),
                    severity="info",
                    body={"schema": events.EVENT_SCHEMA, "kind": "scan.finished", "n": i},
                )
                for i in range(n)
            ],
            sinks=[Subscription(sink=s) for s in sinks],
        )


def items(sessions: sessionmaker[Session], sink: str) -> list[OutboxItem]:
    with sessions() as session:
        rows = list(
            session.scalars(
                select(OutboxItem).where(OutboxItem.sink == sink).order_by(OutboxItem.id)
            )
        )
        for row in rows:
            session.expunge(row)
    return rows


def statuses(sessions: sessionmaker[Session], sink: str) -> list[str]:
    return [str(i.status) for i in items(sessions, sink)]


@pytest.fixture
def receiver(clock: FakeClock) -> Iterator[WebhookReceiver]:
    """A webhook endpoint on 127.0.0.1 checking signatures against the test's clock."""
    server = WebhookReceiver(SECRET, clock)
    yield server
    server.stop()


@pytest.fixture
def hec() -> Iterator[FakeHec]:
    """A Splunk HTTP Event Collector on 127.0.0.1."""
    server = FakeHec(TOKEN)
    yield server
    server.stop()


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    """An SMTP server on 127.0.0.1 (no STARTTLS offered)."""
    server = FakeSmtp().start()
    yield server
    server.stop()


def worker_for(sessions: sessionmaker[Session], clock: FakeClock, sink: OutboxSink) -> OutboxWorker:
    worker = OutboxWorker(sessions=sessions, clock=clock)
    worker.add(sink)
    return worker


def webhook(receiver: WebhookReceiver, clock: FakeClock, **kw: object) -> WebhookSink:
    options: dict[str, object] = {
        "url": receiver.url,
        "secret": SECRET,
        "clock": clock,
        "timeout": 5.0,
    }
    options.update(kw)
    return WebhookSink(**options)  # type: ignore[arg-type]


# ---- webhook -------------------------------------------------------------------------------------


def test_the_composition_root_registers_the_enabled_sinks_and_records_for_them(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """events.webhook enabled: a change's event reaches the receiver through the one worker."""
    settings = Settings(
        events={"webhook": {"enabled": True, "url": receiver.url, "secret": SECRET}}
    )
    services = build_services(
        settings=settings, catalog=load_catalog(), engine=sessions.kw["bind"], clock=clock
    )
    assert "webhook" in services.outbox.sinks
    scan(services.sessions, clock, [obs("vol-1", severity="critical")])
    with transaction(services.sessions) as session:
        finding = session.scalars(select(Finding)).one()
        event_id = events.record_finding(
            session, kind="finding.claimed", finding=finding, now=clock(), actor="U123"
        )

    done = services.deliver_round()

    # The scan told its start, the new finding and its end; the claim its own.
    assert done["webhook"]["delivered"] == 4
    assert event_id in receiver.ids
    assert sorted(b["kind"] for b in receiver.bodies.values()) == [
        "finding.claimed",
        "finding.created",
        "scan.finished",
        "scan.started",
    ]
    sent = receiver.bodies[str(event_id)]
    assert sent["kind"] == "finding.claimed"
    assert sent["schema"] == "ocsf/1.1.0/2003"
    assert sent["body"]["class_uid"] == 2003
    assert sent["body"]["metadata"]["uid"] == event_id


def test_each_event_is_delivered_once_signed(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """Five events: the receiver verifies each signature and takes each id once."""
    ids = record(sessions, clock, ["webhook"], n=5)
    worker = worker_for(sessions, clock, webhook(receiver, clock))

    first = worker.run_once()
    second = worker.run_once()

    assert first["webhook"]["delivered"] == 5
    assert second["webhook"]["delivered"] == 0
    assert receiver.ids == set(ids)
    assert receiver.duplicates == 0
    assert receiver.refused == []
    assert statuses(sessions, "webhook") == ["delivered"] * 5


def test_a_429_retry_after_is_honoured_to_the_second(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """429 with Retry-After: 30: nothing is sent before 30 s, then the event goes."""
    ids = record(sessions, clock, ["webhook"])
    receiver.answer_next(Answer(429, b'{"message":"slow down"}', {"Retry-After": "30"}))
    worker = worker_for(sessions, clock, webhook(receiver, clock))

    assert worker.run_once()["webhook"]["retrying"] == 1
    clock.advance(seconds=29)
    worker.run_once()
    assert receiver.requests == 1
    clock.advance(seconds=1)
    worker.run_once()

    assert receiver.ids == set(ids)
    (item,) = items(sessions, "webhook")
    assert item.status == OutboxStatus.delivered
    assert item.attempts == 2


def test_a_503_is_retried_with_backoff(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """A 503 without Retry-After: retried after the backoff, then delivered."""
    ids = record(sessions, clock, ["webhook"])
    receiver.answer_next(Answer(503, b"upstream unavailable"))
    worker = worker_for(sessions, clock, webhook(receiver, clock))

    worker.run_once()
    (item,) = items(sessions, "webhook")
    assert item.last_error == "the webhook answered HTTP 503: upstream unavailable"
    clock.advance(seconds=outbox.BACKOFF_BASE_SECONDS)
    worker.run_once()

    assert receiver.ids == set(ids)
    assert statuses(sessions, "webhook") == ["delivered"]


def test_a_reset_after_the_receiver_acted_is_resent_and_deduped_by_event_id(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """The receiver takes two events and the connection drops before its answers: both are
    sent again with the same ids, so the receiver's set of ids is complete with no extra one."""
    ids = record(sessions, clock, ["webhook"], n=3)
    receiver.answer_next(Answer(reset_after_acting=True), Answer(reset_after_acting=True))
    worker = worker_for(sessions, clock, webhook(receiver, clock))

    worker.run_once()
    clock.advance(minutes=1)
    worker.run_once()

    assert receiver.ids == set(ids)  # every event arrived, and no id it does not know
    assert len(receiver.taken) == 5  # two were sent twice: the receiver drops them by id
    assert receiver.duplicates == 2
    assert statuses(sessions, "webhook") == ["delivered"] * 3
    resent = [i.result["resent"] for i in items(sessions, "webhook")]
    assert sorted(resent) == [False, True, True]


def test_a_receiver_refusing_forever_leaves_the_event_failed_with_its_message(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """400 forever: the item is failed, not retried alone, and `stuck` shows the message."""
    record(sessions, clock, ["webhook"])
    receiver.answer_always(Answer(400, b'{"message":"unknown field \\"severity\\""}'))
    worker = worker_for(sessions, clock, webhook(receiver, clock))

    worker.run_once()
    clock.advance(hours=2)
    worker.run_once()

    assert receiver.requests == 1
    with sessions() as session:
        (stuck,) = outbox.stuck(session=session, sink="webhook")
        assert stuck.status == OutboxStatus.failed
        assert stuck.last_error == 'the webhook answered HTTP 400: unknown field "severity"'


def test_forged_and_oversized_answers_are_bounded_and_never_trusted(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """A 5 MB 422 full of terminal escapes and markup, and a JSON 400 whose message holds
    escapes: each kept message is one bounded line without control characters or bidi
    overrides; a 5 MB 200 is delivered, its body not read past the cap."""
    record(sessions, clock, ["webhook"], n=3)
    huge = ('{"message":"' + (HOSTILE + "\\n\\r") * 60_000 + '"}').encode()
    forged = json.dumps({"message": HOSTILE + "\n" + "z" * 10_000, "error": "ignored"})
    receiver.answer_next(
        Answer(422, huge), Answer(400, forged.encode()), Answer(200, b"A" * 5_000_000)
    )
    worker = worker_for(sessions, clock, webhook(receiver, clock))

    worker.run_once()

    truncated, parsed, delivered = items(sessions, "webhook")
    for refused in (truncated, parsed):
        assert refused.status == OutboxStatus.failed
        error = str(refused.last_error)
        assert error.startswith("the webhook answered HTTP 4")
        assert "<script>alert(1)</script>" in error
        assert len(error) <= 400
        assert not any(c in error for c in "\x1b\n\r\u202e")
    assert str(parsed.last_error).startswith("the webhook answered HTTP 400: <script>")
    assert delivered.status == OutboxStatus.delivered


def test_a_redirect_is_not_followed(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """A 302 elsewhere: the signed event is not sent there; the item is refused, with why."""
    record(sessions, clock, ["webhook"])
    receiver.answer_next(Answer(302, b"", {"Location": "http://127.0.0.1:1/steal"}))
    worker_for(sessions, clock, webhook(receiver, clock)).run_once()

    (item,) = items(sessions, "webhook")
    assert item.status == OutboxStatus.failed
    assert item.last_error == "the webhook answered HTTP 302: (no message)"


def test_a_wrong_secret_or_a_stale_clock_is_refused_by_the_receiver(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """A forged signature (another secret) and a timestamp outside the replay window: the
    receiver refuses both and takes nothing."""
    record(sessions, clock, ["webhook"], n=1)
    record(sessions, clock, ["late"], n=1)
    stale = FakeClock(clock.now.replace(year=2026, month=10))
    worker = OutboxWorker(sessions=sessions, clock=clock)
    worker.add(webhook(receiver, clock, secret="another-secret-" + "y" * 32))
    worker.add(webhook(receiver, stale, name="late"))

    worker.run_once()

    assert receiver.ids == set()
    assert sorted(receiver.refused) == ["bad signature", "stale timestamp"]
    (forged,) = items(sessions, "webhook")
    (late,) = items(sessions, "late")
    assert forged.last_error == "the webhook answered HTTP 401: bad signature"
    assert late.last_error == "the webhook answered HTTP 400: stale timestamp"


def test_an_unreachable_receiver_is_retried_and_nothing_is_lost(
    sessions: sessionmaker[Session], clock: FakeClock, receiver: WebhookReceiver
) -> None:
    """Nobody listening: the events wait (retrying); once the receiver is back they arrive."""
    ids = record(sessions, clock, ["webhook"], n=2)
    down = webhook(receiver, clock, url="http://127.0.0.1:9/hooks")  # the discard port: closed
    worker = worker_for(sessions, clock, down)
    worker.run_once()
    assert statuses(sessions, "webhook") == ["pending", "pending"]
    assert items(sessions, "webhook")[0].last_error == (
        "the webhook: connection failed (ConnectError)"
    )

    worker.add(webhook(receiver, clock))
    clock.advance(minutes=1)
    worker.run_once()

    assert receiver.ids == set(ids)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://siem.example.com/hook", "https URL"),
        ("https://user:pw@siem.example.com/hook", "plain URL"),
        ("https://siem.example.com/hook?token=abc", "plain URL"),
        ("ftp://siem.example.com/", "https URL"),
        ("https:///nohost", "https URL"),
    ],
)
def test_webhook_urls_must_be_https_and_plain(url: str, problem: str) -> None:
    """http is refused off the machine, and so are credentials or a query in the URL."""
    with pytest.raises(ValueError, match=problem):
        WebhookSettings(enabled=True, url=url)
    assert WebhookSettings(enabled=True, url="http://127.0.0.1:8080/hook").url


def test_the_webhook_secret_is_asked_for_by_its_variable() -> None:
    """Enabled without a secret: the message names COMPLIANCEBOT_EVENTS__WEBHOOK__SECRET."""
    (problem,) = WebhookSettings(enabled=True, url="https://x.example/h").missing_secrets()
    assert "COMPLIANCEBOT_EVENTS__WEBHOOK__SECRET" in problem


# ---- Splunk HEC ----------------------------------------------------------------------------------


def splunk(hec: FakeHec, clock: FakeClock, **kw: object) -> SplunkSink:
    options: dict[str, object] = {
        "url": hec.url,
        "token": TOKEN,
        "clock": clock,
        "index": "security",
    }
    options.update(kw)
    return SplunkSink(**options)  # type: ignore[arg-type]


def test_splunk_receives_each_event_with_its_id_and_ack(
    sessions: sessionmaker[Session], clock: FakeClock, hec: FakeHec
) -> None:
    """HEC gets the event body, its id and kind as fields, the channel; the ackId is kept."""
    ids = record(sessions, clock, ["splunk"], n=3)
    channel = "0c1d2e3f-0000-4000-8000-000000000001"
    worker_for(sessions, clock, splunk(hec, clock, channel=channel)).run_once()

    assert hec.ids == set(ids)
    assert hec.duplicates == 0
    assert hec.channels == [channel] * 3
    first = hec.events[0]
    assert first["index"] == "security"
    assert first["sourcetype"] == "compliancebot:event"
    assert first["event"]["kind"] == "scan.finished"
    assert first["time"] == clock().timestamp()
    # One request carried the three (events.splunk.batch_size): one ackId for all of them.
    assert hec.requests == 1
    assert [i.result["ack_id"] for i in items(sessions, "splunk")] == [1, 1, 1]
    assert [i.result["batch"] for i in items(sessions, "splunk")] == [3, 3, 3]


def test_splunk_batches_are_cut_at_batch_size_and_a_refusal_fails_its_whole_batch(
    sessions: sessionmaker[Session], clock: FakeClock, hec: FakeHec
) -> None:
    """Five events with batch_size 2: three requests; HEC refusing the second request fails
    exactly the two events in it, with Splunk's message, and delivers the rest."""
    record(sessions, clock, ["splunk"], n=5)
    hec.answer_next(Answer(200, b""), Answer(400, b'{"text":"Incorrect index","code":7}'))
    sink = splunk(hec, clock)
    sink._batch_size = 2
    worker_for(sessions, clock, sink).run_once()
    assert hec.requests == 3
    outcomes = sorted((i.status, i.last_error or "") for i in items(sessions, "splunk"))
    assert outcomes == [
        ("delivered", ""),
        ("delivered", ""),
        ("delivered", ""),
        ("failed", "Splunk answered HTTP 400: Incorrect index"),
        ("failed", "Splunk answered HTTP 400: Incorrect index"),
    ]


def test_splunk_busy_is_waited_out(
    sessions: sessionmaker[Session], clock: FakeClock, hec: FakeHec
) -> None:
    """HEC's 503 "Server is busy" with Retry-After 20, then 429: each waited out, delivered."""
    ids = record(sessions, clock, ["splunk"])
    hec.answer_next(
        Answer(503, b'{"text":"Server is busy","code":9}', {"Retry-After": "20"}),
        Answer(429, b'{"text":"Too many requests","code":9}', {"Retry-After": "5"}),
    )
    worker = worker_for(sessions, clock, splunk(hec, clock))

    worker.run_once()
    (item,) = items(sessions, "splunk")
    assert item.last_error == "Splunk answered HTTP 503: Server is busy"
    clock.advance(seconds=19)
    worker.run_once()
    assert hec.requests == 1
    clock.advance(seconds=1)
    worker.run_once()
    clock.advance(seconds=5)
    worker.run_once()

    assert hec.ids == set(ids)
    assert statuses(sessions, "splunk") == ["delivered"]


def test_a_wrong_hec_token_is_refused_with_splunks_message(
    sessions: sessionmaker[Session], clock: FakeClock, hec: FakeHec
) -> None:
    """A wrong token: 403 "Invalid token", kept as failed for `outbox status`."""
    record(sessions, clock, ["splunk"])
    worker_for(sessions, clock, splunk(hec, clock, token="wrong")).run_once()

    with sessions() as session:
        (stuck,) = outbox.stuck(session=session, sink="splunk")
    assert stuck.status == OutboxStatus.failed
    assert stuck.last_error == "Splunk answered HTTP 403: Invalid token"
    assert hec.ids == set()


def test_a_2xx_that_says_it_failed_is_not_taken_as_delivered(
    sessions: sessionmaker[Session], clock: FakeClock, hec: FakeHec
) -> None:
    """A proxy's 200 with HEC code 6 (invalid data): refused with the text, not delivered."""
    record(sessions, clock, ["splunk"])
    hec.answer_next(Answer(200, b'{"text":"Invalid data format","code":6}'))
    worker_for(sessions, clock, splunk(hec, clock)).run_once()

    (item,) = items(sessions, "splunk")
    assert item.status == OutboxStatus.failed
    assert item.last_error == "Splunk answered code 6: Invalid data format"


# ---- e-mail --------------------------------------------------------------------------------------


def email(smtp: FakeSmtp, clock: FakeClock, **kw: object) -> EmailSink:
    options: dict[str, object] = {
        "host": "127.0.0.1",
        "port": smtp.port,
        "sender": "compliancebot@example.com",
        "to": ["security@example.com", "cto@example.com"],
        "clock": clock,
        "starttls": False,
        "timeout": 5.0,
    }
    options.update(kw)
    return EmailSink(**options)  # type: ignore[arg-type]


def critical_finding_events(
    sessions: sessionmaker[Session], clock: FakeClock, sub: Subscription
) -> list[str]:
    """A scan finding one critical (with a hostile title) and one high finding: the ids of the
    two finding.created events the scan recorded, critical first."""
    events.use_stream(sessions, Stream(sinks=(sub,), rules=load_catalog().rule))
    scan(
        sessions,
        clock,
        [obs("vol-1", severity="critical", title=HOSTILE), obs("vol-2", severity="high")],
    )
    with sessions() as session:
        created = session.scalars(
            select(Event).where(Event.kind == "finding.created").order_by(Event.subject)
        ).all()
        return [e.id for e in sorted(created, key=lambda e: e.severity != "critical")]


def test_a_critical_new_finding_is_mailed_at_once_as_text_and_html(
    sessions: sessionmaker[Session], clock: FakeClock, smtp: FakeSmtp
) -> None:
    """The default e-mail filter takes the critical finding only; the message has a plain and
    an HTML part, the hostile title escaped in HTML, and its Message-ID is the event id."""
    sub = EmailSettings(
        enabled=True,
        host="127.0.0.1",
        sender="a@example.com",
        to=["b@example.com"],
        starttls=False,
        allow_plaintext_loopback=True,
    ).subscription("email")
    critical, _high = critical_finding_events(sessions, clock, sub)
    worker_for(sessions, clock, email(smtp, clock)).run_once()

    (message,) = smtp.messages
    assert isinstance(message, EmailMessage)
    assert smtp.envelopes == [
        ("compliancebot@example.com", ["security@example.com", "cto@example.com"])
    ]
    assert message["Subject"].startswith("[compliancebot] CRITICAL new finding: <script>")
    assert "\x1b" not in message["Subject"]
    assert message["Message-ID"] == f"<{critical}@example.com>"
    assert message["X-Compliancebot-Event-Id"] == critical
    text = message.get_body(("plain",))
    markup = message.get_body(("html",))
    assert text is not None
    assert markup is not None
    assert "Severity: critical" in text.get_content()
    html_part = markup.get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_part
    assert "<script>" not in html_part
    assert len(items(sessions, "email")) == 1


def test_a_server_without_starttls_gets_nothing(
    sessions: sessionmaker[Session], clock: FakeClock, smtp: FakeSmtp
) -> None:
    """STARTTLS required and not offered: refused with why; no message, no password sent."""
    record(sessions, clock, ["email"])
    sink = email(smtp, clock, starttls=True, username="bot", password="hunter2")
    worker_for(sessions, clock, sink).run_once()

    (item,) = items(sessions, "email")
    assert item.status == OutboxStatus.failed
    assert item.last_error is not None
    assert "does not offer STARTTLS; nothing was sent" in item.last_error
    assert smtp.messages == []


def test_smtp_refusals_and_temporary_failures(
    sessions: sessionmaker[Session], clock: FakeClock, smtp: FakeSmtp
) -> None:
    """A 451 on DATA is retried and then delivered; a 550 for the recipients is refused."""
    record(sessions, clock, ["email"])
    smtp.refuse_data.append("451 4.3.0 Try again later")
    worker = worker_for(sessions, clock, email(smtp, clock))
    worker.run_once()
    (item,) = items(sessions, "email")
    assert item.status == OutboxStatus.pending
    assert "451 4.3.0 Try again later" in str(item.last_error)
    clock.advance(minutes=1)
    worker.run_once()
    assert statuses(sessions, "email") == ["delivered"]
    assert len(smtp.messages) == 1

    record(sessions, clock, ["email"])
    smtp.refuse_rcpt = "550 5.1.1 <security@example.com>: no such user \x1b[2J"
    worker.run_once()

    refused = items(sessions, "email")[1]
    assert refused.status == OutboxStatus.failed
    assert "refused every recipient" in str(refused.last_error)
    assert "550" in str(refused.last_error)
    assert "\x1b" not in str(refused.last_error)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (
            {"host": "smtp.example.com", "starttls": False, "allow_plaintext_loopback": True},
            "plain SMTP",
        ),
        ({"host": "127.0.0.1", "starttls": False}, "plain SMTP"),
        ({"host": "smtp.example.com", "to": []}, "are not all set"),
        ({"host": "smtp.example.com", "to": ["x@y.com\r\nBcc: all@evil.com"]}, "pattern"),
    ],
)
def test_email_settings_refuse_plain_smtp_and_injected_addresses(
    values: dict[str, object], problem: str
) -> None:
    """Plain SMTP only to 127.0.0.1 and only when asked; header injection in an address fails."""
    base: dict[str, object] = {
        "enabled": True,
        "sender": "bot@example.com",
        "to": ["sec@example.com"],
    }
    with pytest.raises(ValueError, match=problem):
        EmailSettings(**{**base, **values})


def test_an_unknown_event_kind_in_a_filter_names_the_known_ones() -> None:
    """A typo in events.<sink>.kinds is a configuration error listing the kinds."""
    with pytest.raises(ValueError, match=r"finding\.created"):
        WebhookSettings(kinds=["finding.craeted"])
    assert Severity.critical in {EmailSettings().min_severity}


def test_splunk_answers_are_read_no_further_than_the_cap() -> None:
    """The capped reader stops early on an endless body (no gigabytes in memory)."""
    from integrations.event_sink import MAX_ANSWER_BYTES, read_capped

    def endless() -> Iterator[bytes]:
        while True:
            yield b"x" * 65536

    response = httpx.Response(200, content=endless())
    assert len(read_capped(response)) == MAX_ANSWER_BYTES
    assert datetime.now(UTC).year >= 2026


# ---- settings ------------------------------------------------------------------------------------


def test_event_secrets_come_from_the_environment_never_the_config_file(tmp_path: Path) -> None:
    """A secret in the config file is refused naming its variable; from the environment it
    is taken; a sink enabled without its secret names the variable to set."""
    from bot.settings import ConfigError, load_settings

    config = tmp_path / "compliancebot.yaml"
    config.write_text(
        "events:\n  webhook:\n    enabled: true\n    url: https://x.example/h\n"
        f"    secret: {SECRET}\n"
    )
    with pytest.raises(ConfigError, match="COMPLIANCEBOT_EVENTS__WEBHOOK__SECRET"):
        load_settings(config, environ={})

    config.write_text("events:\n  webhook:\n    enabled: true\n    url: https://x.example/h\n")
    loaded = load_settings(config, environ={"COMPLIANCEBOT_EVENTS__WEBHOOK__SECRET": SECRET})
    assert loaded.events.webhook.secret is not None
    assert loaded.events.webhook.secret.get_secret_value() == SECRET
    assert loaded.events.enabled() == ["webhook"]
    with pytest.raises(ConfigError, match="COMPLIANCEBOT_EVENTS__SPLUNK__TOKEN"):
        build_services(
            settings=Settings(events={"splunk": {"enabled": True, "url": "https://s.example"}}),
            catalog=load_catalog(),
            engine=__import__("sqlalchemy").create_engine("sqlite://"),
        )


def test_an_unknown_framework_in_a_filter_names_the_known_ones(
    sessions: sessionmaker[Session],
) -> None:
    """events.webhook.frameworks: [hipa]: the composition root refuses it, naming hipaa."""
    from bot.settings import ConfigError

    settings = Settings(
        events={
            "webhook": {
                "enabled": True,
                "url": "https://x.example/h",
                "secret": SECRET,
                "frameworks": ["hipa"],
            }
        }
    )
    with pytest.raises(ConfigError, match=r"events\.webhook\.frameworks: unknown.*hipaa"):
        build_services(settings=settings, catalog=load_catalog(), engine=sessions.kw["bind"])


def test_outbox_status_shows_each_event_sink_and_the_receivers_message(
    sessions: sessionmaker[Session],
    clock: FakeClock,
    receiver: WebhookReceiver,
    hec: FakeHec,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`compliancebot outbox status` lists the webhook and Splunk sinks with their counts and
    the refused event with the far side's words."""
    from typer.testing import CliRunner

    from bot.cli import app

    ids = record(sessions, clock, ["webhook", "splunk"], n=2)
    receiver.answer_always(Answer(400, b'{"message":"no such tenant"}'))
    worker = OutboxWorker(sessions=sessions, clock=clock)
    worker.add(webhook(receiver, clock))
    worker.add(splunk(hec, clock))
    worker.run_once()

    monkeypatch.setenv("COMPLIANCEBOT_DATABASE__URL", db_url)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    status = CliRunner().invoke(app, ["outbox", "status"], catch_exceptions=False)

    assert status.exit_code == 0, status.output
    assert "splunk: 0 pending, 2 delivered, 0 failed" in status.stdout
    assert "webhook: 0 pending, 0 delivered, 2 failed" in status.stdout
    for event_id in ids:
        assert (
            f"event:webhook:{event_id} (failed, 1 attempt(s)): the webhook answered HTTP 400: "
            "no such tenant" in status.stdout
        )


def test_a_daily_digest_goes_to_each_recipient_once_as_text_and_html(
    sessions: sessionmaker[Session], clock: FakeClock, smtp: FakeSmtp
) -> None:
    """Open findings by severity, the ones new today, SLA breaches and overdue tasks, one
    message per recipient; the job run twice the same day records nothing more."""
    from datetime import date, timedelta

    from bot.server import send_digest
    from ledger.models import TaskOccurrence

    scan(sessions, clock, [obs("vol-old", severity="critical")])  # 10 days old by the digest
    clock.advance(days=9, hours=12)
    scan(
        sessions,
        clock,
        [
            obs("vol-old", severity="critical"),
            obs("vol-new", severity="high", title=HOSTILE),
            obs("vol-2", severity="low"),
        ],
    )
    with transaction(sessions) as session:
        session.add(
            TaskOccurrence(
                task_id="access_review",
                due_on=date(2026, 11, 5),
                due_at=clock() - timedelta(days=3),
                status="open",
                assignee="U42",
                created_at=clock(),
            )
        )
    clock.advance(hours=12)
    recipients = ("security@example.com", "cto@example.com")
    for _ in range(2):
        send_digest(
            sessions=sessions,
            clock=clock,
            recipients=recipients,
            period="daily",
            sla_days={"critical": 7, "high": 30},
        )
    worker_for(sessions, clock, email(smtp, clock)).run_once()

    assert sorted(to for _sender, (to,) in smtp.envelopes) == sorted(recipients)
    message = smtp.messages[0]
    assert message["Subject"] == (
        "[compliancebot] Daily digest: 3 open (1 critical), 2 new, 1 past SLA, 1 overdue tasks"
    )
    text = message.get_body(("plain",))
    markup = message.get_body(("html",))
    assert text is not None
    assert markup is not None
    plain = text.get_content()
    assert "Open findings: critical: 1, high: 1, low: 1" in plain
    assert "Past their remediation SLA (1): critical: 1" in plain
    assert "access_review due 2026-11-05 (3 days late, U42)" in plain
    assert "\x1b" not in plain
    assert "&lt;script&gt;" in markup.get_content()
    assert "<script>" not in markup.get_content()
