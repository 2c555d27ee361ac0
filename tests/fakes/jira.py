"""A fake Jira (REST API v2) over real HTTP on 127.0.0.1, for the `jira` client and our sink.

It serves what ticket sync needs: serverInfo (Server/Data Center or Cloud), projects (with
their components), issue types, priorities, fields, users, issue create/get/update/delete,
assignee, comments, transitions, issue properties, and JQL search (`/search` on Server,
`/search/jql` with page tokens on Cloud, where `/search` answers 410; `expand=transitions` adds
each issue's transitions). JQL is the subset trackers are queried with:
clauses joined by AND over project, key, labels, status, statusCategory, issuetype and updated,
with =, !=, >=, <=, >, <, IN (dates absolute or relative, "-15m"), and ORDER BY. Failures can
be injected per method and path prefix: 429 with Retry-After, 5xx, 400 with Jira's error body,
malformed JSON, delays. `rate_limit` answers 429 past that many requests per second, as Jira
Cloud does; `webhook` builds the body Jira POSTs for an issue event, and `delivery` the body and
headers (`X-Atlassian-Webhook-Identifier`, the same on each retry; `X-Hub-Signature`). A person
can create issues of their own (`add_issue`) and move one to another project (`move`): the old
key then answers GET with the moved issue, as Jira does. A JQL `key` clause naming an issue
that does not exist is refused (400) unless `validateQuery` is false, as Jira Server does.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackServer

API = "/rest/api/2/"
DONE_CATEGORY = {"id": 3, "key": "done", "name": "Done"}
TODO_CATEGORY = {"id": 2, "key": "new", "name": "To Do"}
IN_PROGRESS_CATEGORY = {"id": 4, "key": "indeterminate", "name": "In Progress"}


@dataclass
class Call:
    """One HTTP request the fake received."""

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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


@dataclass
class FakeJira:
    """The fake server and its state; tests seed it and read it."""

    cloud: bool = False
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # status name -> (id, category); transitions go from any status to any other.
    statuses: dict[str, tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: {
            "To Do": ("1", TODO_CATEGORY),
            "In Progress": ("3", IN_PROGRESS_CATEGORY),
            "Done": ("10001", DONE_CATEGORY),
        }
    )
    # transition name -> target status
    transitions: dict[str, str] = field(
        default_factory=lambda: {"Start": "In Progress", "Done": "Done", "Reopen": "To Do"}
    )
    # transition name -> the only statuses it is offered from (a workflow); unlisted: from any.
    transition_from: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Requests per second allowed (a token bucket of one second's worth); None: no limit.
    rate_limit: float | None = None
    # Stricter: at most `rate_limit` requests arriving in ANY one-second window (a sliding log).
    sliding_window: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._failures: list[tuple[str, str, _Failure]] = []
        self._holds: list[tuple[str, str, float]] = []
        self._ids = itertools.count(10000)
        self._stopped = threading.Event()
        self._server: LoopbackServer | None = None
        self.projects: dict[str, dict[str, Any]] = {}
        self.issue_types = [
            {"id": "10001", "name": "Task", "subtask": False},
            {"id": "10002", "name": "Bug", "subtask": False},
        ]
        self.priorities = [
            {"id": str(i), "name": name}
            for i, name in enumerate(["Highest", "High", "Medium", "Low", "Lowest"], start=1)
        ]
        # As Jira lists them, with the JQL names (clauseNames) clients map field names by.
        self.fields = [
            {
                "id": "summary",
                "name": "Summary",
                "custom": False,
                "clauseNames": ["summary"],
                "schema": {"type": "string"},
            },
            {
                "id": "labels",
                "name": "Labels",
                "custom": False,
                "clauseNames": ["labels"],
                "schema": {"type": "array"},
            },
            {
                "id": "status",
                "name": "Status",
                "custom": False,
                "clauseNames": ["status"],
                "schema": {"type": "status"},
            },
            {
                "id": "customfield_10050",
                "name": "Compliance Control",
                "custom": True,
                "clauseNames": ["cf[10050]", "Compliance Control"],
                "schema": {"type": "string"},
            },
        ]
        self.add_project("SEC", "Security")
        self.moved: dict[str, str] = {}  # old key -> the key an issue moved to
        self.limited = 0  # requests answered 429 by the rate limit
        self._bucket = (0.0, 0.0)  # (tokens, at)
        self._arrivals: deque[float] = deque()  # with sliding_window

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> FakeJira:
        """Listen on a free port of 127.0.0.1."""
        self._server = LoopbackServer(self._handle)
        self._stopped = self._server.stopped
        return self

    def stop(self) -> None:
        """Stop serving; delayed answers are released at once."""
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> FakeJira:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server URL the `jira` client takes."""
        assert self._server is not None, "start() first"
        return self._server.url

    # ---- what tests set up and read -----------------------------------------------------------

    def add_project(self, key: str, name: str) -> dict[str, Any]:
        """A project issues can be created in."""
        project = {"id": str(next(self._ids)), "key": key, "name": name}
        self.projects[key] = project
        return project

    def add_component(self, project: str, name: str) -> dict[str, Any]:
        """A component of a project (issues may name it)."""
        component = {"id": str(next(self._ids)), "name": name, "project": project}
        self.projects[project].setdefault("_components", []).append(component)
        return component

    def add_user(self, *, name: str, email: str, account_id: str | None = None) -> dict[str, Any]:
        """A user: found by `user/search` (Cloud: accountId; Server: name)."""
        user: dict[str, Any] = {
            "name": name,
            "key": name,
            "accountId": account_id or f"acc-{name}",
            "emailAddress": email,
            "displayName": name.title(),
            "active": True,
        }
        self.users[user["accountId"] if self.cloud else name] = user
        return user

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

    def hold_reply(self, method: str, path_prefix: str, *, seconds: float) -> None:
        """Do the next matching request, then wait before answering (a caller may die meanwhile)."""
        with self._lock:
            self._holds.append((method, path_prefix, seconds))

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        """Requests of one HTTP method whose API path starts with `path_prefix`."""
        with self._lock:
            return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def set_status(self, key: str, status: str) -> None:
        """Move an issue as a person would in the tracker's UI."""
        with self._lock:
            self._set_status(self.issues[key], status)

    def delete(self, key: str) -> None:
        """Delete an issue as a person would."""
        with self._lock:
            self.issues.pop(key)

    def add_issue(self, project: str, summary: str, labels: list[str]) -> str:
        """An issue a person makes (any labels they like); returns its key."""
        with self._lock:
            fields = {"project": {"key": project}, "issuetype": {"name": "Task"}}
            made = self._create({"fields": {**fields, "summary": summary, "labels": labels}})
            return str(made["key"])

    def move(self, key: str, project: str) -> str:
        """Move an issue to another project as a person would; returns its new key."""
        with self._lock:
            issue = self.issues.pop(key)
            target = self.projects[project]
            target["_last"] = number = int(target.get("_last", 0)) + 1
            issue["key"] = new = f"{project}-{number}"
            issue["fields"]["project"] = target
            issue["fields"]["updated"] = _now()
            self.issues[new] = issue
            self.moved[key] = new
            for old, to in self.moved.items():
                if to == key:
                    self.moved[old] = new
            return new

    def delivery(
        self, event: str, key: str, *, secret: str, identifier: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Jira POSTs for an issue event: a fresh delivery identifier
        (Jira sends the same one again on each retry) and the Cloud signature."""
        body = json.dumps(self.webhook(event, key)).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {
            "Content-Type": "application/json",
            "X-Atlassian-Webhook-Identifier": identifier or str(uuid.uuid4()),
            "X-Hub-Signature": f"sha256={digest}",
        }

    def webhook(self, event: str, key: str) -> dict[str, Any]:
        """The JSON body Jira POSTs to a webhook for an issue event (jira:issue_updated, ...)."""
        with self._lock:
            issue = self.issues.get(key) or {"key": key, "fields": {}}
            return {
                "timestamp": int(datetime.now(UTC).timestamp() * 1000),
                "webhookEvent": event,
                "issue_event_type_name": "issue_generic",
                "user": {"name": "pat", "accountId": "acc-pat"},
                "issue": json.loads(json.dumps(issue)),
            }

    def _over_limit(self) -> bool:
        """Take a token from the bucket; True when there is none (the caller answers 429)."""
        if self.rate_limit is None:
            return False
        now = time.monotonic()
        if self.sliding_window:
            arrivals = self._arrivals
            while arrivals and arrivals[0] <= now - 1.0:
                arrivals.popleft()
            if len(arrivals) >= self.rate_limit:
                self.limited += 1
                return True
            arrivals.append(now)
            return False
        tokens, at = self._bucket
        tokens = (
            min(self.rate_limit, tokens + (now - at) * self.rate_limit) if at else self.rate_limit
        )
        if tokens < 1.0:
            self._bucket = (tokens, now)
            self.limited += 1
            return True
        self._bucket = (tokens - 1.0, now)
        return False

    def wait_for(self, predicate: Callable[[FakeJira], bool], timeout: float = 10.0) -> None:
        """Block until `predicate(self)` holds (checked after every request) or fail."""
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(self), timeout):
                raise AssertionError("condition not met")

    # ---- the server ---------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(request, 400, {"errorMessages": ["Unexpected character"], "errors": {}})
            return
        path = parts.path.replace("/rest/api/latest/", API, 1)
        if not path.startswith(API):
            self._send(request, 404, {"errorMessages": ["Not found"], "errors": {}})
            return
        path = path[len(API) :]
        with self._lock:
            self.calls.append(Call(method, path, params, body, len(self.calls)))
            failure = _take(self._failures, method, path)
            if failure is None and self._over_limit():
                failure = _Failure(429, retry_after=1)
            self._lock.notify_all()
        if failure is not None:
            if failure.delay:
                self._stopped.wait(failure.delay)
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            if failure.body is not None:
                self._send_raw(request, failure.status, failure.body.encode(), headers)
            else:
                self._send(
                    request,
                    failure.status,
                    {"errorMessages": [f"injected {failure.status}"], "errors": {}},
                    headers,
                )
            return
        with self._lock:
            try:
                status, answer = self._route(method, path, params, body)
            except _JiraError as exc:
                status, answer = exc.status, {"errorMessages": exc.messages, "errors": exc.errors}
            hold = _take(self._holds, method, path)
            self._lock.notify_all()
        if hold:
            self._stopped.wait(hold)
        self._send(request, status, answer)

    def _send(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        answer: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = b"" if answer is None else json.dumps(answer).encode()
        self._send_raw(request, status, data, headers)

    @staticmethod
    def _send_raw(
        request: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str] | None
    ) -> None:
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json;charset=UTF-8")
            request.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                request.send_header(key, value)
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ---- routes -------------------------------------------------------------------------------

    def _route(  # noqa: PLR0911, PLR0912 - one branch per endpoint
        self, method: str, path: str, params: dict[str, Any], body: Any
    ) -> tuple[int, Any]:
        segments = path.strip("/").split("/")
        head = segments[0]
        if method == "GET" and path == "serverInfo":
            return 200, {
                "baseUrl": self.url,
                "version": "1001.0.0" if self.cloud else "9.12.0",
                "versionNumbers": [1001, 0, 0] if self.cloud else [9, 12, 0],
                "deploymentType": "Cloud" if self.cloud else "Server",
                "serverTitle": "Fake Jira",
            }
        if method == "GET" and path == "myself":
            return 200, {"name": "compliancebot", "accountId": "acc-bot", "active": True}
        if method == "GET" and path == "field":
            return 200, self.fields
        if method == "GET" and path == "priority":
            return 200, self.priorities
        if method == "GET" and path == "issuetype":
            return 200, self.issue_types
        if method == "GET" and head == "project":
            if len(segments) == 1:
                return 200, list(self.projects.values())
            project = self.projects.get(segments[1])
            if project is None:
                raise _JiraError(404, [f"No project could be found with key '{segments[1]}'."])
            if len(segments) == 3 and segments[2] == "components":
                return 200, list(project.get("_components", []))
            if len(segments) == 3 and segments[2] == "statuses":
                return 200, [
                    {"name": t["name"], "statuses": self._status_list()} for t in self.issue_types
                ]
            return 200, {**project, "issueTypes": self.issue_types}
        if method == "GET" and path == "user/search":
            query = str(params.get("query") or params.get("username") or "").lower()
            found = [
                u
                for u in self.users.values()
                if query in (u["emailAddress"].lower(), u["name"].lower(), u["accountId"].lower())
            ]
            return 200, [
                {**u, "self": f"{self.url}{API}user?accountId={u['accountId']}"} for u in found
            ]
        if head == "search" and len(segments) == 1:
            if self.cloud:
                raise _JiraError(410, ["The requested API has been removed. Use /search/jql."])
            return 200, self._search(params if method == "GET" else body or {}, paged=False)
        if path == "search/jql":
            if not self.cloud:
                raise _JiraError(404, ["Not found"])
            return 200, self._search(params if method == "GET" else body or {}, paged=True)
        if head == "issue":
            return self._issue(method, segments[1:], params, body)
        raise _JiraError(404, [f"no fake for {method} {path}"])

    def _transition_list(self, issue: dict[str, Any]) -> list[dict[str, Any]]:
        """The transitions the workflow offers from the issue's status."""
        status = issue["fields"]["status"]["name"]
        return [
            {"id": str(i), "name": name, "to": {"name": target}}
            for i, (name, target) in enumerate(self.transitions.items(), start=11)
            if status in self.transition_from.get(name, (status,))
        ]

    def _status_list(self) -> list[dict[str, Any]]:
        return [
            {"id": sid, "name": name, "statusCategory": cat}
            for name, (sid, cat) in self.statuses.items()
        ]

    def _add_comment(self, issue: dict[str, Any], text: str) -> dict[str, Any]:
        comments = issue["fields"]["comment"]["comments"]
        comment = {
            "id": str(next(self._ids)),
            "body": text,
            "author": {"name": "compliancebot"},
            "created": _now(),
        }
        comments.append(comment)
        issue["fields"]["comment"]["total"] = len(comments)
        issue["fields"]["updated"] = _now()
        return comment

    def _set_status(self, issue: dict[str, Any], status: str) -> None:
        sid, category = self.statuses[status]
        issue["fields"]["status"] = {"id": sid, "name": status, "statusCategory": category}
        issue["fields"]["resolution"] = {"name": "Done"} if category is DONE_CATEGORY else None
        issue["fields"]["updated"] = _now()

    def _find(self, ref: str) -> dict[str, Any]:
        ref = self.moved.get(ref, ref)  # an old key answers with the moved issue
        for issue in self.issues.values():
            if ref in (issue["key"], issue["id"]):
                return issue
        raise _JiraError(404, ["Issue does not exist or you do not have permission to see it."])

    def _issue(  # noqa: PLR0911, PLR0912 - one branch per endpoint
        self, method: str, rest: list[str], params: dict[str, Any], body: Any
    ) -> tuple[int, Any]:
        if not rest or rest == [""]:
            if method != "POST":
                raise _JiraError(405, ["Method not allowed"])
            return 201, self._create(body or {})
        issue = self._find(rest[0])
        sub = rest[1] if len(rest) > 1 else None
        if sub is None:
            if method == "GET":
                return 200, issue
            if method == "PUT":
                self._update(issue, body or {})
                return 204, None
            if method == "DELETE":
                self.issues.pop(issue["key"])
                return 204, None
        if sub == "transitions":
            if method == "GET":
                return 200, {"transitions": self._transition_list(issue)}
            wanted = str(((body or {}).get("transition") or {}).get("id"))
            for offered in self._transition_list(issue):
                if offered["id"] == wanted:
                    self._set_status(issue, offered["to"]["name"])
                    # A comment may ride along: {"update": {"comment": [{"add": {"body": ...}}]}}
                    for op in ((body or {}).get("update") or {}).get("comment", []):
                        if "add" in op:
                            self._add_comment(issue, str(op["add"].get("body", "")))
                    return 204, None
            raise _JiraError(400, [f"Transition id '{wanted}' is not valid for this issue."])
        if sub == "comment":
            if method == "GET":
                return 200, issue["fields"]["comment"]
            return 201, self._add_comment(issue, str((body or {}).get("body", "")))
        if sub == "assignee" and method == "PUT":
            who = (body or {}).get("accountId") or (body or {}).get("name")
            user = self.users.get(str(who)) if who else None
            if who and user is None:
                raise _JiraError(400, [], {"assignee": f"User '{who}' does not exist."})
            issue["fields"]["assignee"] = user
            issue["fields"]["updated"] = _now()
            return 204, None
        if sub == "properties":
            props = issue.setdefault("_properties", {})
            if len(rest) == 2:
                return 200, {"keys": [{"key": k} for k in props]}
            if method == "PUT":
                props[rest[2]] = body
                return 200, None
            if rest[2] not in props:
                raise _JiraError(404, ["The property was not found."])
            return 200, {"key": rest[2], "value": props[rest[2]]}
        raise _JiraError(404, [f"no fake for {method} issue/{'/'.join(rest)}"])

    def _validate_fields(self, fields: dict[str, Any], *, creating: bool) -> None:
        errors: dict[str, str] = {}
        known = {f["id"] for f in self.fields} | {
            "project",
            "issuetype",
            "priority",
            "description",
            "assignee",
            "components",
        }
        for name in fields:
            if name not in known:
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, "
                    "or unknown."
                )
        if creating:
            project = (fields.get("project") or {}).get("key")
            if project not in self.projects:
                errors["project"] = (
                    "project is required" if not project else "valid project is required"
                )
            kind = (fields.get("issuetype") or {}).get("name")
            if kind not in {t["name"] for t in self.issue_types}:
                errors["issuetype"] = "valid issue type is required"
            if not fields.get("summary"):
                errors["summary"] = "You must specify a summary of the issue."
        priority = (fields.get("priority") or {}).get("name")
        if priority and priority not in {p["name"] for p in self.priorities}:
            errors["priority"] = f"The priority selected is invalid: {priority}"
        for label in fields.get("labels") or []:
            if " " in label:
                errors["labels"] = "The label 'x y' contains spaces which is invalid."
        if errors:
            raise _JiraError(400, [], errors)

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        fields = dict(body.get("fields") or {})
        self._validate_fields(fields, creating=True)
        project = self.projects[fields["project"]["key"]]
        # Jira never reuses a key, even after a deletion.
        project["_last"] = number = int(project.get("_last", 0)) + 1
        key = f"{project['key']}-{number}"
        issue_id = str(next(self._ids))
        stamp = _now()
        issue: dict[str, Any] = {
            "id": issue_id,
            "key": key,
            "self": f"{self.url}{API}issue/{issue_id}",
            "fields": {
                **fields,
                "project": project,
                "issuetype": next(
                    t for t in self.issue_types if t["name"] == fields["issuetype"]["name"]
                ),
                "labels": list(fields.get("labels") or []),
                "assignee": None,
                "comment": {"comments": [], "total": 0, "maxResults": 0, "startAt": 0},
                "created": stamp,
                "updated": stamp,
            },
        }
        self._set_status(issue, "To Do")
        issue["fields"]["updated"] = stamp
        self.issues[key] = issue
        return {"id": issue_id, "key": key, "self": issue["self"]}

    def _update(self, issue: dict[str, Any], body: dict[str, Any]) -> None:
        fields = dict(body.get("fields") or {})
        self._validate_fields(fields, creating=False)
        issue["fields"].update(fields)
        for op in (body.get("update") or {}).get("labels", []):
            labels = issue["fields"]["labels"]
            if "add" in op and op["add"] not in labels:
                labels.append(op["add"])
            if "remove" in op and op["remove"] in labels:
                labels.remove(op["remove"])
        issue["fields"]["updated"] = _now()

    # ---- JQL ----------------------------------------------------------------------------------

    def _search(self, query: dict[str, Any], *, paged: bool) -> dict[str, Any]:
        jql = str(query.get("jql") or "")
        if str(query.get("validateQuery", "true")).lower() not in ("false", "none", "warn"):
            for clause in re.findall(r"\bkey\s*(?:=|in)\s*(\([^)]*\)|\S+)", jql, re.I):
                for wanted in _values(clause):
                    if wanted not in self.issues:
                        raise _JiraError(
                            400, [f"An issue with key '{wanted}' does not exist for field 'key'."]
                        )
        issues: Any = self.issues.values()
        label = re.search(r'labels\s*=\s*"([^"]+)"', jql, re.IGNORECASE)
        if label:  # what Jira's index does: only issues carrying the label are looked at
            issues = [i for i in issues if label.group(1) in (i["fields"].get("labels") or [])]
        matched = [i for i in issues if _matches(jql, i)]
        order = re.search(r"order\s+by\s+(\w+)(\s+(asc|desc))?", jql, re.IGNORECASE)
        if order:
            name = order.group(1).lower()
            matched.sort(
                key=lambda i: str(i["fields"].get(name) if name != "key" else i["id"]).zfill(12),
                reverse=(order.group(3) or "asc").lower() == "desc",
            )
        if "transitions" in str(query.get("expand") or "").split(","):
            matched = [{**i, "transitions": self._transition_list(i)} for i in matched]
        limit = int(query.get("maxResults") or 50)
        if paged:
            start = int(query.get("nextPageToken") or 0)
            page = matched[start : start + limit]
            out: dict[str, Any] = {"issues": page, "isLast": start + limit >= len(matched)}
            if start + limit < len(matched):
                out["nextPageToken"] = str(start + limit)
            return out
        start = int(query.get("startAt") or 0)
        return {
            "startAt": start,
            "maxResults": limit,
            "total": len(matched),
            "issues": matched[start : start + limit],
        }


