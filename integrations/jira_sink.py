"""Jira (Cloud, Server, Data Center; REST v2) as a `TicketSink`, through the `jira` package.

The `jira` client retries by itself for minutes on a dead server; here it retries nothing
(`max_retries=0`) and every failure becomes a TicketError, so the caller's outbox decides
when to try again. Each finding's ticket carries the label `cb-<fingerprint>`, which is how a
ticket created just before a crash is found again instead of being created twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jira import JIRA, JIRAError
from requests.exceptions import RequestException

from integrations.ratelimit import pace
from integrations.tickets import (
    FINGERPRINT_LABEL,
    TicketError,
    TicketFinding,
    TicketRef,
    describe,
    fingerprint_label,
)

DEFAULT_PRIORITIES = {
    "critical": "Highest",
    "high": "High",
    "medium": "Medium",
    "low": "Low",
    "info": "Lowest",
}


@dataclass(frozen=True)
class JiraConfig:
    """Where the tickets go and how a finding maps onto one."""

    url: str
    project: str
    issue_type: str = "Task"
    email: str | None = None  # Cloud: basic auth with an API token
    api_token: str | None = None
    token: str | None = None  # Server / Data Center: a personal access token
    priorities: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    labels: Sequence[str] = ("compliancebot",)
    components: Sequence[str] = ()
    fields: Mapping[str, Any] = field(default_factory=dict)  # by field id or name
    done_transition: str = "Done"
    reopen_transition: str = "Reopen"
    timeout: float = 10.0
    requests_per_second: float | None = None  # pace requests below the site's rate limit


def _error(exc: Exception, doing: str) -> TicketError:
    """A JIRAError or a connection failure as a TicketError saying whether to retry."""
    if isinstance(exc, JIRAError):
        status = exc.status_code
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        raw_retry = headers.get("Retry-After")
        retry_after = float(raw_retry) if raw_retry and str(raw_retry).isdigit() else None
        text = (exc.text or "").strip()
        if status is None or status == 429 or status >= 500:
            return TicketError(
                f"Jira {doing}: HTTP {status}: {text[:300]}",
                permanent=False,
                retry_after=retry_after,
            )
        return TicketError(
            f"Jira {doing}: HTTP {status}: {text[:1000]}", permanent=True, gone=status == 404
        )
    return TicketError(f"Jira {doing}: {type(exc).__name__}: {exc}", permanent=False)


class JiraSink:
    """Tickets as Jira issues."""

    name = "jira"

    def __init__(self, config: JiraConfig, *, client_factory: Callable[..., JIRA] = JIRA) -> None:
        self.config = config
        self._factory = client_factory
        self._client: JIRA | None = None
        self._field_ids: dict[str, str] | None = None
        self._me: set[str] | None = None

    @property
    def client(self) -> JIRA:
        """Connected on first use (the constructor calls serverInfo)."""
        if self._client is None:
            auth: dict[str, Any] = {}
            if self.config.token:
                auth["token_auth"] = self.config.token
            elif self.config.email and self.config.api_token:
                auth["basic_auth"] = (self.config.email, self.config.api_token)
            try:
                self._client = self._factory(
                    server=self.config.url, max_retries=0, timeout=self.config.timeout, **auth
                )
            except (JIRAError, RequestException) as exc:
                raise _error(exc, f"connecting to {self.config.url}") from exc
            limiter = pace(self._client._session, self.config.requests_per_second)
            if limiter is not None:
                limiter.record()  # the constructor's serverInfo counts against the limit too
        return self._client

    @property
    def me(self) -> set[str]:
        """The names the token's user goes by (accountId on Cloud, name on Server)."""
        if self._me is None:
            who = self._call("reading the token's user", self.client.myself)
            self._me = {str(who[k]) for k in ("accountId", "name", "key") if who.get(k)}
        return self._me

    def _ref(self, issue: Any) -> TicketRef:
        status = issue.fields.status
        category = getattr(getattr(status, "statusCategory", None), "key", "")
        marked = [
            str(label)[len(FINGERPRINT_LABEL) :]
            for label in getattr(issue.fields, "labels", None) or []
            if str(label).startswith(FINGERPRINT_LABEL)
        ]
        return TicketRef(
            sink=self.name,
            key=str(issue.key),
            url=f"{self.config.url.rstrip('/')}/browse/{issue.key}",
            done=category == "done",
            fingerprint=marked[0] if marked else None,
        )

    def _call(self, doing: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (JIRAError, RequestException) as exc:
            raise _error(exc, doing) from exc

    # ---- the protocol ---------------------------------------------------------------------------

    def validate(self) -> list[str]:
        """Names in the mapping that this Jira does not have, with the ones it has."""
        problems = []
        projects = self._call("listing projects", self.client.projects)
        keys = sorted(p.key for p in projects)
        if self.config.project not in keys:
            problems.append(
                f"jira.project {self.config.project!r} does not exist; projects: {', '.join(keys)}"
            )
        types = sorted(t.name for t in self._call("listing issue types", self.client.issue_types))
        if self.config.issue_type not in types:
            problems.append(
                f"jira.issue_type {self.config.issue_type!r} does not exist; "
                f"issue types: {', '.join(types)}"
            )
        names = {p.name for p in self._call("listing priorities", self.client.priorities)}
        for severity, priority in sorted(self.config.priorities.items()):
            if priority not in names:
                problems.append(
                    f"jira.priorities.{severity}: {priority!r} does not exist; "
                    f"priorities: {', '.join(sorted(names))}"
                )
        known = self._fields()
        for name in self.config.fields:
            if name not in known and name not in known.values():
                problems.append(f"jira.fields: no field named or with id {name!r}")
        return problems

    def _fields(self) -> dict[str, str]:
        """Field name -> id."""
        if self._field_ids is None:
            fields = self._call("listing fields", self.client.fields)
            self._field_ids = {str(f["name"]): str(f["id"]) for f in fields}
        return self._field_ids

    def find(self, fingerprint: str) -> TicketRef | None:
        """The issue carrying the fingerprint label, if any."""
        jql = (
            f'project = "{self.config.project}" AND labels = "{fingerprint_label(fingerprint)}" '
            "ORDER BY created ASC"
        )
        found = self._call(
            "searching for the finding's ticket",
            lambda: self.client.search_issues(jql, maxResults=1, fields="status,labels"),
        )
        return self._ref(found[0]) if found else None

    def create(self, finding: TicketFinding) -> TicketRef:
        """A new issue with the mapped type, priority, labels, components and extra fields."""
        fields: dict[str, Any] = {
            "project": {"key": self.config.project},
            "issuetype": {"name": self.config.issue_type},
            "summary": f"[{finding.severity.upper()}] {finding.title}: "
            f"{finding.resource_name or finding.resource_id}"[:250],
            "description": describe(finding),
            "labels": [*self.config.labels, fingerprint_label(finding.fingerprint)],
        }
        priority = self.config.priorities.get(finding.severity)
        if priority:
            fields["priority"] = {"name": priority}
        if self.config.components:
            fields["components"] = [{"name": c} for c in self.config.components]
        if self.config.fields:
            ids = self._fields()
            for name, value in self.config.fields.items():
                fields[ids.get(name, name)] = value
        # Jira answers the create with the key; reading the issue back would cost a request.
        issue = self._call(
            "creating the ticket", lambda: self.client.create_issue(fields=fields, prefetch=False)
        )
        return TicketRef(
            sink=self.name,
            key=str(issue.key),
            url=f"{self.config.url.rstrip('/')}/browse/{issue.key}",
            fingerprint=finding.fingerprint,
        )

    def _transition(self, ref: TicketRef, name: str, comment: str) -> None:
        def run() -> None:
            names = [t["name"] for t in self.client.transitions(ref.key)]
            if name.lower() not in (n.lower() for n in names):
                raise TicketError(
                    f"Jira {ref.key}: no transition {name!r}; available: {', '.join(names)}",
                    permanent=True,
                )
            self.client.transition_issue(ref.key, name, comment=comment)

        self._call(f"moving {ref.key} with {name!r}", run)

    def close(self, ref: TicketRef, comment: str, *, status: str = "resolved") -> None:
        """Apply the done transition, with a comment."""
        self._transition(ref, self.config.done_transition, comment)

    def reopen(self, ref: TicketRef, comment: str, *, status: str = "open") -> None:
        """Apply the reopen transition, with a comment."""
        self._transition(ref, self.config.reopen_transition, comment)

    def progress(self, ref: TicketRef, status: str) -> None:
        """Jira keeps a claimed issue where it is: the assignee shows the claim."""

    def assign(self, ref: TicketRef, user: str | None) -> None:
        """Assign to a Jira user (Cloud: accountId; Server: user name)."""
        self._call(f"assigning {ref.key}", lambda: self.client.assign_issue(ref.key, user))

    def comment(self, ref: TicketRef, text: str) -> None:
        """Add a comment."""
        self._call(f"commenting on {ref.key}", lambda: self.client.add_comment(ref.key, text))

    def changed_since(self, since: datetime, now: datetime) -> list[TicketRef]:
        """Our issues updated since a time.

        JQL reads absolute dates in the Jira user's time zone, which we do not know; a relative
        bound ("-15m") is the same everywhere. It is rounded up to whole minutes and a minute
        wider, so nothing falls between two polls; seeing a change twice does no harm.
        """
        minutes = max(1, math.ceil((now - since).total_seconds() / 60) + 1)
        labels = ", ".join(f'"{label}"' for label in self.config.labels) or '"compliancebot"'
        jql = (
            f'project = "{self.config.project}" AND labels in ({labels}) AND '
            f'updated >= "-{minutes}m" ORDER BY updated ASC'
        )
        found = self._call(
            "polling for changed tickets",
            lambda: self.client.search_issues(jql, maxResults=False, fields="status,labels"),
        )
        return [self._ref(issue) for issue in found]

    def ref_from_event(self, event: Mapping[str, Any]) -> TicketRef | None:
        """What a Jira webhook delivery says of one of our issues (None: not ours, or no news)."""
        kind = str(event.get("webhookEvent") or "")
        user = event.get("user") or {}
        if {str(user.get("accountId")), str(user.get("name"))} & self.me:
            return None  # our own change, maybe delivered late: not news
        issue = event.get("issue") or {}
        key = issue.get("key")
        if not key or kind not in ("jira:issue_updated", "jira:issue_deleted"):
            return None
        fields = issue.get("fields") or {}
        marked = [
            str(label)[len(FINGERPRINT_LABEL) :]
            for label in fields.get("labels") or []
            if str(label).startswith(FINGERPRINT_LABEL)
        ]
        if not marked:
            return None
        url = f"{self.config.url.rstrip('/')}/browse/{key}"
        if kind == "jira:issue_deleted":
            return TicketRef(
                sink=self.name, key=str(key), url=url, fingerprint=marked[0], deleted=True
            )
        category = ((fields.get("status") or {}).get("statusCategory") or {}).get("key")
        return TicketRef(
            sink=self.name, key=str(key), url=url, done=category == "done", fingerprint=marked[0]
        )
