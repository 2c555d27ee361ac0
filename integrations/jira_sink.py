"""Jira (Cloud, Server, Data Center; REST v2) as a `TicketSink`, through the `jira` package,
and the `jira` tracker plug-in (`TRACKER`: settings section, secrets, factory, webhook).

The `jira` client retries by itself for minutes on a dead server; here it retries nothing
(`max_retries=0`) and every failure becomes a TicketError, so the caller's outbox decides
when to try again. Each finding's ticket carries the label `cb-<fingerprint>`, which is how a
ticket created just before a crash is found again instead of being created twice. The label
is only trusted by that search (in the configured project): anyone can add a label to any
issue, so what comes back from Jira is matched by the issue key the bot recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from jira import JIRA, JIRAError
from pydantic import Field, field_validator, model_validator
from requests.exceptions import RequestException

from integrations.markup import jira_wiki, one_line
from integrations.ratelimit import pace
from integrations.tickets import (
    FINGERPRINT_LABEL,
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
)
from ledger import outbox
from rules.catalog import Severity

DEFAULT_PRIORITIES = {
    "critical": "Highest",
    "high": "High",
    "medium": "Medium",
    "low": "Low",
    "info": "Lowest",
}

# An issue key as Jira makes them (project key, dash, number); anything else in a delivery is
# not one of ours and is not looked up. 64: the longest key the ledger stores.
ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,40}-[0-9]{1,18}")
LOOKUP_FIELDS = "status,labels,updated"


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
    # Who claims -> what Jira's user search finds the assignee by (as `assign` looks it up).
    users: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    requests_per_second: float | None = None  # pace requests below the site's rate limit


def _error(exc: Exception, doing: str) -> TicketError:
    """A JIRAError or a connection failure as a TicketError saying whether to retry."""
    if isinstance(exc, JIRAError):
        status = exc.status_code
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        retry_after = outbox.retry_after(headers, now=datetime.now(UTC))
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

    def _ref(self, raw: Mapping[str, Any], *, also: Sequence[str] = ()) -> TicketRef:
        """An issue as Jira's JSON gives it (search, GET, webhook) as a ref of its current state.

        The change is named by key, `updated` and status: a webhook delivery and a poll of the
        same change name it alike, so it is applied once whichever comes first.
        """
        key = str(raw.get("key") or "")
        fields = _object(raw.get("fields"))
        status = _object(fields.get("status"))
        category = _object(status.get("statusCategory")).get("key")
        labels = fields.get("labels")
        marked = [
            label[len(FINGERPRINT_LABEL) :]
            for label in (labels if isinstance(labels, list) else [])
            if isinstance(label, str) and label.startswith(FINGERPRINT_LABEL)
        ]
        updated = fields.get("updated")
        change = (
            (f"{key}|{updated}|{status.get('id') or status.get('name')}",)
            if isinstance(updated, str) and updated
            else ()
        )
        return TicketRef(
            sink=self.name,
            key=key,
            url=f"{self.config.url.rstrip('/')}/browse/{key}",
            done=category == "done",
            fingerprint=marked[0] if marked else None,
            change=(*also, *change),
        )

    def _call(self, doing: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (JIRAError, RequestException) as exc:
            raise _error(exc, doing) from exc

    # ---- the protocol ---------------------------------------------------------------------------

    def validate(self) -> list[str]:
        """Every name in the mapping this Jira does not have, with the ones it has.

        Each problem starts with its key (`jira.project`, `jira.users.U0123`): the project,
        the issue type (of that project), priorities, components, fields, the done and reopen
        transitions and every `users` entry, all checked before the first is reported.
        """
        problems: list[str] = []
        config = self.config
        projects = self._call("listing projects", self.client.projects)
        keys = sorted(p.key for p in projects)
        project = None
        if config.project in keys:
            project = self._call(
                f"reading project {config.project}", partial(self.client.project, config.project)
            )
        else:
            problems.append(
                f"jira.project {config.project!r} does not exist; projects: {', '.join(keys)}"
            )
        if project is not None:
            types = sorted(str(t.name) for t in getattr(project, "issueTypes", []))
            where = f"is not an issue type of project {config.project}"
        else:
            all_types = self._call("listing issue types", self.client.issue_types)
            types, where = sorted(str(t.name) for t in all_types), "does not exist"
        type_ok = config.issue_type in types
        if not type_ok:
            problems.append(
                f"jira.issue_type {config.issue_type!r} {where}; issue types: {', '.join(types)}"
            )
        names = {p.name for p in self._call("listing priorities", self.client.priorities)}
        for severity, priority in sorted(config.priorities.items()):
            if priority not in names:
                problems.append(
                    f"jira.priorities.{severity}: {priority!r} does not exist; "
                    f"priorities: {', '.join(sorted(names))}"
                )
        if project is not None:
            problems += self._component_problems()
        known = self._fields()
        for name in config.fields:
            if name not in known and name not in known.values():
                problems.append(f"jira.fields: no field named or with id {name!r}")
        if project is not None and type_ok:
            problems += self._transition_problems()
        problems += self._user_problems()
        return problems

    def _component_problems(self) -> list[str]:
        """Each mapped component the project does not have."""
        if not self.config.components:
            return []
        project = self.config.project
        components = self._call(
            f"listing the components of {project}",
            partial(self.client.project_components, project),
        )
        have = sorted(str(c.name) for c in components)
        return [
            f"jira.components: project {project} has no component {name!r}; "
            f"components: {', '.join(have) or 'none'}"
            for name in self.config.components
            if name not in have
        ]

    def _transition_problems(self) -> list[str]:
        """The done / reopen transition missing from a status the project's issues are in.

        Transitions belong to the workflow of the project and issue type, and a workflow is
        read only by a Jira admin; what a bot can read is the transitions each issue offers
        from its status. So the names are checked against the project's most recently updated
        issues of the type (20 not done for `done_transition`, 20 done for
        `reopen_transition`), once per status they are in: a ticket in any of those statuses
        could not be moved. A project without such issues yet has nothing to check against.
        """
        problems = []
        checks = (
            ("done_transition", self.config.done_transition, "!=", "closed"),
            ("reopen_transition", self.config.reopen_transition, "=", "reopened"),
        )
        for key, name, op, what in checks:
            jql = (
                f"project = {_jql_string(self.config.project)} AND issuetype = "
                f"{_jql_string(self.config.issue_type)} AND statusCategory {op} Done "
                "ORDER BY updated DESC"
            )
            issues = self._call(
                f"reading the transitions of {self.config.project} issues",
                partial(
                    self.client.search_issues,
                    jql,
                    maxResults=20,
                    fields="status",
                    expand="transitions",
                ),
            )
            seen: set[str] = set()
            for issue in issues:
                raw = issue.raw
                status = str(_object(_object(raw.get("fields")).get("status")).get("name"))
                if status in seen:
                    continue
                seen.add(status)
                offered = raw.get("transitions")
                offered = offered if isinstance(offered, list) else []
                available = [str(_object(t).get("name")) for t in offered]
                if name.lower() not in (n.lower() for n in available):
                    problems.append(
                        f"jira.{key}: {name!r} is not a transition from status {status!r} "
                        f"(e.g. {raw.get('key')}), so a ticket there could not be {what}; "
                        f"transitions there: {', '.join(available) or 'none'}"
                    )
        return problems

    def _user_problems(self) -> list[str]:
        """Each `users` entry the user search that `assign` does finds nobody, or the wrong
        one, by (Cloud: `query=`; Server / Data Center: `username=`)."""
        problems = []
        cloud = str(getattr(self.client, "deploymentType", "")) == "Cloud"
        for who, value in sorted(self.config.users.items()):
            if not value.strip():
                problems.append(f"jira.users.{who}: empty; give the Jira user")
                continue
            search = (
                partial(self.client.search_users, query=value, maxResults=20)
                if cloud
                else partial(self.client.search_users, user=value, maxResults=20)
            )
            found = [u.raw for u in self._call(f"searching for the user {value!r}", search)]
            ident = "accountId" if cloud else "name"
            if not found:
                how = "an email address" if cloud else "a user name"
                problems.append(
                    f"jira.users.{who}: {value!r} finds no Jira user, so a claim by {who} "
                    f"could never be assigned; give {how}"
                )
                continue
            # `assign` takes the user whose id is the value, else the first found: that first
            # one must be the person meant (the value is their id, email or name).
            exact = [u for u in found if str(u.get(ident)) == value]
            first = found[0]
            meant = {str(first.get(k) or "").lower() for k in ("accountId", "name", "emailAddress")}
            if not exact and len(found) > 1 and value.lower() not in meant:
                shown = ", ".join(
                    str(u.get("emailAddress") or u.get("displayName") or u.get(ident))
                    for u in found[:5]
                )
                problems.append(
                    f"jira.users.{who}: {value!r} matches {len(found)} Jira users ({shown}) "
                    "and would assign the first: give the whole email or user name"
                )
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
            lambda: self.client.search_issues(jql, maxResults=1, fields=LOOKUP_FIELDS),
        )
        return self._ref(found[0].raw) if found else None

    def create(self, finding: TicketFinding) -> TicketRef:
        """A new issue with the mapped type, priority, labels, components and extra fields."""
        fields: dict[str, Any] = {
            "project": {"key": self.config.project},
            "issuetype": {"name": self.config.issue_type},
            # The summary is a plain-text field (Jira renders no markup there) of one line.
            "summary": one_line(
                f"[{finding.severity.upper()}] {finding.title}: "
                f"{finding.resource_name or finding.resource_id}",
                250,
            ),
            "description": describe(finding, jira_wiki),
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
            self.client.transition_issue(ref.key, name, comment=jira_wiki(comment))

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
        self._call(
            f"commenting on {ref.key}", lambda: self.client.add_comment(ref.key, jira_wiki(text))
        )

    def changed_since(self, since: datetime, now: datetime) -> Changes:
        """Our issues updated since a time.

        JQL reads absolute dates in the Jira user's time zone, which we do not know; a relative
        bound ("-15m") is the same everywhere. It is rounded up to whole minutes and a minute
        wider, so nothing falls between two polls; a change seen twice is named alike both
        times (`_ref`) and applied once.
        """
        minutes = max(1, math.ceil((now - since).total_seconds() / 60) + 1)
        labels = ", ".join(f'"{label}"' for label in self.config.labels) or '"compliancebot"'
        jql = (
            f'project = "{self.config.project}" AND labels in ({labels}) AND '
            f'updated >= "-{minutes}m" ORDER BY updated ASC'
        )
        found = self._call(
            "polling for changed tickets",
            lambda: self.client.search_issues(jql, maxResults=False, fields=LOOKUP_FIELDS),
        )
        return Changes(refs=[self._ref(issue.raw) for issue in found])

    def lookup(self, keys: Sequence[str]) -> dict[str, TicketRef | None]:
        """Our issues by the keys we recorded: one JQL search, then a GET for each one missing.

        The GET settles what the search cannot: Jira answers an issue moved to another project
        under its old key with its new one, and a deleted issue with 404. Only this answer,
        to a question about a key we recorded, ever re-keys a ticket.
        """
        wanted = list(dict.fromkeys(k for k in keys if ISSUE_KEY.fullmatch(k)))
        out: dict[str, TicketRef | None] = {}
        if not wanted:
            return out
        jql = "key in (" + ", ".join(f'"{key}"' for key in wanted) + ")"
        try:
            found = self._call(
                "looking up tickets",
                lambda: self.client.search_issues(
                    jql, maxResults=len(wanted), fields=LOOKUP_FIELDS, validate_query=False
                ),
            )
        except TicketError as exc:
            if not exc.permanent:
                raise
            found = []  # a Jira that refuses a key that no longer exists: ask one by one
        for issue in found:
            ref = self._ref(issue.raw)
            if ref.key in wanted:
                out[ref.key] = ref
        for key in wanted:
            if key in out:
                continue
            try:
                issue = self._call(
                    f"reading {key}", partial(self.client.issue, key, fields=LOOKUP_FIELDS)
                )
            except TicketError as exc:
                if not exc.gone:
                    raise
                out[key] = None
                continue
            out[key] = self._ref(issue.raw)
        return out

    def ref_from_event(
        self, event: Mapping[str, Any], *, delivery: str | None = None
    ) -> TicketRef | None:
        """What a Jira webhook delivery says of an issue (None: our own change, or no news).

        Whether the issue is one of ours is decided by its key, by the caller: the labels an
        event carries are anyone's to set. `delivery` is Jira's X-Atlassian-Webhook-Identifier,
        the same on every retry of one delivery.
        """
        kind = str(event.get("webhookEvent") or "")
        user = event.get("user") or {}
        if not isinstance(user, Mapping):
            return None
        if {str(user.get("accountId")), str(user.get("name"))} & self.me:
            return None  # our own change, maybe delivered late: not news
        issue = event.get("issue") or {}
        if not isinstance(issue, Mapping) or kind not in (
            "jira:issue_updated",
            "jira:issue_deleted",
        ):
            return None
        key = issue.get("key")
        if not isinstance(key, str) or not ISSUE_KEY.fullmatch(key):
            return None
        fields = _object(issue.get("fields"))
        also = (f"delivery|{delivery}",) if delivery else ()
        ref = self._ref({"key": key, "fields": fields}, also=also)
        if kind == "jira:issue_deleted":
            return TicketRef(
                sink=self.name,
                key=key,
                url=ref.url,
                fingerprint=ref.fingerprint,
                deleted=True,
                change=(*also, f"{key}|deleted"),
            )
        return ref


def _jql_string(value: str) -> str:
    """A value as a quoted JQL string (a quote or backslash in a type name stays text)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _object(value: Any) -> Mapping[str, Any]:
    """A JSON object from a delivery, or an empty one when it is anything else."""
    return value if isinstance(value, Mapping) else {}


