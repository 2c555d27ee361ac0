"""Configuration: one YAML file, a secrets file, and COMPLIANCEBOT_* environment overrides.

Precedence, highest first: environment, secrets file, config file, embedded defaults.
No file at all is valid and means the embedded defaults.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, overload
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from integrations import trackers
from integrations.email_sink import EmailSettings
from integrations.event_sink import EventSinkSettings
from integrations.splunk_sink import SplunkSettings
from integrations.trackers import (
    GENERATE,
    TRACKERS,
    Secret,
    SecretKey,
    Tracker,
    TrackerSettings,
)
from integrations.trackers import unset_secrets as _unset
from integrations.webhook_sink import WebhookSettings
from ledger.services import MAX_ACCEPTANCE_DAYS, MAX_SNOOZE_DAYS
from rules.catalog import Severity
from rules.errors import CompliancebotError, format_path
from rules.redact import looks_like_url, mask_url, url_credentials
from rules.yamlfile import PathKey, YamlDoc, load_yaml
from scanners.host import fim as fim_scanner

# The prefix of every variable; the trackers name theirs in their messages with it too.
ENV_PREFIX = trackers.ENV_PREFIX
DEFAULT_CONFIG = Path("compliancebot.yaml")


class ConfigError(CompliancebotError):
    """The configuration is invalid; the message names the file:line or variable and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AwsTargetSettings(_Section):
    """One AWS account to scan."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    account_id: Annotated[str | None, Field(pattern=r"^\d{12}$")] = None
    regions: list[str] | Literal["all"] = ["us-east-1"]
    role_arn: Annotated[str | None, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")] = None
    external_id: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    global_region: str = "us-east-1"

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list):
            if not value:
                raise ValueError("list at least one region, or write 'all'")
            for region in value:
                if not region or not region.replace("-", "").isalnum() or region.count("-") < 2:
                    raise ValueError(f"{region!r} is not an AWS region name like us-east-1")
        return value


class AwsSettings(_Section):
    targets: list[AwsTargetSettings] = [AwsTargetSettings(name="default")]
    max_workers: Annotated[int, Field(ge=1, le=128)] = 16
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 8
    connect_timeout: Annotated[float, Field(gt=0, le=300)] = 5.0
    read_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    endpoint_url: str | None = None

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, value: list[AwsTargetSettings]) -> list[AwsTargetSettings]:
        names = [t.name for t in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"target names must be unique; repeated: {dupes}")
        return value


class DatabaseSettings(_Section):
    url: str = "sqlite:///compliancebot.db"

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        try:
            make_url(value)
        except ArgumentError as exc:
            raise ValueError(
                "not a database URL; e.g. sqlite:///compliancebot.db or "
                "postgresql://user@host:5432/compliancebot"
            ) from exc
        return value


class RulesSettings(_Section):
    paths: list[Path] = []
    disabled: list[str] = []
    severity: dict[str, Severity] = {}


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


def _slack_id(kind: str, prefixes: str, where: str) -> AfterValidator:
    pattern = re.compile(rf"^[{prefixes}][A-Z0-9]{{2,}}$")

    def check(value: str | None) -> str | None:
        if value is not None and not pattern.match(value):
            raise ValueError(
                f"{value!r} is not a Slack {kind} ID; use an ID like {prefixes[0]}0123ABCD "
                f"({where})"
            )
        return value

    return AfterValidator(check)


ChannelId = Annotated[str, _slack_id("channel", "CG", "channel details, bottom of the About tab")]
SlackUserId = Annotated[str, _slack_id("user", "UW", "profile > the ⋮ menu > Copy member ID")]


class SlackRoute(_Section):
    """Send findings that match every given filter to another channel."""

    channel: ChannelId
    accounts: list[str] = []
    severities: list[Severity] = []
    rules: list[str] = []

    def matches(self, *, account: str, severity: str, rule_id: str) -> bool:
        """True when every filter given accepts the finding."""
        return (
            (not self.accounts or account in self.accounts)
            and (not self.severities or severity in self.severities)
            and (not self.rules or rule_id in self.rules)
        )


class SlackSettings(_Section):
    enabled: bool = False
    mode: Literal["http", "socket"] = "http"
    api_url: str = "https://slack.com/api/"
    # The only origin evidence files are downloaded from, with the bot token (a proxy, a test
    # server): https, or http on a loopback address.
    files_url: str = "https://files.slack.com/"
    # Where people open Slack: links to the bot's messages (in tickets) start with it.
    workspace_url: str = "https://slack.com"
    bot_token: Secret = None
    signing_secret: Secret = None
    app_token: Secret = None
    command: Annotated[str, Field(pattern=r"^/[a-z0-9_-]{1,31}$")] = "/compliance"
    channel: ChannelId | None = None
    thread_findings: bool = True
    min_severity: Severity = Severity.high
    # A first scan can find thousands: past this many, the rest are reached from the summary.
    max_messages_per_scan: Annotated[int, Field(ge=0, le=1000)] = 50
    routes: list[SlackRoute] = []
    approvers: list[SlackUserId] = []
    approver_group: Annotated[
        str | None, _slack_id("user group", "S", "the group's URL ends with it")
    ] = None
    max_snooze_days: Annotated[int, Field(ge=1, le=365)] = MAX_SNOOZE_DAYS
    # A risk acceptance ends at most this many days ahead, from Slack or the CLI.
    max_acceptance_days: Annotated[int, Field(ge=1, le=3650)] = MAX_ACCEPTANCE_DAYS
    page_size: Annotated[int, Field(ge=1, le=20)] = 10
    max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    delivery_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # How old a status or list total may be after a change (0: always exact).
    cache_seconds: Annotated[float, Field(ge=0, le=300)] = 5.0

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("files_url")
    @classmethod
    def _files_url(cls, value: str) -> str:
        # The bot token goes to this origin: plain http only where nothing leaves the machine.
        parts = urlsplit(value)
        loopback = parts.hostname in {"127.0.0.1", "::1", "localhost"}
        if not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
            raise ValueError(
                "must be an https URL such as https://files.slack.com/ (http only on 127.0.0.1)"
            )
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must be a plain base URL, without user, query or fragment")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _channel_when_enabled(self) -> SlackSettings:
        # The secrets are asked for where they are used (missing_secrets), not here: every
        # command loads the settings, and `findings list` has no use for a bot token.
        if self.enabled and self.channel is None:
            raise ValueError("slack is enabled but slack.channel (a channel ID) is not set")
        return self

    def missing_secrets(self) -> list[str]:
        """The secrets Slack needs and lacks in its mode, naming their variables ([]: none)."""
        if not self.enabled:
            return []
        needed = ["bot_token", "signing_secret" if self.mode == "http" else "app_token"]
        missing = [("slack", name) for name in needed if getattr(self, name) is None]
        return [_unset(missing, f"Slack in {self.mode} mode needs")] if missing else []

    def channel_for(self, *, account: str, severity: str, rule_id: str) -> str | None:
        """The first matching route's channel, else the default channel."""
        for route in self.routes:
            if route.matches(account=account, severity=severity, rule_id=rule_id):
                return route.channel
        return self.channel


