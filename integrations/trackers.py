"""Trackers as plug-ins: what a tracker module declares (`Tracker`), and the registry of them.

A tracker is one module: its settings model (a `TrackerSettings`), its secret keys, a factory
making its `TicketSink` from its settings, and its webhook (verify a delivery, read it). The
module ends with `register(TRACKER)`. From the registry, `bot/` makes the `tickets.<name>`
settings section, the secrets table, the route `POST /<name>/webhook` and the `--tracker`
choices: nothing in `bot/` names a tracker.

The built-in trackers (`BUILTIN`) are imported the first time the registry is read, so
importing this module costs nothing and a tracker module may import it without a cycle.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from integrations.tickets import TicketRef, TicketSink
from rules.catalog import Severity
from rules.errors import CompliancebotError

ENV_PREFIX = "COMPLIANCEBOT_"
SECTION = "tickets"  # the settings section holding one sub-section per tracker
GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
BUILTIN = ("integrations.jira_sink", "integrations.trello_sink")
# A tracker's name is a settings key, a part of environment variable names and a URL path.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _empty_is_unset(value: Any) -> Any:
    # docker compose passes an unset variable as "": that is "not set", not a secret.
    return None if value == "" else value


Secret = Annotated[SecretStr | None, BeforeValidator(_empty_is_unset)]


@dataclass(frozen=True)
class SecretKey:
    """A secret's key path, and the length below which it is refused (0: any length)."""

    keys: tuple[str, ...]
    min_length: int = 0
    where_from: str = ""  # how to get a good one, for the error message

    @property
    def name(self) -> str:
        """slack.signing_secret"""
        return ".".join(self.keys)

    @property
    def variable(self) -> str:
        """COMPLIANCEBOT_SLACK__SIGNING_SECRET"""
        return ENV_PREFIX + "__".join(self.keys).upper()


def unset_secrets(keys: Sequence[tuple[str, ...]], needs: str) -> str:
    """`a.b and a.c are not set, and <needs> them: set VAR_B and VAR_C or ...`."""
    secrets = [SecretKey(tuple(k)) for k in keys]
    names = " and ".join(s.name for s in secrets)
    variables = " and ".join(s.variable for s in secrets)
    it, are = ("them", "are") if len(secrets) > 1 else ("it", "is")
    return (
        f"{names} {are} not set, and {needs} {it}: set {variables} or put {it} in the "
        f"secrets file ({ENV_PREFIX}SECRETS_FILE)"
    )


class TrackerSettings(BaseModel):
    """What every tracker's section has: on/off, which findings, who is who, how often."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    min_severity: Severity = Severity.info
    # Only findings of these accounts (target names) / citing these frameworks; empty: all.
    accounts: list[str] = []
    frameworks: list[str] = []
    # Who claimed it (a Slack user id, a CLI name) -> the tracker's user: for Jira, what its
    # user search finds the person by when assigning (Cloud: an email; Server / Data Center:
    # the user name); for Trello, a board member's id. `config check` looks each one up.
    users: dict[str, str] = {}
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    interval: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Requests per second at most, in any one-second window: set it to the tracker's rate
    # limit (0: no pacing; 429s are waited out).
    requests_per_second: Annotated[float, Field(ge=0, le=1000)] = 0.0
    # Ask the tracker what people changed every this many seconds (0: rely on webhooks).
    poll_interval: Annotated[float, Field(ge=0, le=86400)] = 300.0
    # The shared secret of POST /<tracker>/webhook; unset: the endpoint is off.
    webhook_secret: Secret = None

    def takes(self, *, account: str) -> bool:
        """Does this tracker take findings of the account?"""
        return not self.accounts or account in self.accounts


S = TypeVar("S", bound=TrackerSettings)
K = TypeVar("K", bound=TicketSink)


@dataclass(frozen=True)
class TrackerSecret:
    """A secret key of a tracker's section (refused in the config file, masked when shown)."""

    key: str
    min_length: int = 0  # for the secrets that authenticate callers of `serve`
    where_from: str = ""  # how to get a good one, for the error message


@dataclass(frozen=True)
class Webhook(Generic[S, K]):
    """How `POST /<name>/webhook` reads a delivery: verified first, then parsed.

    `verify(headers, query, body, secret, section)`: is the delivery from the tracker (a
    signature over the body, a secret in the URL)? It sees the raw body before any parsing.
    `parse(sink, payload, headers)`: what the verified JSON object says of a ticket (None: not
    news, such as the bot's own change); it may call the tracker (and raise TicketError).
    Headers are looked up case-insensitively when served.
    """

    verify: Callable[[Mapping[str, str], Mapping[str, str], bytes, str, S], bool]
    parse: Callable[[K, Mapping[str, Any], Mapping[str, str]], TicketRef | None]
    # Answer HEAD with 200: Trello checks that the callback exists when the webhook is made.
    head: bool = False