# ---- the plug-in: tickets.jira, its secrets, POST /jira/webhook --------------------------------


class JiraSettings(TrackerSettings):
    """tickets.jira: where the issues go and how a finding maps onto one."""

    url: str | None = None
    email: str | None = None  # Cloud: with api_token
    api_token: Secret = None
    token: Secret = None  # Server / Data Center personal access token
    project: Annotated[str, Field(min_length=1)] = "SEC"
    issue_type: Annotated[str, Field(min_length=1)] = "Task"
    priorities: dict[Severity, str] = {
        Severity.critical: "Highest",
        Severity.high: "High",
        Severity.medium: "Medium",
        Severity.low: "Low",
        Severity.info: "Lowest",
    }
    labels: list[str] = ["compliancebot"]
    components: list[str] = []
    fields: dict[str, Any] = {}
    done_transition: str = "Done"
    reopen_transition: str = "Reopen"

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if not label or " " in label:
                raise ValueError(f"Jira labels cannot be empty or contain spaces: {label!r}")
        return value

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> JiraSettings:
        if self.enabled and (not self.url or not self.url.startswith(("http://", "https://"))):
            raise ValueError("jira is enabled but tickets.jira.url is not an http(s) URL")
        return self


def missing_secrets(section: JiraSettings) -> list[str]:
    """The credentials Jira needs and lacks, naming both ways to give them ([]: none)."""
    if not section.enabled or section.token is not None:
        return []
    if section.email is not None and section.api_token is not None:
        return []
    return [
        "tickets.jira is enabled but has no credentials: set tickets.jira.email and "
        f"{TRACKER.variable('api_token')} (Cloud), or "
        f"{TRACKER.variable('token')} (Server / Data Center), in the environment or "
        "the secrets file"
    ]