S = TypeVar("S", bound=TrackerSettings)


class TicketsSettings(BaseModel):
    """`tickets`: one sub-section per registered tracker (integrations.trackers), by its name.

    The sections are made from the registry when the settings are validated, each by its
    tracker's own model (`JiraSettings`...), so a new tracker is its module and nothing here.
    A name no tracker has is an error naming those there are.

    Reading a section: `settings.tickets.jira` works at runtime (each section is an extra
    attribute of the model, dumped and masked like a field) and, for mypy, `__getattr__` types
    it as the base `TrackerSettings`, the fields every tracker has (`enabled`, `users`,
    `webhook_secret`...). A tracker's own fields are read through its Tracker, typed:
    `settings.tickets.of(jira_sink.TRACKER)` is a `JiraSettings`. A model made with
    `create_model` plus typed accessors was the other way: it cannot know a tracker registered
    after it was made (a plug-in, the toy in the tests) and its accessors would name every
    tracker here again.
    """

    model_config = ConfigDict(extra="allow")

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> TrackerSettings: ...

    @model_validator(mode="before")
    @classmethod
    def _by_tracker(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data  # refused by pydantic as not a mapping, where it is
        known = _registered()
        names = [name for name, _model in known]
        problems: list[InitErrorDetails] = [
            {
                "type": PydanticCustomError(
                    "unknown_tracker",
                    "unknown tracker {name}; known: {known}",
                    {"name": repr(name), "known": ", ".join(names)},
                ),
                "loc": (str(name),),
                "input": value,
            }
            for name, value in data.items()
            if name not in names
        ]
        given = {name: value for name, value in data.items() if name in names}
        try:
            sections = _sections_model(known).model_validate(given)
        except ValidationError as exc:
            if not problems:
                raise
            # Every problem at once: the sections' own, as they read, after the unknown names.
            problems += [
                {
                    "type": PydanticCustomError(err["type"], err["msg"]),
                    "loc": err["loc"],
                    "input": err["input"],
                }
                for err in exc.errors()
            ]
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return {name: getattr(sections, name) for name in names}

    def sections(self) -> dict[str, TrackerSettings]:
        """Every tracker's section by name, in name order."""
        found = {name: getattr(self, name) for name in type(self).model_fields}
        found.update(self.__pydantic_extra__ or {})
        return {
            name: found[name] for name in sorted(found) if isinstance(found[name], TrackerSettings)
        }

    def get(self, name: str) -> TrackerSettings | None:
        """A tracker's section, or None when no tracker of that name was registered."""
        return self.sections().get(name)

    def section(self, name: str) -> TrackerSettings:
        """A tracker's section, or an error naming the trackers there are."""
        found = self.get(name)
        if found is None:
            raise ConfigError(
                f"tickets.{name}: no such tracker; known: {', '.join(self.sections())}"
            )
        return found

    def of(self, tracker: Tracker[S, Any]) -> S:
        """The tracker's section as its own model (JiraSettings for Jira's Tracker)."""
        found = self.section(tracker.name)
        if not isinstance(found, tracker.settings):
            raise ConfigError(
                f"tickets.{tracker.name}: read as {type(found).__name__}, not "
                f"{tracker.settings.__name__}: the tracker was registered anew after the "
                "settings were loaded"
            )
        return found

    def enabled(self) -> list[str]:
        """The names of the enabled trackers."""
        return [name for name, section in self.sections().items() if section.enabled]


Known = tuple[tuple[str, type[TrackerSettings]], ...]  # (name, settings model) per tracker


def _registered() -> Known:
    return tuple((tracker.name, tracker.settings) for tracker in TRACKERS)


def _fields(known: Known) -> dict[str, Any]:
    return {name: (model, Field(default_factory=model)) for name, model in known}


@lru_cache(maxsize=16)
def _sections_model(known: Known) -> type[BaseModel]:
    """A field per tracker: the sections validated at once, each error with its whole path
    (tickets.jira.url: ...)."""
    return create_model("TicketsSections", __config__=ConfigDict(extra="forbid"), **_fields(known))


@lru_cache(maxsize=16)
def _declared_tickets_model(known: Known) -> type[TicketsSettings]:
    """TicketsSettings declaring a field per tracker: the environment source decodes a
    variable's value (a list, a map in JSON) by the field it goes to, so it must see them."""
    return create_model("TicketsSettings", __base__=TicketsSettings, **_fields(known))


# Every secret: refused in the config file (named with its variable), masked when shown, and
# refused when shorter than its minimum. The minimums are on the secrets that authenticate
# callers of `serve` (an HMAC key, a shared secret, a URL token): a short one can be guessed
# offline from one signed request, or online. Tokens issued by a service for us to call it are
# whatever length the service gives.
_OWN_SECRETS = (
    SecretKey(("slack", "bot_token")),
    SecretKey(
        ("slack", "signing_secret"),
        32,
        "Slack issues it as 32 hex characters: copy all of it from the app's Basic Information "
        "> App Credentials",
    ),
    SecretKey(("slack", "app_token")),
)
_LAST_SECRETS = (
    SecretKey(("calendar", "feed_token"), 32, f"generate one with {GENERATE}"),
    SecretKey(("audit", "hmac_key"), 32, f"generate one with {GENERATE}"),
    # The event sinks'. The webhook's signs what receivers trust: a short one could be
    # brute-forced from one captured delivery.
    SecretKey(("events", "webhook", "secret"), 32, f"generate one with {GENERATE}"),
    SecretKey(("events", "splunk", "token")),
    SecretKey(("events", "email", "password")),
)


class _SecretKeys(Sequence[SecretKey]):
    """Slack's secrets, every registered tracker's (tickets.<name>.<key>), the calendar's:
    read from the registry each time, so a tracker registered later is in it."""

    def _all(self) -> tuple[SecretKey, ...]:
        tracker_keys = tuple(key for tracker in TRACKERS for key in tracker.secret_keys())
        return (*_OWN_SECRETS, *tracker_keys, *_LAST_SECRETS)

    @overload
    def __getitem__(self, index: int) -> SecretKey: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[SecretKey]: ...

    def __getitem__(self, index: int | slice) -> SecretKey | Sequence[SecretKey]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())


