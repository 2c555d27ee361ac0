"""A fake Trello (REST API v1) over real HTTP on 127.0.0.1, for `py-trello` and our sink.

It serves what ticket sync needs: boards (by id or short link, and the member's boards), lists,
labels, members, cards (create, get, update, move, archive, delete, members, comments) and the
board's actions, which it records for every change as Trello does (`createCard`, `updateCard`
with `listBefore`/`listAfter` or `old.closed`, `commentCard`, `deleteCard`). Key and token are
required, as query parameters or an `Authorization: OAuth` header. Failures can be injected per
method and path prefix: 429 with Retry-After, 5xx, 400 (plain text, as Trello answers), malformed
JSON, delays. `webhook` builds a signed webhook delivery of a recorded action.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackServer

API = "/1/"
KEY = "trello-key"
TOKEN = "trello-token-secret"


@dataclass
class Call:
    """One HTTP request the fake received (credentials removed)."""

    method: str
    path: str
    params: dict[str, Any]
    body: Any
    at: int


@dataclass
class _Failure:
    status: int
    retry_after: int | None = None
    body: str | None = None
    delay: float | None = None


class _TrelloError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_OAUTH = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class FakeTrello:
    """The fake server and its state; tests seed it and read it."""

    key: str = KEY
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    boards: dict[str, dict[str, Any]] = field(default_factory=dict)
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._failures: list[tuple[str, str, _Failure]] = []
        self._ids = itertools.count(1)
        self._server: LoopbackServer | None = None
        self._stopped = threading.Event()
        self.bot = self.add_member("compliancebot", "Compliance Bot")
        self.person = self.add_member("pat", "Pat Person")

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> FakeTrello:
        """Listen on a free port of 127.0.0.1."""
        self._server = LoopbackServer(self._handle)
        self._stopped = self._server.stopped
        return self

    def stop(self) -> None:
        """Stop serving; delayed answers are released at once."""
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FakeTrello:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base our sink takes (Trello's is https://api.trello.com/1)."""
        assert self._server is not None, "start() first"
        return self._server.url + "/1"

    # ---- what tests set up and read -----------------------------------------------------------

    def _id(self) -> str:
        return f"{next(self._ids):024x}"

    def add_member(self, username: str, full_name: str) -> dict[str, Any]:
        """A Trello member (cards are assigned by member id)."""
        member = {"id": self._id(), "username": username, "fullName": full_name}
        self.members[member["id"]] = member
        return member

    def add_board(
        self,
        name: str,
        lists: tuple[str, ...] = ("To Do", "Doing", "Done"),
        labels: tuple[tuple[str, str], ...] = (
            ("critical", "red"),
            ("high", "orange"),
            ("medium", "yellow"),
            ("low", "green"),
            ("info", "blue"),
        ),
    ) -> dict[str, Any]:
        """A board with lists and labels; the bot and `person` are its members."""
        board_id = self._id()
        short = f"b{len(self.boards) + 1:07d}"
        board = {
            "id": board_id,
            "name": name,
            "desc": "",
            "closed": False,
            "shortLink": short,
            "url": f"https://trello.com/b/{short}",
            "idMembers": [self.bot["id"], self.person["id"]],
        }
        self.boards[board_id] = board
        for pos, list_name in enumerate(lists, start=1):
            lid = self._id()
            self.lists[lid] = {
                "id": lid,
                "name": list_name,
                "closed": False,
                "idBoard": board_id,
                "pos": pos * 16384,
            }
        for label_name, color in labels:
            lab = self._id()
            self.labels[lab] = {"id": lab, "idBoard": board_id, "name": label_name, "color": color}
        return board

    def list_named(self, board_id: str, name: str) -> dict[str, Any]:
        """A board's list by name."""
        return next(
            lst for lst in self.lists.values() if lst["idBoard"] == board_id and lst["name"] == name
        )

    def fail(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int,
        retry_after: int | None = None,
        body: str | None = None,
        delay: float | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` matching requests with a failure (they are still recorded)."""
        with self._lock:
            for _ in range(times):
                self._failures.append(
                    (method, path_prefix, _Failure(status, retry_after, body, delay))
                )

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        """Requests of one HTTP method whose API path starts with `path_prefix`."""
        with self._lock:
            return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def move(self, card_id: str, list_name: str) -> dict[str, Any]:
        """Move a card to another list as a person would; returns the recorded action."""
        with self._lock:
            card = self.cards[card_id]
            target = self.list_named(card["idBoard"], list_name)
            action = self._update_card(card, {"idList": target["id"]}, self.person)
            assert action is not None, "the card was already in that list"
            return action

    def archive(self, card_id: str) -> dict[str, Any]:
        """Archive (close) a card as a person would; returns the recorded action."""
        with self._lock:
            action = self._update_card(self.cards[card_id], {"closed": True}, self.person)
            assert action is not None, "the card was already archived"
            return action

    def delete(self, card_id: str) -> dict[str, Any]:
        """Delete a card as a person would; returns the recorded action."""
        with self._lock:
            return self._delete_card(self.cards[card_id], self.person)

    def comments(self, card_id: str) -> list[str]:
        """The comment texts on a card, oldest first."""
        with self._lock:
            return [
                a["data"]["text"]
                for a in reversed(self.actions)
                if a["type"] == "commentCard" and a["data"]["card"]["id"] == card_id
            ]

    def webhook(
        self, action: dict[str, Any], *, callback_url: str, secret: str
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Trello POSTs to a webhook's callback URL for an action."""
        board = self.boards[action["data"]["board"]["id"]]
        body = json.dumps({"action": action, "model": board}).encode()
        digest = hmac.new(secret.encode(), body + callback_url.encode(), hashlib.sha1).digest()
        headers = {
            "Content-Type": "application/json",
            "X-Trello-Webhook": base64.b64encode(digest).decode(),
        }
        return body, headers

    def wait_for(self, predicate: Callable[[FakeTrello], bool], timeout: float = 10.0) -> None:
        """Block until `predicate(self)` holds (checked after every request) or fail."""
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(self), timeout):
                raise AssertionError("condition not met")

    # ---- the server ---------------------------------------------------------------------------

    def _authorized(self, request: BaseHTTPRequestHandler, params: dict[str, Any]) -> str | None:
        """None when key and token are right, else Trello's plain-text complaint."""
        key, token = params.pop("key", None), params.pop("token", None)
        header = request.headers.get("Authorization") or ""
        if header.startswith("OAuth "):
            fields = dict(_OAUTH.findall(header))
            key = key or fields.get("oauth_consumer_key")
            token = token or fields.get("oauth_token")
        if key != self.key:
            return "invalid key"
        if token != self.token:
            return "invalid token"
        return None

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if not parts.path.startswith(API):
            self._send_text(request, 404, "Cannot " + method + " " + parts.path)
            return
        refused = self._authorized(request, params)
        if refused is not None:
            self._send_text(request, 401, refused)
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send_text(request, 400, "invalid JSON")
            return
        path = parts.path[len(API) :].rstrip("/")
        with self._lock:
            self.calls.append(Call(method, path, params, body, len(self.calls)))
            failure = None
            for i, (m, prefix, _f) in enumerate(self._failures):
                if m == method and path.startswith(prefix):
                    failure = self._failures.pop(i)[2]
                    break
            self._lock.notify_all()
        if failure is not None:
            if failure.delay:
                self._stopped.wait(failure.delay)
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            if failure.status == 429 and failure.body is None:
                answer = {
                    "error": "API_TOKEN_LIMIT_EXCEEDED",
                    "message": "Rate limit exceeded for the token",
                }
                self._send(request, 429, answer, headers)
            else:
                self._send_raw(
                    request,
                    failure.status,
                    (failure.body or f"injected {failure.status}").encode(),
                    "text/plain; charset=utf-8",
                    headers,
                )
            return
        args = {**params, **(body if isinstance(body, dict) else {})}
        with self._lock:
            try:
                status, answer = self._route(method, path.split("/"), args)
            except _TrelloError as exc:
                self._lock.notify_all()
                self._send_text(request, exc.status, exc.text)
                return
            self._lock.notify_all()
        self._send(request, status, answer)

    def _send(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        answer: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(answer).encode()
        self._send_raw(request, status, data, "application/json; charset=utf-8", headers)

    def _send_text(self, request: BaseHTTPRequestHandler, status: int, text: str) -> None:
        self._send_raw(request, status, text.encode(), "text/plain; charset=utf-8", None)

    @staticmethod
    def _send_raw(
        request: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None,
    ) -> None:
        try:
            request.send_response(status)
            request.send_header("Content-Type", content_type)
            request.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                request.send_header(key, value)
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ---- routes -------------------------------------------------------------------------------

    def _board(self, ref: str) -> dict[str, Any]:
        for board in self.boards.values():
            if ref in (board["id"], board["shortLink"]):
                return board
        raise _TrelloError(404 if len(ref) in (8, 24) else 400, "invalid id")

    def _card(self, ref: str) -> dict[str, Any]:
        for card in self.cards.values():
            if ref in (card["id"], card["shortLink"]):
                return card
        if not re.fullmatch(r"[0-9a-fA-F]{24}|\w{8}", ref):
            raise _TrelloError(400, "invalid id")
        raise _TrelloError(404, "The requested resource was not found.")

    def _route(  # noqa: PLR0911 - one branch per endpoint
        self, method: str, segments: list[str], args: dict[str, Any]
    ) -> tuple[int, Any]:
        head = segments[0]
        if method == "GET" and segments == ["members", "me", "boards"]:
            return 200, [b for b in self.boards.values() if not b["closed"]]
        if method == "GET" and segments[:2] == ["members", "me"] and len(segments) == 2:
            return 200, self.bot
        if head == "boards" and len(segments) >= 2 and method == "GET":
            board = self._board(segments[1])
            sub = segments[2] if len(segments) > 2 else None
            if sub is None:
                return 200, board
            if sub == "lists":
                wanted = args.get("filter", "open")
                return 200, [
                    lst
                    for lst in self.lists.values()
                    if lst["idBoard"] == board["id"] and (wanted == "all" or not lst["closed"])
                ]
            if sub == "labels":
                return 200, [lab for lab in self.labels.values() if lab["idBoard"] == board["id"]]
            if sub == "members":
                return 200, [self.members[m] for m in board["idMembers"]]
            if sub == "cards":
                which = segments[3] if len(segments) > 3 else args.get("filter", "open")
                return 200, [
                    self._card_json(c)
                    for c in self.cards.values()
                    if c["idBoard"] == board["id"] and (which == "all" or not c["closed"])
                ]
            if sub == "actions":
                return 200, self._actions(board, args)
        if head == "cards":
            return self._cards(method, segments[1:], args)
        raise _TrelloError(404, f"Cannot {method} /1/{'/'.join(segments)}")

    def _actions(self, board: dict[str, Any], args: dict[str, Any]) -> list[dict[str, Any]]:
        kinds = {k for k in str(args.get("filter", "all")).split(",") if k}
        since, before = args.get("since"), args.get("before")
        limit = int(args.get("limit", 50))
        if not 0 < limit <= 1000:
            raise _TrelloError(400, "invalid value for limit")
        out = []
        for action in self.actions:  # newest first, as Trello answers
            if action["data"]["board"]["id"] != board["id"]:
                continue
            if kinds - {"all"} and action["type"] not in kinds:
                continue
            if since and not self._after(action, str(since)):
                continue
            if before and self._after(action, str(before), inclusive=True):
                continue
            out.append(action)
            if len(out) == limit:
                break
        return out

    def _after(self, action: dict[str, Any], bound: str, *, inclusive: bool = False) -> bool:
        """Is the action newer than `bound` (an action id or an ISO date)?"""
        if re.fullmatch(r"[0-9a-f]{24}", bound):
            return bool(action["id"] >= bound if inclusive else action["id"] > bound)
        try:
            when = datetime.fromisoformat(bound.replace("Z", "+00:00"))
        except ValueError:
            raise _TrelloError(400, "invalid value for since") from None
        stamp = datetime.fromisoformat(action["date"].replace("Z", "+00:00"))
        return stamp >= when if inclusive else stamp > when

    def _record(self, kind: str, card: dict[str, Any], by: dict[str, Any], **data: Any) -> Any:
        board = self.boards[card["idBoard"]]
        lst = self.lists[card["idList"]]
        action = {
            "id": self._id(),
            "type": kind,
            "date": _now(),
            "idMemberCreator": by["id"],
            "memberCreator": by,
            "data": {
                "board": {
                    "id": board["id"],
                    "name": board["name"],
                    "shortLink": board["shortLink"],
                },
                "list": {"id": lst["id"], "name": lst["name"]},
                "card": {
                    "id": card["id"],
                    "name": card["name"],
                    "idShort": card["idShort"],
                    "shortLink": card["shortLink"],
                    "closed": card["closed"],
                    "idList": card["idList"],
                },
                **data,
            },
        }
        self.actions.insert(0, action)
        return action

    def _card_json(self, card: dict[str, Any]) -> dict[str, Any]:
        return {
            **card,
            "labels": [self.labels[lab] for lab in card["idLabels"]],
        }

    def _labels_of(self, board_id: str, raw: Any) -> list[str]:
        ids = [i for i in (raw.split(",") if isinstance(raw, str) else raw or []) if i]
        for lab in ids:
            if lab not in self.labels or self.labels[lab]["idBoard"] != board_id:
                raise _TrelloError(400, "invalid value for idLabels")
        return ids

    def _cards(  # noqa: PLR0911, PLR0912 - one branch per endpoint
        self, method: str, rest: list[str], args: dict[str, Any]
    ) -> tuple[int, Any]:
        if not rest:
            if method != "POST":
                raise _TrelloError(404, "Cannot GET /1/cards")
            return 200, self._create(args)
        card = self._card(rest[0])
        sub = rest[1:]
        if not sub:
            if method == "GET":
                return 200, self._card_json(card)
            if method == "PUT":
                self._update_card(card, args, self.bot)
                return 200, self._card_json(card)
            if method == "DELETE":
                self._delete_card(card, self.bot)
                return 200, {"limits": {}}
        if sub == ["idList"] and method == "PUT":
            self._update_card(card, {"idList": args.get("value")}, self.bot)
            return 200, self._card_json(card)
        if sub == ["closed"] and method == "PUT":
            self._update_card(card, {"closed": args.get("value")}, self.bot)
            return 200, self._card_json(card)
        if sub == ["actions", "comments"] and method == "POST":
            text = str(args.get("text") or "")
            if not text:
                raise _TrelloError(400, "invalid value for text")
            action = self._record("commentCard", card, self.bot, text=text)
            card["dateLastActivity"] = action["date"]
            return 200, action
        if sub in (["idMembers"], ["members"]) and method == "POST":
            member = str(args.get("value") or "")
            if member not in self.members:
                raise _TrelloError(400, "invalid value for value")
            if member not in card["idMembers"]:
                card["idMembers"].append(member)
            return 200, [self.members[m] for m in card["idMembers"]]
        if len(sub) == 2 and sub[0] == "idMembers" and method == "DELETE":
            if sub[1] in card["idMembers"]:
                card["idMembers"].remove(sub[1])
            return 200, [self.members[m] for m in card["idMembers"]]
        raise _TrelloError(404, f"Cannot {method} /1/cards/{'/'.join(rest)}")

    def _create(self, args: dict[str, Any]) -> dict[str, Any]:
        list_id = str(args.get("idList") or "")
        if list_id not in self.lists:
            raise _TrelloError(400, "invalid value for idList")
        name = str(args.get("name") or "")
        if not name or len(name) > 16384:
            raise _TrelloError(400, "invalid value for name")
        desc = str(args.get("desc") or "")
        if len(desc) > 16384:
            raise _TrelloError(400, "invalid value for desc")
        board_id = self.lists[list_id]["idBoard"]
        card_id = self._id()
        short = f"c{len(self.cards) + 1:07d}"
        idshort = 1 + sum(1 for c in self.cards.values() if c["idBoard"] == board_id)
        members = [m for m in str(args.get("idMembers") or "").split(",") if m]
        card = {
            "id": card_id,
            "name": name,
            "desc": desc,
            "closed": False,
            "idBoard": board_id,
            "idList": list_id,
            "idLabels": self._labels_of(board_id, args.get("idLabels")),
            "idMembers": members,
            "idShort": idshort,
            "shortLink": short,
            "shortUrl": f"https://trello.com/c/{short}",
            "url": f"https://trello.com/c/{short}/{idshort}",
            "pos": 16384.0 * idshort,
            "due": None,
            "dueComplete": False,
            "badges": {"checkItems": 0, "comments": 0},
            "idChecklists": [],
            "dateLastActivity": _now(),
        }
        self.cards[card_id] = card
        self._record("createCard", card, self.bot)
        return self._card_json(card)

    def _update_card(
        self, card: dict[str, Any], args: dict[str, Any], by: dict[str, Any]
    ) -> dict[str, Any] | None:
        old: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        if "idList" in args:
            target = str(args["idList"])
            if target not in self.lists or self.lists[target]["idBoard"] != card["idBoard"]:
                raise _TrelloError(400, "invalid value for idList")
            if target != card["idList"]:
                before = self.lists[card["idList"]]
                old["idList"] = card["idList"]
                card["idList"] = target
                extra["listBefore"] = {"id": before["id"], "name": before["name"]}
                extra["listAfter"] = {"id": target, "name": self.lists[target]["name"]}
        if "closed" in args:
            closed = str(args["closed"]).lower() == "true"
            if closed != card["closed"]:
                old["closed"] = card["closed"]
                card["closed"] = closed
        if "idMembers" in args:
            raw = args["idMembers"]
            members = [m for m in (raw.split(",") if isinstance(raw, str) else raw or []) if m]
            for m in members:
                if m not in self.members:
                    raise _TrelloError(400, "invalid value for idMembers")
            card["idMembers"] = members
        for name in ("name", "desc"):
            if name in args and args[name] != card[name]:
                old[name] = card[name]
                card[name] = str(args[name])
        if "idLabels" in args:
            card["idLabels"] = self._labels_of(card["idBoard"], args["idLabels"])
        if not old:
            return None
        action = self._record("updateCard", card, by, old=old, **extra)
        card["dateLastActivity"] = action["date"]
        return action  # type: ignore[no-any-return]

    def _delete_card(self, card: dict[str, Any], by: dict[str, Any]) -> dict[str, Any]:
        action = self._record("deleteCard", card, by)
        action["data"]["card"] = {"id": card["id"], "idShort": card["idShort"]}
        del self.cards[card["id"]]
        return action  # type: ignore[no-any-return]
