"""The fake Jira speaks REST v2 as the real `jira` client expects (Server and Cloud)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jira import JIRA, JIRAError

from tests.fakes.jira import FakeJira


@pytest.fixture(params=["server", "cloud"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeJira]:
    """A fake Jira Server/Data Center, then a fake Jira Cloud."""
    with FakeJira(cloud=request.param == "cloud") as jira:
        yield jira


def client(fake: FakeJira) -> JIRA:
    """The real client, retrying nothing itself."""
    return JIRA(server=fake.url, basic_auth=("bot@example.com", "token"), max_retries=0, timeout=5)


def test_create_search_by_label_transition_comment_assign(fake: FakeJira) -> None:
    """An issue created with a fingerprint label is found by JQL, moved, commented, assigned."""
    user = fake.add_user(name="alice", email="alice@example.com")
    jira = client(fake)

    issue = jira.create_issue(
        fields={
            "project": {"key": "SEC"},
            "issuetype": {"name": "Task"},
            "summary": "S3 bucket is public",
            "labels": ["compliancebot", "cb-abc123"],
            "priority": {"name": "High"},
        }
    )
    found = jira.search_issues('project = SEC AND labels = "cb-abc123"')
    jira.transition_issue(issue, "done")
    jira.add_comment(issue, "fixed by the platform team")
    jira.assign_issue(issue.key, user["accountId"] if fake.cloud else "alice")

    assert issue.key == "SEC-1"
    assert [i.key for i in found] == ["SEC-1"]
    stored = fake.issues["SEC-1"]["fields"]
    assert stored["status"]["statusCategory"]["name"] == "Done"
    assert stored["comment"]["comments"][0]["body"] == "fixed by the platform team"
    assert stored["assignee"]["name"] == "alice"


def test_cloud_removed_the_old_search(fake: FakeJira) -> None:
    """On Cloud the old /search answers 410; the client goes to /search/jql with page tokens."""
    jira = client(fake)
    for n in range(3):
        jira.create_issue(
            fields={
                "project": {"key": "SEC"},
                "issuetype": {"name": "Task"},
                "summary": f"finding {n}",
                "labels": ["compliancebot"],
            }
        )

    found = jira.search_issues("labels = compliancebot ORDER BY key ASC", maxResults=False)

    assert len(found) == 3
    path = "search/jql" if fake.cloud else "search"
    assert fake.calls_to("GET", path)


def test_bad_field_is_a_400_with_jiras_error_body(fake: FakeJira) -> None:
    """An unknown field or priority is refused with the field-level messages Jira sends."""
    jira = client(fake)

    with pytest.raises(JIRAError) as caught:
        jira.create_issue(
            fields={
                "project": {"key": "SEC"},
                "issuetype": {"name": "Task"},
                "summary": "x",
                "priority": {"name": "Urgent!"},
            }
        )

    assert caught.value.status_code == 400
    assert "The priority selected is invalid: Urgent!" in (caught.value.text or "")


def test_injected_429_carries_retry_after(fake: FakeJira) -> None:
    """A rate limit is answered with 429 and Retry-After, and the request is recorded."""
    jira = client(fake)
    fake.fail("POST", "issue", status=429, retry_after=7)

    with pytest.raises(JIRAError) as caught:
        jira.create_issue(
            fields={"project": {"key": "SEC"}, "issuetype": {"name": "Task"}, "summary": "x"}
        )

    assert caught.value.status_code == 429
    assert caught.value.response is not None
    assert caught.value.response.headers["Retry-After"] == "7"
    assert fake.issues == {}


def test_issue_changed_in_the_tracker_is_found_by_an_updated_query(fake: FakeJira) -> None:
    """Polling finds issues closed by a person since a time, by statusCategory and updated."""
    jira = client(fake)
    issue = jira.create_issue(
        fields={"project": {"key": "SEC"}, "issuetype": {"name": "Task"}, "summary": "x"}
    )
    fake.set_status(issue.key, "Done")

    done = jira.search_issues('statusCategory = Done AND updated >= "2020-01-01 00:00"')

    assert [i.key for i in done] == [issue.key]