SECRET_KEYS: Sequence[SecretKey] = _SecretKeys()


def missing_secrets(settings: Settings) -> list[str]:
    """The secrets every enabled integration needs and lacks: what `serve` and `config check`
    ask for, as they use them all (other commands ask only for the ones they use)."""
    tracker_problems = [
        problem
        for name, section in settings.tickets.sections().items()
        for problem in TRACKERS.get(name).missing_secrets(section)
    ]
    return [
        *settings.slack.missing_secrets(),
        *tracker_problems,
        *settings.events.missing_secrets(),
    ]


def require_secrets(problems: Sequence[str]) -> None:
    """Stop with a ConfigError naming every missing secret (from `missing_secrets`), if any."""
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("secrets are missing:\n  " + "\n  ".join(problems))


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)"
        ) from None
    return value


class EscalationSettings(_Section):
    """Overdue occurrences go to a manager after `after_days`, then every `every_days`."""

    to: Annotated[str | None, _slack_id("channel or user", "CGUW", "a channel or member ID")] = None
    after_days: Annotated[int, Field(ge=0, le=365)] = 2
    every_days: Annotated[int, Field(ge=1, le=365)] = 2


class CalendarSettings(_Section):
    """The compliance calendar: administrative tasks, reminders, evidence, the ICS feed."""

    enabled: bool = False
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    due_time: time = time(9, 0)  # occurrences fall due at this local time of their day
    paths: list[Path] = []  # your own task directories (holding tasks/*.yaml)
    disabled: list[str] = []
    # Role names used as task owners -> a Slack user (U...) or user group (S...) ID.
    owners: dict[str, Annotated[str, _slack_id("owner", "UWS", "a member or user group ID")]] = {}
    channel: ChannelId | None = None  # reminders to a channel (a task may name its own)
    horizon_days: Annotated[int, Field(ge=1, le=730)] = 90  # occurrences made this far ahead
    escalation: EscalationSettings = EscalationSettings()
    max_snooze_days: Annotated[int, Field(ge=1, le=365)] = 14
    sweep_interval: Annotated[float, Field(gt=0, le=86400)] = 300.0
    evidence_dir: Path = Path("evidence")  # uploaded evidence files, by SHA-256
    # A bigger evidence file is refused (from Slack before it is fetched, or where it passes).
    max_evidence_mb: Annotated[int, Field(ge=1, le=5120)] = 50
    # Or an S3 location for them (s3://bucket/prefix), written with aws.endpoint_url if set.
    evidence_bucket: Annotated[
        str | None, Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
    ] = None
    # GET /calendar.ics?token=...: off while unset.
    feed_token: Secret = None
    # Remediation due dates of open findings in the feed: days after first seen, by severity.
    sla_days: dict[Severity, Annotated[int, Field(ge=1, le=3650)]] = {
        Severity.critical: 7,
        Severity.high: 30,
        Severity.medium: 90,
        Severity.low: 180,
        Severity.info: 365,
    }


