"""The Jira ticket sink against a fake Jira (Server and Cloud) over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.jira_sink import JiraConfig, JiraSink
from integrations.tickets import TicketError, TicketFinding, fingerprint_label
from tests.fakes.jira import FakeJira
from tests.integrations.rendered import jira_text

FINDING = TicketFinding(
    fingerprint="a" * 64,
    finding_id=7,
    title="S3 buckets block public access",
    severity="critical",
    status="open",
    resource_type="aws.s3.bucket",
    resource_id="arn:aws:s3:::acme-public",
    resource_name="acme-public",
    account="111122223333",
    region="us-east-1",
    controls=[("HIPAA Security Rule", ["164.312(a)(1)"]), ("SOC 2", ["CC6.1"])],
    remediation="Turn on Block Public Access for the bucket.",
    link="https://example.slack.com/archives/C1/p1",
)


@pytest.fixture(params=["server", "cloud"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeJira]:
    """A fake Jira Server/Data Center, then a fake Jira Cloud."""
    with FakeJira(cloud=request.param == "cloud") as jira:
        yield jira


def sink(fake: FakeJira, **overrides: object) -> JiraSink:
    """A sink on the fake, with the default mapping unless overridden."""
    values: dict[str, object] = {
        "url": fake.url,
        "project": "SEC",
        "email": "bot@example.com",
        "api_token": "t",
        "timeout": 5,
        **overrides,
    }
    return JiraSink(JiraConfig(**values))  # type: ignore[arg-type]


def test_create_maps_the_finding_and_find_recognises_it(fake: FakeJira) -> None:
    """A ticket has summary, priority, labels (with the fingerprint) and an actionable body."""
    jira = sink(fake, components=[], fields={"Compliance Control": "CC6.1"})

    ref = jira.create(FINDING)
    again = jira.find(FINDING.fingerprint)

    issue = fake.issues[ref.key]["fields"]
    assert ref.key == "SEC-1"
    assert ref.url == f"{fake.url}/browse/SEC-1"
    assert issue["summary"] == "[CRITICAL] S3 buckets block public access: acme-public"
    assert issue["priority"] == {"name": "Highest"}
    assert issue["labels"] == ["compliancebot", fingerprint_label(FINDING.fingerprint)]
    assert issue["customfield_10050"] == "CC6.1"
    assert "164.312(a)(1)" in jira_text(issue["description"])  # escaped in the markup
    assert "Turn on Block Public Access" in issue["description"]
    assert "https://example.slack.com/archives/C1/p1" in issue["description"]
    assert again is not None
    assert (again.key, again.fingerprint, again.done) == ("SEC-1", FINDING.fingerprint, False)
    assert jira.find("b" * 64) is None


def test_close_reopen_assign_and_comment(fake: FakeJira) -> None:
    """State changes move the issue with the configured transitions and say why."""
    user = fake.add_user(name="alice", email="alice@example.com")
    jira = sink(fake)
    ref = jira.create(FINDING)

    jira.close(ref, "compliancebot: the scan found the bucket private")
    closed = fake.issues[ref.key]["fields"]["status"]["name"]
    jira.reopen(ref, "compliancebot: public again")
    jira.assign(ref, user["accountId"] if fake.cloud else "alice")
    jira.comment(ref, "claimed by alice in Slack")

    issue = fake.issues[ref.key]["fields"]
    assert closed == "Done"
    assert issue["status"]["name"] == "To Do"
    assert issue["assignee"]["name"] == "alice"
    assert [c["body"] for c in issue["comment"]["comments"]] == [
        "compliancebot: the scan found the bucket private",
        "compliancebot: public again",
        "claimed by alice in Slack",
    ]


def test_validate_names_what_does_not_exist_and_what_does(fake: FakeJira) -> None:
    """A mapping naming a missing project, type, priority or field lists the valid names."""
    jira = sink(
        fake,
        project="NOPE",
        issue_type="Epic",
        priorities={"critical": "P0"},
        fields={"Team": "x"},
    )

    problems = jira.validate()

    assert problems == [
        "jira.project 'NOPE' does not exist; projects: SEC",
        "jira.issue_type 'Epic' does not exist; issue types: Bug, Task",
        "jira.priorities.critical: 'P0' does not exist; priorities: High, Highest, Low, "
        "Lowest, Medium",
        "jira.fields: no field named or with id 'Team'",
    ]
    assert sink(fake).validate() == []


def test_validate_names_a_component_the_project_lacks(fake: FakeJira) -> None:
    """A mapped component the project does not have is named with the project's own."""
    fake.add_component("SEC", "Cloud")

    problems = sink(fake, components=["Cloud", "Network"]).validate()

    assert problems == [
        "jira.components: project SEC has no component 'Network'; components: Cloud"
    ]


