"""A fake Slack Web API over real HTTP on 127.0.0.1, speaking Slack's wire format.

Requests arrive form-encoded or as JSON (slack_sdk sends JSON for chat.* and views.*), with the
token in `Authorization: Bearer`. Answers are `{"ok": true, ...}` or `{"ok": false, "error": ...}`
with HTTP 200, as Slack answers. Failures can be injected per method: 429 with Retry-After, 5xx,
`ok: false` errors, malformed bodies, delays, and a reset after acting (the call takes effect,
then the connection closes unanswered). Blocks are checked as Slack checks them: two elements
with one action_id in a block, or two blocks with one block_id, are refused (`invalid_blocks`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackServer

JSON_FIELDS = ("blocks", "metadata", "view", "files", "attachments")


@dataclass
class Call:
    """One Web API call as the fake received it."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: int


@dataclass
class _Failure:
    status: int = 200
    error: str | None = None
    retry_after: int | str | None = None  # seconds, or an HTTP-date
    body: str | None = None
    delay: float | None = None
    reset: bool = False


def block_errors(blocks: Any, where: str = "blocks") -> list[str]:
    """What Slack would refuse in a list of blocks: duplicate action_ids in one block, duplicate
    block_ids in the list. Empty when Slack would take it."""
    if not blocks:
        return []
    if not isinstance(blocks, list):
        return [f"{where} must be a list"]
    errors = []
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            errors.append(f"{where}[{i}] must be an object")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                errors.append(f"duplicate block_id {block_id!r} [json-pointer:/{where}/{i}]")
            block_ids.add(block_id)
        elements = [block.get("accessory"), block.get("element"), *(block.get("elements") or [])]
        action_ids: set[str] = set()
        for element in elements:
            action_id = element.get("action_id") if isinstance(element, dict) else None
            if action_id is None:
                continue
            if action_id in action_ids:
                errors.append(f"duplicate action_id {action_id!r} [json-pointer:/{where}/{i}]")
            action_ids.add(action_id)
    return errors