def _crontab(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not a cron expression (minute hour day month weekday, "
            f"e.g. '0 */6 * * *'): {exc}"
        ) from None
    return value


Crontab = Annotated[str, AfterValidator(_crontab)]


class ScheduleSettings(_Section):
    """What `serve` runs on its own, in one process of however many replicas."""

    enabled: bool = True
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    # Full scans: a cron expression per AWS target name, or "all" for one scan of every target.
    scans: dict[str, Crontab] = {}
    # A job missed while nobody was running runs once on start, if this late at most.
    grace_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] = 3600
    # How often a standby replica tries to become the scheduler (PostgreSQL).
    leader_poll_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    # Delivered outbox items and handled Slack event ids older than this are deleted.
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 90


class AuditSettings(_Section):
    """The audit trail's hash chain (ledger/audit.py) and its nightly verification."""

    # HMAC-SHA256 key for the chain: without one, whoever can write the database can also
    # rebuild a consistent chain after editing it. Entries chained before it was set stay
    # plain SHA-256. It cannot be rotated: entries of an old key fail verification with a new
    # one (`audit verify` names the first of them and the key id it was made with).
    hmac_key: Secret = None
    # When `serve` verifies the chain and alerts slack.channel on a break (schedule.timezone).
    verify_cron: Crontab = "15 3 * * *"

    def key(self) -> str | None:
        """The chain's HMAC key, or None when unset."""
        return self.hmac_key.get_secret_value() if self.hmac_key is not None else None