def test_a_wrong_done_transition_is_named_before_the_first_close(fake: FakeJira) -> None:
    """`done_transition: Close Issue` is reported by validate, from the statuses tickets are in."""
    fake.add_issue("SEC", "someone's task", [])
    fake.set_status(fake.add_issue("SEC", "a finished one", []), "Done")

    problems = sink(fake, done_transition="Close Issue", reopen_transition="Reopen").validate()

    assert problems == [
        "jira.done_transition: 'Close Issue' is not a transition from status 'To Do' "
        "(e.g. SEC-1), so a ticket there could not be closed; transitions there: Start, Done, "
        "Reopen"
    ]
    assert fake.calls_to("POST", "issue") == []  # nothing is made to find out


def test_a_workflow_without_done_from_one_status_is_named_for_that_status(
    fake: FakeJira,
) -> None:
    """Where Done is offered only from In Progress, a ticket still in To Do could not close."""
    fake.transition_from = {"Done": ("In Progress",), "Reopen": ("In Progress",)}
    fake.add_issue("SEC", "new", [])
    fake.set_status(fake.add_issue("SEC", "started", []), "In Progress")
    fake.set_status(fake.add_issue("SEC", "finished", []), "Done")

    problems = sink(fake).validate()

    assert problems == [
        "jira.done_transition: 'Done' is not a transition from status 'To Do' (e.g. SEC-1), "
        "so a ticket there could not be closed; transitions there: Start",
        "jira.reopen_transition: 'Reopen' is not a transition from status 'Done' (e.g. SEC-3), "
        "so a ticket there could not be reopened; transitions there: Start",
    ]


def test_validate_names_every_users_entry_the_user_search_cannot_find(fake: FakeJira) -> None:
    """A `users` entry naming nobody is reported (a claim by them could never be assigned)."""
    fake.add_user(name="alice", email="alice@example.com")
    users = {
        "UALICE": "alice@example.com",
        "UBOB": "bob@example.com",
        # Smuggled into the query string it would find alice: it must stay one value.
        "UEVIL": "nobody&query=alice@example.com&username=alice",
    }

    problems = sink(fake, users=users).validate()

    how = "an email address" if fake.cloud else "a user name"
    assert problems == [
        f"jira.users.UBOB: 'bob@example.com' finds no Jira user, so a claim by UBOB could never "
        f"be assigned; give {how}",
        "jira.users.UEVIL: 'nobody&query=alice@example.com&username=alice' finds no Jira user, "
        f"so a claim by UEVIL could never be assigned; give {how}",
    ]


ALICE = {"alice", "alice@example.com", "acc-alice"}


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=4))
def test_any_users_value_is_looked_up_as_one_value_and_named_when_nobody(
    fake: FakeJira, values: list[str]
) -> None:
    """Whatever text a `users` value holds (&, =, quotes, NUL, long), it is searched as itself:
    each one that is not a user is named once, and validate never crashes."""
    if not fake.users:
        fake.add_user(name="alice", email="alice@example.com")
    users = {f"U{i}": value for i, value in enumerate(values)}

    problems = sink(fake, users=users).validate()

    nobody = [who for who, value in users.items() if value.lower() not in ALICE]
    assert [p.split(":")[0] for p in problems] == [f"jira.users.{who}" for who in sorted(nobody)]


def test_validate_reports_every_problem_of_the_mapping_at_once(fake: FakeJira) -> None:
    """Priority, component, field, transition and user problems all come back in one answer."""
    fake.add_issue("SEC", "open one", [])

    problems = sink(
        fake,
        priorities={"critical": "P0"},
        components=["Network"],
        fields={"Team": "x"},
        done_transition="Finish",
        users={"UBOB": "bob"},
    ).validate()

    assert [p.split(":")[0].split(" ")[0] for p in problems] == [
        "jira.priorities.critical",
        "jira.components",
        "jira.fields",
        "jira.done_transition",
        "jira.users.UBOB",
    ]