def build_sink(section: JiraSettings) -> JiraSink:
    """The sink as configured (its credentials are set: `missing_secrets` said none lacks)."""
    return JiraSink(
        JiraConfig(
            url=str(section.url),
            project=section.project,
            issue_type=section.issue_type,
            email=section.email,
            api_token=section.api_token.get_secret_value() if section.api_token else None,
            token=section.token.get_secret_value() if section.token else None,
            priorities={str(k): v for k, v in section.priorities.items()},
            labels=tuple(section.labels),
            components=tuple(section.components),
            fields=dict(section.fields),
            done_transition=section.done_transition,
            reopen_transition=section.reopen_transition,
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
    section: JiraSettings,
) -> bool:
    """The body is signed with the secret (a Cloud admin webhook: `X-Hub-Signature:
    sha256=<hex HMAC-SHA256>`), or the URL carries it (`?secret=`: Server, Data Center, Cloud
    automation, which cannot sign)."""
    signature = headers.get("X-Hub-Signature", "")
    if signature.startswith("sha256="):
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature.removeprefix("sha256=").encode(), digest.encode())
    given = query.get("secret")
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


def parse_delivery(
    sink: JiraSink, payload: Mapping[str, Any], headers: Mapping[str, str]
) -> TicketRef | None:
    """What a verified delivery says of an issue (`JiraSink.ref_from_event`).

    Jira sends the same X-Atlassian-Webhook-Identifier on every retry of a delivery: the ref
    carries it, so a retry is known as one (ticket sync applies each change once).
    """
    delivery = headers.get("X-Atlassian-Webhook-Identifier") or None
    return sink.ref_from_event(payload, delivery=delivery)


TRACKER: Tracker[JiraSettings, JiraSink] = Tracker(
    name="jira",
    title="Jira",
    settings=JiraSettings,
    factory=build_sink,
    secrets=(TrackerSecret("api_token"), TrackerSecret("token")),  # and webhook_secret
    missing_secrets=missing_secrets,
    webhook=Webhook(verify=verify_delivery, parse=parse_delivery),
)
register(TRACKER)