class EventsSettings(_Section):
    """`events`: the outbound event stream's sinks (docs/events.md), each with its filters."""

    webhook: WebhookSettings = WebhookSettings()
    splunk: SplunkSettings = SplunkSettings()
    email: EmailSettings = EmailSettings()

    def sections(self) -> dict[str, EventSinkSettings]:
        """Every sink's section by its name (the outbox's sink name)."""
        return {"webhook": self.webhook, "splunk": self.splunk, "email": self.email}

    def enabled(self) -> list[str]:
        """The names of the enabled sinks."""
        return [name for name, section in self.sections().items() if section.enabled]

    def missing_secrets(self) -> list[str]:
        """The secrets the enabled sinks need and lack, naming their variables."""
        return [
            *self.webhook.missing_secrets(),
            *self.splunk.missing_secrets(),
            *self.email.missing_secrets(),
        ]


ArchiveAge = Annotated[int, Field(ge=1, le=36500)] | None


class ArchiveDaysSettings(_Section):
    """Per kind, the age in days past which rows are archived then deleted (null: kept)."""

    finding_events: ArchiveAge = None
    audit: ArchiveAge = None
    outbox: ArchiveAge = None
    scans: ArchiveAge = None
    events: ArchiveAge = None


class ArchiveS3Settings(_Section):
    bucket: str | None = None
    prefix: str = "compliancebot/archive"
    region: str | None = None
    # SSE-KMS with this key (id, ARN or alias); the bucket's default encryption when null.
    kms_key_id: str | None = None
    # S3 Object Lock on each object (the bucket must have Object Lock enabled).
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = None
    object_lock_days: Annotated[int, Field(ge=1, le=36500)] | None = None

    @model_validator(mode="after")
    def _lock_needs_days(self) -> ArchiveS3Settings:
        if (self.object_lock_mode is None) != (self.object_lock_days is None):
            raise ValueError("object_lock_mode and object_lock_days are set together")
        return self


class ArchiveSettings(_Section):
    """`archive`: retention with a verified archive (ledger/archive.py, `compliancebot archive`)."""

    days: ArchiveDaysSettings = ArchiveDaysSettings()
    # Where archives go: a local directory, or S3 (s3.bucket); exactly one when any age is set.
    dir: Path | None = None
    s3: ArchiveS3Settings = ArchiveS3Settings()
    # When `serve` archives (schedule.timezone).
    cron: Crontab = "45 3 * * *"

    @model_validator(mode="after")
    def _one_destination(self) -> ArchiveSettings:
        if self.dir is not None and self.s3.bucket is not None:
            raise ValueError("set archive.dir or archive.s3.bucket, not both")
        aged = [kind for kind, days in self.ages().items() if days is not None]
        if aged and not self.configured():
            raise ValueError(
                f"archive.days.{aged[0]} is set but there is nowhere to archive to: set "
                "archive.dir or archive.s3.bucket"
            )
        return self

    def ages(self) -> dict[str, int | None]:
        """{kind: days} of every kind, None where nothing is archived."""
        return self.days.model_dump()

    def configured(self) -> bool:
        return self.dir is not None or self.s3.bucket is not None