def _take(pending: list[tuple[str, str, Any]], method: str, path: str) -> Any:
    """Pop and return the first (method, path prefix, what) entry matching a request."""
    for i, (m, prefix, _what) in enumerate(pending):
        if m == method and path.startswith(prefix):
            return pending.pop(i)[2]
    return None


class _JiraError(Exception):
    def __init__(
        self, status: int, messages: list[str], errors: dict[str, str] | None = None
    ) -> None:
        super().__init__(messages)
        self.status, self.messages, self.errors = status, messages, errors or {}


_CLAUSE = re.compile(
    r"^\s*(?P<field>[\w.]+)\s*(?P<op>!=|>=|<=|=|>|<|\bnot in\b|\bin\b)\s*(?P<value>.+?)\s*$",
    re.IGNORECASE,
)


def _values(raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("("):
        return [v.strip().strip("'\"") for v in raw.strip("()").split(",")]
    return [raw.strip("'\"")]


def _field_values(issue: dict[str, Any], name: str) -> list[str]:  # noqa: PLR0911 - one per field
    f = issue["fields"]
    if name == "project":
        return [f["project"]["key"]]
    if name == "key":
        return [issue["key"]]
    if name == "labels":
        return list(f.get("labels") or [])
    if name == "status":
        return [f["status"]["name"]]
    if name == "statuscategory":
        return [f["status"]["statusCategory"]["name"]]
    if name in ("issuetype", "type"):
        return [f["issuetype"]["name"]]
    if name == "updated":
        return [f["updated"]]
    raise ValueError(f"the fake JQL does not know field {name!r}")


def _jql_time(value: str) -> str:
    value = value.strip("'\"")
    relative = re.fullmatch(r"-(\d+)([mhdw])", value)
    if relative:  # "-15m": relative to now, the same in every time zone
        unit = {"m": 60, "h": 3600, "d": 86400, "w": 604800}[relative.group(2)]
        then = datetime.now(UTC).timestamp() - int(relative.group(1)) * unit
        return datetime.fromtimestamp(then, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    for fmt in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d"):
        try:
            return (
                datetime.strptime(value, fmt)
                .replace(tzinfo=UTC)
                .strftime("%Y-%m-%dT%H:%M:%S.000+0000")
            )
        except ValueError:
            continue
    raise ValueError(f"the fake JQL cannot read the date {value!r}")


def _matches(jql: str, issue: dict[str, Any]) -> bool:
    where = re.split(r"\border\s+by\b", jql, flags=re.IGNORECASE)[0].strip()
    if not where:
        return True
    for clause in re.split(r"\s+and\s+", where, flags=re.IGNORECASE):
        m = _CLAUSE.match(clause)
        if m is None:
            raise _JiraError(400, [f"Error in the JQL Query: cannot read {clause!r}"])
        name, op = m.group("field").lower(), m.group("op").lower()
        have = [v.lower() for v in _field_values(issue, name)]
        want = [v.lower() for v in _values(m.group("value"))]
        if name == "updated":
            stamp, bound = have[0], _jql_time(m.group("value")).lower()
            ok = {
                ">=": stamp >= bound,
                ">": stamp > bound,
                "<=": stamp <= bound,
                "<": stamp < bound,
            }
            if not ok.get(op, False):
                return False
            continue
        hit = any(w in have for w in want)
        if (op in ("=", "in") and not hit) or (op in ("!=", "not in") and hit):
            return False
    return True