def test_a_missing_transition_is_permanent_and_names_the_available_ones(fake: FakeJira) -> None:
    """A done transition that the workflow lacks is a permanent error listing what exists."""
    jira = sink(fake, done_transition="Close Issue")
    ref = jira.create(FINDING)

    with pytest.raises(TicketError) as caught:
        jira.close(ref, "x")

    assert caught.value.permanent
    assert "no transition 'Close Issue'; available: Start, Done, Reopen" in str(caught.value)


def test_rate_limits_and_outages_are_retryable_bad_fields_are_not(fake: FakeJira) -> None:
    """429 (with Retry-After) and 503 may be retried; a 400 field error is permanent."""
    jira = sink(fake)
    jira.validate()  # connect first, so the injected failures hit the calls under test
    fake.fail("POST", "issue", status=429, retry_after=7)
    fake.fail("POST", "issue", status=503)

    with pytest.raises(TicketError) as limited:
        jira.create(FINDING)
    with pytest.raises(TicketError) as down:
        jira.create(FINDING)
    with pytest.raises(TicketError) as bad:
        sink(fake, priorities={"critical": "P0"}).create(FINDING)

    assert (limited.value.permanent, limited.value.retry_after) == (False, 7)
    assert not down.value.permanent
    assert bad.value.permanent
    assert "The priority selected is invalid: P0" in str(bad.value)
    assert fake.issues == {}


def test_an_unreachable_jira_is_retryable(fake: FakeJira) -> None:
    """A Jira that does not answer at all is a retryable error naming the URL."""
    jira = sink(fake, url="http://127.0.0.1:9")

    with pytest.raises(TicketError) as caught:
        jira.find(FINDING.fingerprint)

    assert not caught.value.permanent
    assert "http://127.0.0.1:9" in str(caught.value)


def test_changed_since_finds_tickets_closed_in_the_tracker(fake: FakeJira) -> None:
    """Polling returns our tickets changed since a time, with done and the fingerprint."""
    jira = sink(fake)
    ref = jira.create(FINDING)
    fake.set_status(ref.key, "Done")

    now = datetime.now(UTC)
    changed = jira.changed_since(now - timedelta(minutes=5), now).refs
    jql = fake.calls_to("GET", "search")[-1].params["jql"]

    assert [(r.key, r.done, r.fingerprint) for r in changed] == [
        ("SEC-1", True, FINDING.fingerprint)
    ]
    assert 'updated >= "-6m"' in jql  # relative: Jira reads absolute dates in its user's zone


def test_lookup_answers_each_key_asked_moved_and_deleted_ones_too(fake: FakeJira) -> None:
    """By the keys we recorded: one still there, one moved (new key), one deleted (None)."""
    jira = sink(fake)
    kept = jira.create(FINDING)
    moved = jira.create(FINDING)
    deleted = jira.create(FINDING)
    fake.add_project("OPS", "Operations")
    fake.move(moved.key, "OPS")
    fake.delete(deleted.key)

    found = jira.lookup([kept.key, moved.key, deleted.key, "not a key", "x" * 500])

    # What is not an issue key is not asked about.
    assert {key: ref.key if ref else None for key, ref in found.items()} == {
        kept.key: "SEC-1",
        moved.key: "OPS-1",
        deleted.key: None,
    }


def test_a_webhook_event_is_read_by_its_key_and_names_its_change(fake: FakeJira) -> None:
    """The delivery id and the change (key, updated, status) name the event; junk keys are None."""
    jira = sink(fake)
    ref = jira.create(FINDING)
    fake.set_status(ref.key, "Done")
    event = fake.webhook("jira:issue_updated", ref.key)
    polled = jira.changed_since(datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC))

    got = jira.ref_from_event(event, delivery="d-1")
    junk = [
        jira.ref_from_event({**event, "issue": {**event["issue"], "key": key}})
        for key in ("SEC-1 OR 1=1", "", None, ["SEC-1"], "S" * 100 + "-1")
    ]

    assert got is not None
    assert got.done
    assert got.change[0] == "delivery|d-1"
    assert got.change[1:] == polled.refs[0].change  # a poll of the same change names it alike
    assert junk == [None] * 5