@dataclass
class FakeSlack:
    """The fake server and everything it has seen."""

    bot_token: str = "xoxb-test"
    app_token: str = "xapp-test"
    team_id: str = "T0001"
    bot_user_id: str = "UBOT"
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    views_opened: list[dict[str, Any]] = field(default_factory=list)
    views_published: dict[str, dict[str, Any]] = field(default_factory=dict)
    views_updated: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    socket_url: str | None = None
    # Shared files: what files.info answers per ID (a test may make it lie), where a download
    # redirects to, which downloads are sent without Content-Length, and every download asked.
    file_infos: dict[str, dict[str, Any]] = field(default_factory=dict)
    file_redirects: dict[str, str] = field(default_factory=dict)
    unsized_downloads: set[str] = field(default_factory=set)
    downloads: list[dict[str, Any]] = field(default_factory=list)
    # Called with each Web API call as it arrives, before it is answered (a test moves its
    # clock here to make a call "take" time).
    on_call: Callable[[Call], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._failures: dict[str, list[_Failure]] = {}
        self._ts = itertools.count(1)
        self._epoch = int(time.time())
        self._ids = itertools.count(1)
        self._uploads: dict[str, bytes] = {}
        self._names: dict[str, str] = {}
        self._stopped = threading.Event()
        self._server: LoopbackServer | None = None

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        """Listen on a free port of 127.0.0.1."""
        self._server = LoopbackServer(lambda request, _method: self._handle(request))
        self._stopped = self._server.stopped
        return self

    def stop(self) -> None:
        """Stop serving; delayed answers are released at once."""
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        """http://127.0.0.1:<port>"""
        assert self._server is not None, "start() first"
        return self._server.url

    @property
    def base_url(self) -> str:
        """What WebClient(base_url=...) takes."""
        return self.root_url + "/api/"

    # ---- what tests set up and read -----------------------------------------------------------

    def add_user(
        self, user_id: str, *, name: str, email: str, tz: str = "UTC", is_admin: bool = False
    ) -> None:
        """A workspace member for users.info and users.lookupByEmail."""
        self.users[user_id] = {
            "id": user_id,
            "name": name,
            "real_name": name,
            "tz": tz,
            "is_admin": is_admin,
            "profile": {"email": email, "real_name": name},
        }

    def fail(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | str | None = None,
        body: str | None = None,
        delay: float | None = None,
        times: int = 1,
        reset: bool = False,
    ) -> None:
        """Answer the next `times` calls of `method` with a failure (the call is still recorded).

        `reset=True`: the call takes effect (a post is posted), then the connection is reset
        without an answer, as when a connection drops after Slack accepted a request.
        """
        with self._lock:
            self._failures.setdefault(method, []).extend(
                _Failure(status, error, retry_after, body, delay, reset) for _ in range(times)
            )

    def calls_to(self, method: str) -> list[Call]:
        """The calls of one method, in order."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """The message as it stands now."""
        with self._lock:
            for m in self.messages.get(channel, []):
                if m["ts"] == ts:
                    return m
        raise KeyError(f"no message {ts} in {channel}")

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies in a thread, in order."""
        with self._lock:
            return [m for m in self.messages.get(channel, []) if m.get("thread_ts") == thread_ts]

    def response_url(self) -> str:
        """A fresh response_url whose POSTs are recorded in `responses`."""
        return f"{self.root_url}/response/{next(self._ids)}"

    def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout: float = 10.0) -> None:
        """Block until `predicate(self)` holds (checked after every request) or fail."""
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"condition not met; calls: {[c.method for c in self.calls]}")

    # ---- the server ---------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = urlsplit(request.path).path
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        if path.startswith("/response/"):
            self._record_response(request, path, raw)
            return
        if path.startswith("/files-pri/"):  # a file's url_private_download
            self._download(request, path)
            return
        if path.startswith("/upload/"):
            with self._lock:
                self._uploads[path.rsplit("/", 1)[1]] = raw
                self._lock.notify_all()
            self._send(request, 200, "OK", content_type="text/plain")
            return
        if not path.startswith("/api/"):
            self._send(request, 404, json.dumps({"ok": False, "error": "not_found"}))
            return
        method = path[len("/api/") :]
        params = self._params(request, raw)
        token = params.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        call = Call(method, params, token, 0)
        with self._lock:
            call.at = len(self.calls)
            self.calls.append(call)
            queued = self._failures.get(method) or []
            failure = queued.pop(0) if queued else None
            self._lock.notify_all()
        if self.on_call is not None:
            self.on_call(call)
        if failure is not None and not failure.reset:
            self._answer_failure(request, failure)
            return
        answer = self._dispatch(method, params, token)
        with self._lock:
            self._lock.notify_all()
        if failure is not None:  # acted, then the connection drops before the answer
            self._reset(request)
            return
        self._send(request, 200, json.dumps(answer))

    @staticmethod
    def _reset(request: BaseHTTPRequestHandler) -> None:
        # SO_LINGER 0: closing sends RST, so the client sees a reset, not an orderly end.
        request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request.close_connection = True
        request.connection.close()

    def _record_response(self, request: BaseHTTPRequestHandler, path: str, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"raw": raw.decode(errors="replace")}
        errors = block_errors(body.get("blocks")) if isinstance(body, dict) else []
        if errors:  # Slack answers a response_url with bad blocks 400 and shows nothing
            with self._lock:
                self._lock.notify_all()
            self._send(request, 400, "invalid_blocks", content_type="text/plain")
            return
        with self._lock:
            self.responses.append({**body, "url": path})
            self._lock.notify_all()
        self._send(request, 200, "ok", content_type="text/plain")

    def _answer_failure(self, request: BaseHTTPRequestHandler, failure: _Failure) -> None:
        if failure.delay:
            self._stopped.wait(failure.delay)
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        if failure.body is not None:
            self._send(request, failure.status, failure.body, headers=headers)
        elif failure.status != 200:
            error = failure.error or ("ratelimited" if failure.status == 429 else "server_error")
            self._send(
                request, failure.status, json.dumps({"ok": False, "error": error}), headers=headers
            )
        elif failure.error:
            self._send(request, 200, json.dumps({"ok": False, "error": failure.error}))
        else:
            self._send(request, 200, json.dumps({"ok": True}))

    @staticmethod
    def _params(request: BaseHTTPRequestHandler, raw: bytes) -> dict[str, Any]:
        params: dict[str, Any] = {}
        query = urlsplit(request.path).query
        for key, values in parse_qs(query).items():
            params[key] = values[-1]
        content_type = request.headers.get("Content-Type", "")
        if "application/json" in content_type and raw:
            params.update(json.loads(raw))
        elif raw:
            for key, values in parse_qs(raw.decode(), keep_blank_values=True).items():
                params[key] = values[-1]
        for key in JSON_FIELDS:
            if isinstance(params.get(key), str):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(params[key])
        return params

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler,
        status: int,
        body: str,
        *,
        content_type: str = "application/json; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", content_type)
            request.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                request.send_header(key, value)
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    # ---- methods ------------------------------------------------------------------------------

    def _dispatch(self, method: str, p: dict[str, Any], token: str | None) -> dict[str, Any]:
        if method == "apps.connections.open":
            if token != self.app_token:
                return {"ok": False, "error": "invalid_auth"}
            return {"ok": True, "url": self.socket_url}
        if token != self.bot_token:
            return {"ok": False, "error": "invalid_auth"}
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        refused = self._refuse_blocks(method, p)
        if refused is not None:
            return refused
        with self._lock:
            result: dict[str, Any] = handler(p)
            return result

    @staticmethod
    def _refuse_blocks(method: str, p: dict[str, Any]) -> dict[str, Any] | None:
        """Slack's answer to a message or view whose blocks it would not take, else None."""
        if method.startswith("views."):
            view = p.get("view")
            blocks = view.get("blocks") if isinstance(view, dict) else None
            errors = block_errors(blocks, "view/blocks")
            if errors:
                return {
                    "ok": False,
                    "error": "invalid_arguments",
                    "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]},
                }
            return None
        if method.startswith("chat."):
            errors = block_errors(p.get("blocks"))
            if errors:
                return {"ok": False, "error": "invalid_blocks", "errors": errors}
        return None

    def _next_ts(self) -> str:
        # Real seconds, as Slack's ts are: history's `oldest` filter compares them with times.
        return f"{self._epoch}.{next(self._ts):06d}"

    def _m_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "team_id": self.team_id,
            "user": "compliancebot",
            "user_id": self.bot_user_id,
            "bot_id": "BBOT",
        }

    def _m_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        channel = str(p.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel.startswith("CMISSING"):
            return {"ok": False, "error": "channel_not_found"}
        if not p.get("text") and not p.get("blocks"):
            return {"ok": False, "error": "no_text"}
        message = {
            "ts": self._next_ts(),
            "channel": channel,
            "text": p.get("text", ""),
            "blocks": p.get("blocks") or [],
            "thread_ts": p.get("thread_ts") or None,
            "metadata": p.get("metadata"),
            "user": self.bot_user_id,
            "updated": 0,
        }
        self.messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _m_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(p.get("channel")), str(p.get("ts"))
        for m in self.messages.get(channel, []):
            if m["ts"] == ts:
                if "text" in p:
                    m["text"] = p["text"]
                if "blocks" in p:
                    m["blocks"] = p["blocks"] or []
                m["updated"] += 1
                return {"ok": True, "channel": channel, "ts": ts, "text": m["text"]}
        return {"ok": False, "error": "message_not_found"}

    def _m_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        self.ephemerals.append(p)
        return {"ok": True, "message_ts": self._next_ts()}

    def _m_chat_getPermalink(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {
            "ok": True,
            "channel": p.get("channel"),
            "permalink": f"https://fake.slack.com/archives/{p.get('channel')}/p{p.get('message_ts')}",
        }

    def _history(
        self, channel: str, p: dict[str, Any], items: list[dict[str, Any]]
    ) -> dict[str, Any]:
        with_meta = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
        oldest = float(p.get("oldest") or 0)
        limit = int(p.get("limit") or 100)
        start = int(p.get("cursor") or 0)
        chosen = [m for m in items if float(m["ts"]) >= oldest]
        page = chosen[start : start + limit]
        out = []
        for m in page:
            shown = {k: v for k, v in m.items() if k not in ("metadata", "channel", "updated")}
            if with_meta and m.get("metadata"):
                shown["metadata"] = m["metadata"]
            out.append(shown)
        more = start + limit < len(chosen)
        return {
            "ok": True,
            "messages": out,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _m_conversations_open(self, p: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(p.get("users") or "").split(",") if u]
        if len(users) != 1:
            return {"ok": False, "error": "not_enough_users" if not users else "too_many_users"}
        if users[0].startswith("UMISSING"):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": self.dm_channel(users[0])}}

    def dm_channel(self, user: str) -> str:
        """The id of the bot's DM with a user (what conversations.open answers)."""
        return "D" + user[1:]

    def _m_conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel"))
        if channel not in self.messages and channel.startswith("CMISSING"):
            return {"ok": False, "error": "channel_not_found"}
        top = [m for m in self.messages.get(channel, []) if not m.get("thread_ts")]
        return self._history(channel, p, list(reversed(top)))

    def _m_conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(p.get("channel")), str(p.get("ts"))
        items = [
            m for m in self.messages.get(channel, []) if m["ts"] == ts or m.get("thread_ts") == ts
        ]
        if not items:
            return {"ok": False, "error": "thread_not_found"}
        return self._history(channel, p, items)

    def _m_views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = dict(p.get("view") or {})
        view["id"] = f"V{next(self._ids):05d}"
        self.views_opened.append({"trigger_id": p["trigger_id"], "view": view})
        return {"ok": True, "view": view}

    def _m_views_push(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._m_views_open(p)

    def _m_views_update(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("view_id") and not p.get("external_id"):
            return {"ok": False, "error": "not_found"}
        self.views_updated.append(p)
        return {"ok": True, "view": p.get("view")}

    def _m_views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        user = str(p.get("user_id") or "")
        if not user:
            return {"ok": False, "error": "invalid_arguments"}
        self.views_published[user] = p.get("view") or {}
        return {"ok": True, "view": p.get("view")}

    def _m_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(p.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _m_users_lookupByEmail(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        for user in self.users.values():
            if user["profile"]["email"] == p.get("email"):
                return {"ok": True, "user": user}
        return {"ok": False, "error": "users_not_found"}

    def _m_usergroups_users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        group = str(p.get("usergroup"))
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def shared_file(self, name: str, content: bytes) -> dict[str, Any]:
        """A file a user uploaded (as a modal's file_input hands it over): id, name, URLs."""
        file_id = f"F{next(self._ids):06d}"
        with self._lock:
            self._uploads[file_id] = content
            self._names[file_id] = name
        url = f"{self.root_url}/files-pri/{self.team_id}-{file_id}/{name}"
        info = {
            "id": file_id,
            "name": name,
            "size": len(content),
            "url_private": url,
            "url_private_download": url + "?download=1",
        }
        with self._lock:
            self.file_infos[file_id] = dict(info)
        return info

    def _m_files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        info = self.file_infos.get(str(p.get("file")))
        if info is None:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "file": dict(info)}

    def _download(self, request: BaseHTTPRequestHandler, path: str) -> None:
        file_id = path.split("/")[2].split("-", 1)[-1]
        auth = request.headers.get("Authorization", "")
        with self._lock:
            self.downloads.append({"path": path, "authorization": auth})
            redirect = self.file_redirects.get(file_id)
        if redirect is not None:
            self._send(request, 302, "", content_type="text/plain", headers={"Location": redirect})
            return
        if auth != f"Bearer {self.bot_token}":
            # Slack answers a sign-in page, not an error, to a request without the token.
            self._send(request, 200, "<html>sign in</html>", content_type="text/html")
            return
        with self._lock:
            content = self._uploads.get(file_id)
        if content is None:
            self._send(request, 404, "not found", content_type="text/plain")
            return
        try:
            request.send_response(200)
            request.send_header("Content-Type", "application/octet-stream")
            if file_id not in self.unsized_downloads:
                request.send_header("Content-Length", str(len(content)))
            request.end_headers()
            # In pieces, as a large file arrives; without a length the body ends at the close.
            for start in range(0, len(content), 256 * 1024):
                request.wfile.write(content[start : start + 256 * 1024])
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _m_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        file_id = f"F{next(self._ids):06d}"
        self._uploads.setdefault(file_id, b"")
        self._names[file_id] = str(p.get("filename") or "")
        return {"ok": True, "upload_url": f"{self.root_url}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        done = []
        for f in p.get("files") or []:
            file_id = str(f["id"])
            if file_id not in self._uploads:
                return {"ok": False, "error": "file_not_found"}
            record = {
                "id": file_id,
                "filename": self._names.get(file_id),
                "title": f.get("title"),
                "content": self._uploads[file_id],
                "channel_id": p.get("channel_id"),
                "initial_comment": p.get("initial_comment"),
                "thread_ts": p.get("thread_ts"),
            }
            self.files.append(record)
            done.append({"id": file_id, "title": f.get("title")})
        return {"ok": True, "files": done}