def _host_name() -> str:
    import socket

    return socket.gethostname()[:64] or "localhost"


class VulnsSettings(_Section):
    """`vulns`: where the installed-package inventory is read, and the advisory import limits."""

    # The host's findings carry it as their account (scanners/host/types.py).
    host: Annotated[str, Field(min_length=1, max_length=64)] = Field(default_factory=_host_name)
    # null turns a source off.
    dpkg_status: Path | None = Path("/var/lib/dpkg/status")
    rpm_command: str | None = "rpm"  # used only when found on PATH
    # The OSV ecosystem of the OS packages ("Debian:12", "Ubuntu:22.04", "AlmaLinux:9"); null:
    # read from os_release (ID and VERSION_ID).
    os_ecosystem: Annotated[str | None, Field(max_length=64)] = None
    os_release: Path = Path("/etc/os-release")
    python_paths: list[Path] = []  # site-packages directories
    npm_paths: list[Path] = []  # directories searched for package-lock.json
    npm_max_depth: Annotated[int, Field(ge=0, le=32)] = 8
    # A dpkg status file, a lock file, one advisory or one zip member larger than this is
    # refused, not read.
    max_file_bytes: Annotated[int, Field(ge=1024, le=1024**3)] = 256 * 1024 * 1024
    max_advisory_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 8 * 1024 * 1024


class AgentsSettings(_Section):
    """`agents`: hosts sending results to serve (bot/agent.py)."""

    # An enrolled agent with no result for this long is a host_agent_silent finding.
    silent_after_minutes: Annotated[int, Field(ge=5, le=7 * 24 * 60)] = 120
    # How often serve checks for silent agents.
    check_seconds: Annotated[int, Field(ge=60, le=86400)] = 300


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 3000
    # Threads running Slack handlers after their ack (the re-check, ticket calls).
    handler_threads: Annotated[int, Field(ge=1, le=64)] = 8
    # A request body over this is refused (413) before it is read: Slack's and the trackers'
    # deliveries are a few KB, and nothing is buffered for a client that has not been verified.
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024


def _fim_glob(value: str) -> str:
    try:
        fim_scanner.Glob(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; write an absolute path such as /etc/ssh/sshd_config") from None
    if "\x00" in value or len(value) > 4096:
        raise ValueError("a path glob has no NUL byte and at most 4,096 characters")
    if ".." in value.split("/"):
        raise ValueError(f"{value!r} has a '..' component; write the path it means")
    return value


FimGlob = Annotated[str, AfterValidator(_fim_glob)]


class FimSettings(_Section):
    """`fim`: file integrity monitoring of this host (docs/host-monitoring.md)."""

    # The host's name: the findings' `account`. Defaults to this machine's host name.
    host: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    ] = Field(default_factory=fim_scanner.default_host)
    # Absolute path globs: `*`, `?`, `[...]` within a name (dot files included), `**` across
    # directories. A directory itself is watched as DIR/**.
    watch: Annotated[list[FimGlob], Field(max_length=1000)] = list(fim_scanner.DEFAULT_WATCH)
    exclude: Annotated[list[FimGlob], Field(max_length=1000)] = []
    # glob -> severity of that path's findings (the first matching glob wins; else the rule's).
    severity: dict[FimGlob, Severity] = {
        glob: Severity(sev) for glob, sev in fim_scanner.DEFAULT_SEVERITY
    }
    # Larger files are compared by size, mtime, inode and permissions only, never read.
    max_hash_mb: Annotated[int, Field(ge=1, le=1024 * 1024)] = (
        fim_scanner.DEFAULT_MAX_HASH_BYTES // (1024 * 1024)
    )
    # Off: a symlink is watched as a link (its target text); on: as the file it points to.
    follow_symlinks: bool = False

    def options(self) -> fim_scanner.FimOptions:
        """The scanner's own options."""
        return fim_scanner.FimOptions(
            host=self.host,
            watch=tuple(self.watch),
            exclude=tuple(self.exclude),
            severity=tuple((glob, str(sev)) for glob, sev in self.severity.items()),
            max_hash_bytes=self.max_hash_mb * 1024 * 1024,
            follow_symlinks=self.follow_symlinks,
        )


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    database: DatabaseSettings = DatabaseSettings()
    aws: AwsSettings = AwsSettings()
    rules: RulesSettings = RulesSettings()
    logging: LoggingSettings = LoggingSettings()
    slack: SlackSettings = SlackSettings()
    tickets: TicketsSettings = Field(default_factory=TicketsSettings)
    calendar: CalendarSettings = CalendarSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    audit: AuditSettings = AuditSettings()
    events: EventsSettings = EventsSettings()
    archive: ArchiveSettings = ArchiveSettings()
    agents: AgentsSettings = AgentsSettings()
    vulns: VulnsSettings = Field(default_factory=VulnsSettings)

    @model_validator(mode="after")
    def _scheduled_targets_exist(self) -> Settings:
        targets = {t.name for t in self.aws.targets}
        for target in self.schedule.scans:
            if target != "all" and target not in targets:
                raise ValueError(
                    f"schedule.scans: no AWS target named {target!r}; targets: "
                    f"{', '.join(sorted(targets))} (or 'all')"
                )
        return self

    server: ServerSettings = ServerSettings()
    fim: FimSettings = Field(default_factory=FimSettings)


