"""Trello (REST API v1) as a `TicketSink`, through `py-trello`'s client, and the `trello`
tracker plug-in (`TRACKER`: settings section, secrets, factory, webhook).

py-trello hard-codes https://api.trello.com/1 but sends every request through the
`http_service` it is given: `TrelloSession` rebases those URLs onto the configured API base
(a proxy, a test server) and moves the key and token out of the query string into an
`Authorization: OAuth` header, so they never appear in a URL, a proxy log or an error message.
py-trello retries nothing; every failure becomes a TicketError and the outbox decides when to
try again.

A card carries its finding's fingerprint as the last line of its description
(`compliancebot: cb-<fingerprint>`): Trello has no free-form labels, and the board's cards are
how a card created just before a crash is found again instead of being created twice. Only
that search trusts the marker (a copied card carries it too): board actions are matched by the
card id the bot recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import requests
from pydantic import field_validator, model_validator
from requests.exceptions import RequestException
from trello import TrelloClient
from trello.exceptions import ResourceUnavailable

from integrations.markup import markdown, one_line
from integrations.ratelimit import pace
from integrations.tickets import (
    Changes,
    TicketError,
    TicketFinding,
    TicketRef,
    describe,
    fingerprint_label,
)
from integrations.trackers import (
    Secret,
    Tracker,
    TrackerSecret,
    TrackerSettings,
    Webhook,
    register,
    unset_secrets,
)
from ledger import outbox
from rules.catalog import Severity

TRELLO_API = "https://api.trello.com/1"
MARKER = "compliancebot: "
DEFAULT_LISTS = {
    "open": "To Do",
    "reopened": "To Do",
    "claimed": "Doing",
    "resolved": "Done",
    "accepted": "Done",
}
# Trello's object ids: a card or an action named otherwise in a delivery is not looked up.
OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
CARD_FIELDS = "id,desc,closed,idList,shortUrl,url"
# Trello's `since` is a strict bound at millisecond precision: a poll asks from a second before
# the last action it saw, re-reading that one (applied once, by its id) rather than missing
# another made in the same instant.
OVERLAP = timedelta(seconds=1)


@dataclass(frozen=True)
class TrelloConfig:
    """Which board the cards go on and how a finding maps onto one."""

    api_key: str
    token: str
    board: str  # id, short link or name
    api_url: str = TRELLO_API
    lists: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LISTS))
    labels: Mapping[str, str] = field(default_factory=dict)  # severity -> label name
    users: Mapping[str, str] = field(default_factory=dict)  # who claims -> a board member's id
    timeout: float = 10.0
    requests_per_second: float | None = None  # pace requests below Trello's rate limit
    index_seconds: float = 30.0  # how long the board's fingerprint index is trusted


class TrelloSession(requests.Session):
    """A requests session that sends py-trello's api.trello.com calls to another base URL."""

    def __init__(self, base: str, *, timeout: float) -> None:
        super().__init__()
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.trust_env = True  # HTTPS_PROXY and NO_PROXY apply, as for any requests client
        self._local = threading.local()

    @property
    def last_response(self) -> requests.Response | None:
        """The response to this thread's last request (py-trello's errors drop the headers)."""
        return getattr(self._local, "response", None)

    def request(  # type: ignore[override]
        self, method: str, url: str, **kwargs: Any
    ) -> requests.Response:
        """Rebase the URL, carry the credentials in a header, bound the wait."""
        if url.startswith(TRELLO_API):
            url = self.base + url[len(TRELLO_API) :]
        params = dict(kwargs.pop("params", None) or {})
        key, token = params.pop("key", None), params.pop("token", None)
        headers = dict(kwargs.pop("headers", None) or {})
        if key and token:
            headers["Authorization"] = f'OAuth oauth_consumer_key="{key}", oauth_token="{token}"'
        kwargs.setdefault("timeout", self.timeout)
        if not kwargs.get("proxies"):
            kwargs.pop("proxies", None)  # py-trello passes {}: let the environment decide
        self._local.response = None
        kwargs.update(params=params, headers=headers)
        response = super().request(method, url, **kwargs)
        self._local.response = response
        return response