# The shared secret of every tracker's webhook (TrackerSettings.webhook_secret), unless the
# tracker declares its own (Trello's is the app's API secret, which Trello issues).
WEBHOOK_SECRET = TrackerSecret("webhook_secret", 32, f"generate one with {GENERATE}")


def _no_secrets_missing(section: TrackerSettings) -> list[str]:
    return []


@dataclass(frozen=True)
class Tracker(Generic[S, K]):
    """A tracker plug-in: everything `bot/` needs to configure, build and hear from it.

    `missing_secrets(section)` names, with their variables, the secrets an enabled section
    lacks ([]: none); `factory(section)` makes the sink (its secrets are set by then) and
    does no network call; the sink's `name` is the tracker's.
    """

    name: str  # the settings key (tickets.<name>), URL path and --tracker choice: "jira"
    title: str  # for people: "Jira"
    settings: type[S]
    factory: Callable[[S], K]
    secrets: tuple[TrackerSecret, ...] = ()  # webhook_secret is one unless declared otherwise
    missing_secrets: Callable[[S], list[str]] = field(default=_no_secrets_missing)
    webhook: Webhook[S, K] | None = None

    def secret_keys(self) -> tuple[SecretKey, ...]:
        """Its secrets by their full key path (tickets.<name>.<key>), `webhook_secret` (every
        section has it) among them whether declared or not."""
        secrets = self.secrets
        if all(s.key != "webhook_secret" for s in secrets):
            secrets = (*secrets, WEBHOOK_SECRET)
        return tuple(
            SecretKey((SECTION, self.name, s.key), s.min_length, s.where_from) for s in secrets
        )

    def variable(self, key: str) -> str:
        """The environment variable of a key of its section: COMPLIANCEBOT_TICKETS__JIRA__URL."""
        return SecretKey((SECTION, self.name, key)).variable


class UnknownTrackerError(CompliancebotError):
    """No tracker of that name is registered; the message names the known ones."""


class Registry:
    """The registered trackers, by name; iterated in name order (stable messages and menus)."""

    def __init__(self, builtin: Sequence[str]) -> None:
        self._builtin = tuple(builtin)
        self._loaded = False
        self._trackers: dict[str, Tracker[Any, Any]] = {}

    def _all(self) -> dict[str, Tracker[Any, Any]]:
        if not self._loaded:
            self._loaded = True  # before importing: each module registers itself here
            for module in self._builtin:
                importlib.import_module(module)
        return self._trackers

    def register(self, tracker: Tracker[Any, Any]) -> None:
        """Add a tracker; a second, different one under a name taken is an error."""
        if not NAME.match(tracker.name) or hasattr(BaseModel, tracker.name):
            raise ValueError(
                f"tracker name {tracker.name!r}: use lower case letters, digits and _, "
                "starting with a letter, and not a name pydantic models have (it is a settings "
                "key and a URL path)"
            )
        known = self._trackers.get(tracker.name)
        if known is not None and known is not tracker:
            raise ValueError(f"a tracker named {tracker.name!r} is already registered")
        self._trackers[tracker.name] = tracker

    def unregister(self, name: str) -> None:
        """Remove a tracker (tests; a plug-in withdrawn)."""
        self._trackers.pop(name, None)

    def get(self, name: str) -> Tracker[Any, Any]:
        """The tracker of that name, or an error naming the known ones."""
        found = self._all().get(name)
        if found is None:
            raise UnknownTrackerError(f"unknown tracker {name!r}; known: {', '.join(self.names())}")
        return found

    def names(self) -> list[str]:
        """Every registered tracker's name, sorted."""
        return sorted(self._all())

    def __iter__(self) -> Iterator[Tracker[Any, Any]]:
        trackers = self._all()
        return iter([trackers[name] for name in sorted(trackers)])

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __len__(self) -> int:
        return len(self._all())


# A registry entry's settings and sink types differ per tracker, which Python's generics
# cannot say of one dict: entries are Tracker[Any, Any], and each tracker's own functions are
# typed against its own models (a section passes `TicketsSettings.of(tracker)`'s check first).
TRACKERS = Registry(BUILTIN)
register = TRACKERS.register
unregister = TRACKERS.unregister