class _EnvironSource(EnvSettingsSource):
    """Variables from the environment `load_settings` was given, not necessarily the process's:
    nothing process-wide is swapped to read another one."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ  # read by _load_env_vars, which the base __init__ calls
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # pydantic-settings' hook for where variables come from (its .env source overrides it
        # the same way); names are matched as the base class matches os.environ's.
        return {
            (name if self.case_sensitive else name.lower()): value
            for name, value in self._environ.items()
            if not (self.env_ignore_empty and value == "")
        }


class _DictSource(PydanticBaseSettingsSource):
    """Values from an already-parsed YAML document."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]):
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _strings(data: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[PathKey, str]]:
    """Every string value in a parsed document, with its key path (bounded by the loader)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*path, str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _strings(value, (*path, i))
    elif isinstance(data, str):
        yield path, data


def _refuse_secrets_in(doc: YamlDoc) -> None:
    """A secret in the config file (a secret key, or a URL holding credentials) is an error."""
    home = f"put it in the secrets file ({ENV_PREFIX}SECRETS_FILE)"
    for secret in SECRET_KEYS:
        if _lookup(doc.data, secret.keys):
            raise ConfigError(
                f"{doc.file}:{doc.line_of(secret.keys)}: {secret.name}: a secret does not "
                f"belong in the config file; set {secret.variable} or {home}"
            )
    for path, text in _strings(doc.data):
        found = url_credentials(text)
        if found:
            # A variable can only replace a whole list, so inside one only the file helps.
            named = path if all(isinstance(p, str) for p in path) else ()
            instead = f"set {_env_name(named)} or {home}" if named else home
            raise ConfigError(
                f"{doc.file}:{doc.line_of(path)}: {format_path(path)}: the URL holds "
                f"{' and '.join(found)}: a password does not belong in the config file; "
                f"{instead}"
            )


def config_path(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """--config, else $COMPLIANCEBOT_CONFIG, else ./compliancebot.yaml if it exists."""
    if explicit is not None:
        return explicit
    if environ.get(f"{ENV_PREFIX}CONFIG"):
        return Path(environ[f"{ENV_PREFIX}CONFIG"])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def _read(path: Path, what: str) -> YamlDoc:
    if not path.exists():
        raise ConfigError(f"{path}: {what} not found")
    try:
        doc = load_yaml(path)
    except CompliancebotError as exc:
        raise ConfigError(str(exc)) from exc
    if doc.data is None:
        return YamlDoc(file=doc.file, data={}, lines=doc.lines)
    if not isinstance(doc.data, dict):
        raise ConfigError(
            f"{path}: the {what} must be a mapping of sections "
            "(database, aws, rules, logging, slack, tickets, calendar, schedule, server)"
        )
    return doc


def _env_name(loc: tuple[str | int, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc if isinstance(p, str))


def _locate(loc: tuple[str | int, ...], docs: list[YamlDoc], environ: Mapping[str, str]) -> str:
    env_keys = {k.upper() for k in environ}
    for end in range(len(loc), 0, -1):
        name = _env_name(loc[:end])
        if name in env_keys and all(isinstance(p, str) for p in loc[:end]):
            return f"environment variable {name}"
    for doc in docs:
        node: Any = doc.data
        found = True
        for part in loc[:1]:
            found = isinstance(node, dict) and part in node
        if found:
            line = doc.line_of(loc)
            return f"{doc.file}:{line}" if line else doc.file
    # A whole section only variables gave (tickets.github, unknown; a check across its keys).
    name = _env_name(loc)
    under = sorted(k for k in env_keys if k.startswith(name + "__"))
    if under and all(isinstance(p, str) for p in loc):
        return f"environment variable {under[0]}" if len(under) == 1 else f"{name}__* variables"
    return "defaults"


def load_settings(
    explicit: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the effective settings, or raise ConfigError naming what is wrong and where."""
    environ = os.environ if environ is None else environ
    docs: list[YamlDoc] = []
    path = config_path(explicit, environ)
    data: dict[str, Any] = {}
    if path is not None:
        doc = _read(path, "config file")
        _refuse_secrets_in(doc)
        docs.append(doc)
        data = doc.data
    secrets = environ.get(f"{ENV_PREFIX}SECRETS_FILE")
    if secrets:
        secret_doc = _read(Path(secrets), "secrets file")
        docs.insert(0, secret_doc)
        data = _deep_merge(data, secret_doc.data)

    env = environ

    class _Effective(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                _EnvironSource(settings_cls, env),
                _DictSource(settings_cls, data),
            )

    # `tickets` as a model declaring each registered tracker's section, for the environment.
    tickets = _declared_tickets_model(_registered())
    effective = create_model(
        "_Effective", __base__=_Effective, tickets=(tickets, Field(default_factory=tickets))
    )
    try:
        settings = Settings.model_validate(effective().model_dump())
    except ValidationError as exc:
        problems = [_problem(err, docs, environ) for err in exc.errors()[:5]]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from exc
    except ValueError as exc:  # an environment value that is not valid JSON for a list/map
        raise ConfigError(f"invalid configuration from the environment: {exc}") from exc
    weak = _weak_secrets(settings, docs, environ)
    if weak:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(weak))
    return settings