class TrelloSink:
    """Tickets as Trello cards: a list per finding state, a label per severity."""

    name = "trello"

    def __init__(
        self, config: TrelloConfig, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.session = TrelloSession(config.api_url, timeout=config.timeout)
        pace(self.session, config.requests_per_second)
        self.client = TrelloClient(
            api_key=config.api_key, api_secret=config.token, http_service=self.session
        )
        self._monotonic = monotonic
        self._board: dict[str, Any] | None = None
        self._me: str | None = None
        self._lists: dict[str, str] | None = None  # list name -> id
        self._labels: dict[str, str] | None = None  # label name -> id
        self._index: dict[str, dict[str, Any]] = {}  # fingerprint -> card
        self._index_at: float | None = None

    # ---- plumbing -------------------------------------------------------------------------------

    def _call(self, doing: str, path: str, method: str = "GET", **kwargs: Any) -> Any:
        try:
            return self.client.fetch_json(path, http_method=method, **kwargs)
        except ResourceUnavailable as exc:
            raise self._error(exc, doing) from exc
        except ValueError as exc:  # a body that is not JSON (requests' error is one too)
            raise TicketError(f"Trello {doing}: the answer is not JSON", permanent=False) from exc
        except RequestException as exc:
            raise TicketError(
                f"Trello {doing}: {type(exc).__name__}: {_redact(str(exc))}", permanent=False
            ) from exc

    def _error(self, exc: ResourceUnavailable, doing: str) -> TicketError:
        status = int(getattr(exc, "_status", 0) or 0)
        response = self.session.last_response
        text = (response.text if response is not None else str(exc)).strip()[:500]
        if status == 429 or status >= 500:
            headers = response.headers if response is not None else None
            retry_after = outbox.retry_after(headers, now=datetime.now(UTC))
            return TicketError(
                f"Trello {doing}: HTTP {status}: {text}", permanent=False, retry_after=retry_after
            )
        return TicketError(
            f"Trello {doing}: HTTP {status}: {text}", permanent=True, gone=status == 404
        )

    @property
    def me(self) -> str:
        """The member id of the token: its own moves are not news."""
        if self._me is None:
            self._me = str(self._call("reading the token's member", "/members/me")["id"])
        return self._me

    @property
    def board(self) -> dict[str, Any]:
        """The configured board, found by id, short link or name."""
        if self._board is None:
            wanted = self.config.board
            boards = self._call(
                "listing boards", "/members/me/boards", query_params={"filter": "open"}
            )
            for board in boards:
                if wanted in (board.get("id"), board.get("shortLink"), board.get("name")):
                    self._board = board
                    break
            else:
                names = ", ".join(sorted(str(b.get("name")) for b in boards)) or "none"
                raise TicketError(
                    f"Trello board {wanted!r} does not exist or the token cannot see it; "
                    f"boards: {names}",
                    permanent=True,
                )
        return self._board

    def _list_ids(self) -> dict[str, str]:
        if self._lists is None:
            lists = self._call("listing lists", f"/boards/{self.board['id']}/lists")
            self._lists = {str(x["name"]): str(x["id"]) for x in lists}
        return self._lists

    def _label_ids(self) -> dict[str, str]:
        if self._labels is None:
            labels = self._call("listing labels", f"/boards/{self.board['id']}/labels")
            self._labels = {str(x["name"]): str(x["id"]) for x in labels if x.get("name")}
        return self._labels

    def _list_for(self, status: str) -> str:
        name = self.config.lists.get(status) or self.config.lists.get("open", "To Do")
        ids = self._list_ids()
        if name not in ids:
            raise TicketError(
                f"Trello board {self.board['name']!r} has no list {name!r}; "
                f"lists: {', '.join(ids)}",
                permanent=True,
            )
        return ids[name]

    def _ref(self, card: Mapping[str, Any]) -> TicketRef:
        done_lists = {
            self._list_ids().get(self.config.lists.get(s, "")) for s in ("resolved", "accepted")
        }
        return TicketRef(
            sink=self.name,
            key=str(card["id"]),
            url=str(card.get("shortUrl") or card.get("url") or ""),
            done=bool(card.get("closed")) or card.get("idList") in done_lists,
            fingerprint=_fingerprint(str(card.get("desc") or "")),
        )

    # ---- the protocol ---------------------------------------------------------------------------

    def validate(self) -> list[str]:
        """The board, every list and label the mapping names and every `users` member that
        the board lacks, each with what the board has; all found before any is reported."""
        try:
            board = self.board
        except TicketError as exc:
            if not exc.permanent:
                raise
            return [f"trello.board: {exc}"]
        problems = []
        lists = self._list_ids()
        for status, name in sorted(self.config.lists.items()):
            if name not in lists:
                problems.append(
                    f"trello.lists.{status}: board {board['name']!r} has no list {name!r}; "
                    f"lists: {', '.join(lists)}"
                )
        labels = self._label_ids()
        for severity, name in sorted(self.config.labels.items()):
            if name not in labels:
                problems.append(
                    f"trello.labels.{severity}: board {board['name']!r} has no label {name!r}; "
                    f"labels: {', '.join(labels) or 'none'}"
                )
        if self.config.users:
            members = self._call("listing the board's members", f"/boards/{board['id']}/members")
            members = (
                [m for m in members if isinstance(m, Mapping)] if isinstance(members, list) else []
            )
            problems += _member_problems(self.config.users, members, str(board["name"]))
        return problems

    def _load_index(self) -> None:
        now = self._monotonic()
        if self._index_at is not None and now - self._index_at < self.config.index_seconds:
            return
        index: dict[str, dict[str, Any]] = {}
        for card in self._board_cards(CARD_FIELDS):
            fp = _fingerprint(str(card.get("desc") or ""))
            if fp and fp not in index:
                index[fp] = card
        self._index, self._index_at = index, now

    def _board_cards(self, fields: str) -> list[dict[str, Any]]:
        """Every card of the board, archived ones too, with these fields."""
        cards = self._call(
            "listing the board's cards",
            f"/boards/{self.board['id']}/cards/all",
            query_params={"fields": fields},
        )
        return list(cards)

    def find(self, fingerprint: str) -> TicketRef | None:
        """The card carrying the fingerprint, if any (checked to still exist)."""
        self._load_index()
        card = self._index.get(fingerprint)
        if card is None:
            return None
        try:
            fresh = self._call("reading a card", f"/cards/{card['id']}")
        except TicketError as exc:
            if exc.gone:
                self._index.pop(fingerprint, None)
                return None
            raise
        return self._ref(fresh)

    def create(self, finding: TicketFinding) -> TicketRef:
        """A card in the list for the finding's state, labelled with its severity."""
        label = self.config.labels.get(finding.severity)
        labels = self._label_ids()
        if label and label not in labels:
            raise TicketError(
                f"Trello board {self.board['name']!r} has no label {label!r}; "
                f"labels: {', '.join(labels) or 'none'}",
                permanent=True,
            )
        body = describe(finding, markdown) + f"\n\n{MARKER}{fingerprint_label(finding.fingerprint)}"
        card = self._call(
            "creating the card",
            "/cards",
            "POST",
            post_args={
                "idList": self._list_for(finding.status),
                # A card name is plain text (Trello renders no Markdown there), of one line.
                "name": one_line(
                    f"[{finding.severity.upper()}] {finding.title}: "
                    f"{finding.resource_name or finding.resource_id}",
                    500,
                ),
                "desc": body,
                "idLabels": labels[label] if label else "",
                "pos": "bottom",
            },
        )
        self._index[finding.fingerprint] = card
        return self._ref(card)

    def _move(self, ref: TicketRef, status: str, comment: str | None) -> None:
        self._call(
            f"moving card {ref.key}",
            f"/cards/{ref.key}",
            "PUT",
            post_args={"idList": self._list_for(status), "closed": False},
        )
        if comment:
            self.comment(ref, comment)

    def close(self, ref: TicketRef, comment: str, *, status: str = "resolved") -> None:
        """Move to the list for `status` (resolved or accepted), with a comment."""
        self._move(ref, status, comment)

    def reopen(self, ref: TicketRef, comment: str, *, status: str = "open") -> None:
        """Move back to the list for `status` (and out of the archive), with a comment."""
        self._move(ref, status, comment)

    def progress(self, ref: TicketRef, status: str) -> None:
        """Move between the active lists (open -> claimed), when they differ."""
        self._move(ref, status, None)

    def assign(self, ref: TicketRef, user: str | None) -> None:
        """Make a Trello member (by id) the card's only member; None: nobody."""
        self._call(
            f"assigning card {ref.key}",
            f"/cards/{ref.key}",
            "PUT",
            post_args={"idMembers": user or ""},
        )

    def comment(self, ref: TicketRef, text: str) -> None:
        """Add a comment."""
        self._call(
            f"commenting on card {ref.key}",
            f"/cards/{ref.key}/actions/comments",
            "POST",
            post_args={"text": markdown(text)},
        )

    def changed_since(self, since: datetime, now: datetime) -> Changes:
        """Cards people moved, archived or deleted on the board since a time (board actions).

        `since` is best the mark of the last poll: the date of the newest action it saw, by
        Trello's clock. The answer's mark is the newest action seen now, the bot's own included.
        """
        actions: list[dict[str, Any]] = []
        before: str | None = None
        while True:
            params = {
                "filter": "updateCard,deleteCard",
                "since": _trello_date(since - OVERLAP),
                "limit": 1000,
            }
            if before:
                params["before"] = before
            page = self._call(
                "reading the board's actions",
                f"/boards/{self.board['id']}/actions",
                query_params=params,
            )
            actions += page
            if len(page) < 1000:
                break
            before = str(page[-1]["id"])
        dates = [d for d in (_parse_date(a.get("date")) for a in actions) if d is not None]
        return Changes(
            refs=self.refs_from_actions(reversed(actions), ignore_member=self.me),
            mark=max(dates, default=None),
        )

    def lookup(self, keys: Sequence[str]) -> dict[str, TicketRef | None]:
        """Cards by the ids we recorded: the board's cards, then a GET for each one missing.

        A card moved to another board still exists (its id never changes); a deleted one is 404.
        """
        wanted = list(dict.fromkeys(k for k in keys if OBJECT_ID.fullmatch(k)))
        if not wanted:
            return {}
        # Without descriptions: a state per card is all this needs, and a board has thousands.
        cards = self._board_cards("id,closed,idList,shortUrl,url")
        on_board = {str(card.get("id")): card for card in cards}
        out: dict[str, TicketRef | None] = {}
        for key in wanted:
            card = on_board.get(key)
            if card is None:
                try:
                    card = self._call("reading a card", f"/cards/{key}")
                except TicketError as exc:
                    if not exc.gone:
                        raise
                    out[key] = None
                    continue
            out[key] = self._ref(card)
        return out

    def refs_from_actions(
        self, actions: Iterable[Mapping[str, Any]], *, ignore_member: str | None = None
    ) -> list[TicketRef]:
        """What a sequence of board actions (oldest first; polled or from webhooks) says.

        A card's latest action decides its state; the ones before are named in `earlier`, so
        a late webhook delivery of one of them is known as already seen.
        """
        latest: dict[str, TicketRef] = {}
        for action in actions:
            if ignore_member and action.get("idMemberCreator") == ignore_member:
                continue  # our own moves
            ref = self.ref_from_action(action)
            if ref is None:
                continue
            before = latest.get(ref.key)
            if before is not None:
                ref = replace(ref, earlier=(*before.earlier, *before.change))
            latest[ref.key] = ref
        return list(latest.values())

    def ref_from_action(self, action: Mapping[str, Any]) -> TicketRef | None:
        """A card's new state from one action, or None when the action says nothing of it."""
        data = action.get("data")
        card = data.get("card") if isinstance(data, Mapping) else None
        if not isinstance(data, Mapping) or not isinstance(card, Mapping):
            return None
        key = card.get("id")
        if not isinstance(key, str) or not OBJECT_ID.fullmatch(key):
            return None
        action_id = action.get("id")
        change = (str(action_id),) if isinstance(action_id, str) and action_id else ()
        if action.get("type") == "deleteCard":
            return TicketRef(sink=self.name, key=key, url="", deleted=True, change=change)
        if action.get("type") != "updateCard":
            return None
        old = data.get("old")
        if not isinstance(old, Mapping) or ("idList" not in old and "closed" not in old):
            return None
        after = data.get("listAfter")
        list_id = after.get("id") if isinstance(after, Mapping) else None
        ref = self._ref({**card, "idList": list_id or card.get("idList")})
        return replace(ref, change=change)


def _member_problems(
    users: Mapping[str, str], members: Sequence[Mapping[str, Any]], board: str
) -> list[str]:
    """Each `users` value that is not a board member's id (a card's member must be one),
    pointing at the id when the value is a member's username or full name."""
    ids = {str(m.get("id")) for m in members}
    problems = []
    for who, value in sorted(users.items()):
        if value in ids:
            continue
        named = [
            m
            for m in members
            if value.lower().lstrip("@")
            in (str(m.get("username", "")).lower(), str(m.get("fullName", "")).lower())
        ]
        hint = (
            f"use the member id: {named[0].get('username')} is {named[0].get('id')}"
            if len(named) == 1
            else "members: "
            + (", ".join(f"{m.get('username')} ({m.get('id')})" for m in members[:20]) or "none")
        )
        problems.append(
            f"trello.users.{who}: {value!r} is not the id of a member of board {board!r}, so "
            f"a claim by {who} could never be assigned; {hint}"
        )
    return problems


def _fingerprint(desc: str) -> str | None:
    """The fingerprint in a card description's marker line, if there is one."""
    prefix = MARKER + fingerprint_label("")
    for raw in reversed(desc.splitlines()):
        line = raw.strip()
        if line.startswith(prefix):
            return line[len(prefix) :].strip() or None
    return None


def _redact(text: str) -> str:
    """Remove key= and token= values from a message that may quote a URL."""
    return re.sub(r"\b(key|token)=[^&\s]+", r"\1=***", text)


def _trello_date(when: datetime) -> str:
    """A time as Trello writes dates (UTC, milliseconds, Z)."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_date(value: Any) -> datetime | None:
    """A Trello action's date, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


# ---- the plug-in: tickets.trello, its secrets, POST /trello/webhook ----------------------------


class TrelloSettings(TrackerSettings):
    """tickets.trello: which board the cards go on and how a finding maps onto one."""

    api_url: str = TRELLO_API
    api_key: Secret = None
    token: Secret = None
    board: str | None = None  # id, short link (from the board's URL) or name
    # Finding state -> list name on the board.
    lists: dict[Literal["open", "reopened", "claimed", "resolved", "accepted"], str] = {
        "open": "To Do",
        "reopened": "To Do",
        "claimed": "Doing",
        "resolved": "Done",
        "accepted": "Done",
    }
    # Severity -> label name on the board (a severity not listed gets no label).
    labels: dict[Severity, str] = {}
    # Trello signs webhooks with the app's API secret over body + this exact callback URL.
    webhook_url: str | None = None

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://api.trello.com/1")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> TrelloSettings:
        if not self.enabled:
            return self
        if not self.board:
            raise ValueError("trello is enabled but tickets.trello.board is not set")
        if self.webhook_secret is not None and not self.webhook_url:
            raise ValueError(
                "tickets.trello.webhook_secret is set but webhook_url is not: Trello signs "
                "over the callback URL, so it must be the URL the webhook was registered with"
            )
        return self


def missing_secrets(section: TrelloSettings) -> list[str]:
    """The key and token Trello needs and lacks, naming their variables ([]: none)."""
    if not section.enabled:
        return []
    missing = [
        ("tickets", "trello", n) for n in ("api_key", "token") if getattr(section, n) is None
    ]
    return [unset_secrets(missing, "Trello needs")] if missing else []


def build_sink(section: TrelloSettings) -> TrelloSink:
    """The sink as configured (its key and token are set: `missing_secrets` said so)."""
    return TrelloSink(
        TrelloConfig(
            api_key=section.api_key.get_secret_value() if section.api_key else "",
            token=section.token.get_secret_value() if section.token else "",
            board=str(section.board),
            api_url=section.api_url,
            lists={str(k): v for k, v in section.lists.items()},
            labels={str(k): v for k, v in section.labels.items()},
            users=dict(section.users),
            timeout=section.timeout,
            requests_per_second=section.requests_per_second or None,
        )
    )


def verify_delivery(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    secret: str,
    section: TrelloSettings,
) -> bool:
    """Trello's X-Trello-Webhook: base64(HMAC-SHA1(app secret, body + callback URL))."""
    callback = section.webhook_url or ""
    digest = hmac.new(secret.encode(), body + callback.encode(), hashlib.sha1).digest()
    given = headers.get("X-Trello-Webhook", "")
    return hmac.compare_digest(given.encode(), base64.b64encode(digest))


def parse_delivery(
    sink: TrelloSink, payload: Mapping[str, Any], headers: Mapping[str, str]
) -> TicketRef | None:
    """What a verified delivery's board action says of a card (None: our own move, or no
    news). The action's id names the change: a redelivery, or the same action polled, is a
    replay."""
    action = payload.get("action")
    if not isinstance(action, Mapping):
        return None
    if action.get("idMemberCreator") == sink.me:
        return None  # our own move, maybe delivered late: not news
    return sink.ref_from_action(action)


TRACKER: Tracker[TrelloSettings, TrelloSink] = Tracker(
    name="trello",
    title="Trello",
    settings=TrelloSettings,
    factory=build_sink,
    secrets=(
        TrackerSecret("api_key"),
        TrackerSecret("token"),
        TrackerSecret(
            "webhook_secret",
            32,
            "it is the Trello app's API secret (64 hex characters, next to the API key)",
        ),
    ),
    missing_secrets=missing_secrets,
    webhook=Webhook(verify=verify_delivery, parse=parse_delivery, head=True),
)
register(TRACKER)