def _weak_secrets(settings: Settings, docs: list[YamlDoc], environ: Mapping[str, str]) -> list[str]:
    """Each secret shorter than its minimum, as `where: key: what is wrong and how to fix it`."""
    problems = []
    for secret in SECRET_KEYS:
        value: Any = settings
        for key in secret.keys:
            value = getattr(value, key)
        if value is None or len(value.get_secret_value()) >= secret.min_length:
            continue
        length = len(value.get_secret_value())
        problems.append(
            f"{_locate(secret.keys, docs, environ)}: {secret.name}: too short ({length} "
            f"character{'s' if length != 1 else ''}, at least {secret.min_length} needed): "
            f"{secret.where_from}"
        )
    return problems


_KEY_IN_MESSAGE = re.compile(r"^([a-z_]+(?:\.[a-z_]+)+): (.*)$", re.DOTALL)


def _problem(err: Any, docs: list[YamlDoc], environ: Mapping[str, str]) -> str:
    """One validation error as `where: key: what is wrong`."""
    loc = tuple(err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key (check the spelling)"
    named = _KEY_IN_MESSAGE.match(message)
    if not loc and named:  # a check across sections names its key: locate that key
        loc, message = tuple(named.group(1).split(".")), named.group(2)
    return f"{_locate(loc, docs, environ)}: {format_path(loc)}: {message}"


def _lookup(data: Any, keys: tuple[str, ...]) -> Any:
    """data[k1][k2]..., or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data with secrets masked, for `config check`."""
    data: dict[str, Any] = _masked_urls(settings.model_dump(mode="json"))
    for target in data["aws"]["targets"]:
        if target.get("external_id"):
            target["external_id"] = "***"
    # SecretStr fields (SECRET_KEYS) already dump as '**********'.
    return data


def _masked_urls(data: Any) -> Any:
    """`data` with credentials masked in every URL, wherever it is (database.url, api_url...)."""
    if isinstance(data, dict):
        return {key: _masked_urls(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_masked_urls(value) for value in data]
    if isinstance(data, str) and looks_like_url(data):
        return mask_url(data)
    return data
