"""Hostile text in tickets: Jira wiki markup and Trello Markdown show data as data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.jira_sink import JiraConfig, JiraSink
from integrations.markup import jira_wiki, markdown, one_line
from integrations.tickets import MAX_INLINE, TicketFinding
from integrations.trello_sink import TrelloConfig, TrelloSink
from tests.fakes.jira import FakeJira
from tests.fakes.trello import KEY, TOKEN, FakeTrello
from tests.hostile import hostile_text, long_hostile_text
from tests.integrations.rendered import (
    as_lines,
    jira_active,
    jira_text,
    markdown_shown,
    same_words,
    unescaped,
)

FINDING = TicketFinding(
    fingerprint="c" * 64,
    finding_id=7,
    title="S3 buckets block public access",
    severity="critical",
    status="open",
    resource_type="aws.s3.bucket",
    resource_id="arn:aws:s3:::acme-public",
    resource_name="acme-public",
    account="111122223333",
    region="us-east-1",
    controls=[("HIPAA Security Rule", ["164.312(a)(1)"])],
    remediation="Turn on Block Public Access for the bucket.",
    link="https://example.slack.com/archives/C1/p1",
)
# Function-scoped fakes are reused across examples on purpose: each example adds a ticket.
ACROSS_EXAMPLES = settings(
    max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def hostile_finding(title: str, name: str, note: str) -> TicketFinding:
    """FINDING with attacker-chosen title, resource name and id, control and remediation."""
    return replace(
        FINDING,
        title=title,
        resource_id=name[:200],
        resource_name=name,
        controls=[(title, [note])],
        remediation=note,
    )


def data_of(description: str) -> str:
    """A ticket body without our own markup: the "- " bullets of the controls, "#7" mid-line."""
    return re.sub(r"^- ", "", description, flags=re.MULTILINE).replace("finding #7", "")


def head(value: str) -> str:
    """The start of a value shown on one line (the line is bounded), as words."""
    return words(one_line(value, MAX_INLINE // 4).removesuffix("…"))


def words(text: str) -> str:
    return " ".join(text.split())


# ---- the escape functions ----------------------------------------------------------------------


@given(hostile_text)
def test_jira_wiki_shows_exactly_the_text_and_no_markup(text: str) -> None:
    """Whatever a value holds, Jira shows those characters, and none acts as markup."""
    wiki = jira_wiki(text)
    assert jira_active(wiki) == []
    assert jira_text(wiki) == as_lines(text)


@given(hostile_text)
def test_markdown_shows_exactly_the_text_and_no_markup(text: str) -> None:
    """Whatever a value holds, a Markdown reader shows those words, as plain paragraphs."""
    source = markdown(text)
    shown, kinds = markdown_shown(source)
    assert kinds == set()
    assert same_words(shown, as_lines(text))
    assert unescaped(source, "@") == []  # no Trello @member / @board mention


@given(hostile_text)
def test_markdown_after_a_label_shows_exactly_the_text_and_no_markup(text: str) -> None:
    """A value after a label (`Control: 164.312`) needs fewer escapes and is still inert."""
    shown, kinds = markdown_shown("Control: " + markdown(text, mid_line=True))
    assert kinds == set()
    assert same_words(shown, "Control: " + as_lines(text))


@given(long_hostile_text, st.integers(min_value=1, max_value=600))
def test_one_line_fields_are_one_bounded_line(text: str, limit: int) -> None:
    """A summary or card name is one line of at most its limit, without control characters."""
    line = one_line(text, limit)
    assert len(line) <= limit
    assert not re.search("[\x00-\x1f\x7f-\x9f]", line)


# ---- Jira ----------------------------------------------------------------------------------------


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    """A fake Jira Server on 127.0.0.1."""
    with FakeJira(cloud=False) as fake:
        yield fake


def jira_sink(fake: FakeJira) -> JiraSink:
    return JiraSink(
        JiraConfig(url=fake.url, project="SEC", email="bot@example.com", api_token="t", timeout=5)
    )


def test_a_markup_laden_resource_name_is_inert_in_the_jira_ticket(jira: FakeJira) -> None:
    """A resource named `[evil|http://x] {code} !image.png!` reads as that, not a link or macro."""
    name = "[evil|http://x] {code} !image.png! [~admin]\nh1. Urgent"
    sink = jira_sink(jira)
    ref = sink.create(replace(FINDING, resource_name=name, title="*Pay now*"))

    issue = jira.issues[ref.key]["fields"]
    assert issue["summary"] == f"[CRITICAL] *Pay now*: {one_line(name, 250)}"
    shown = f"{FINDING.resource_id} ({one_line(name, MAX_INLINE)})"  # on its one line
    assert jira_wiki(shown) in issue["description"]
    assert "[evil|http://x]" not in issue["description"]
    assert jira_active(data_of(issue["description"])) == []
    assert shown in jira_text(issue["description"])


@ACROSS_EXAMPLES
@given(title=hostile_text, name=long_hostile_text, note=hostile_text)
def test_jira_tickets_and_comments_carry_no_markup_from_data(
    jira: FakeJira, title: str, name: str, note: str
) -> None:
    """Any title, resource name, note: the issue shows them as text and stays one-line titled."""
    sink = jira_sink(jira)
    ref = sink.create(hostile_finding(title, name, note))
    sink.comment(ref, f"compliancebot: claimed by {note}")
    sink.close(ref, f"compliancebot: resolved by U1: {note}")

    issue = jira.issues[ref.key]["fields"]
    summary = issue["summary"]
    assert "\n" not in summary
    assert len(summary) <= 250
    description = issue["description"]
    assert jira_active(data_of(description)) == []
    shown = words(jira_text(description))
    for value in (title, name):
        assert head(value) in shown
    assert words(as_lines(note.strip())) in shown
    for body in (c["body"] for c in issue["comment"]["comments"]):
        assert jira_active(body) == []
    bodies = [jira_text(c["body"]) for c in issue["comment"]["comments"]]
    assert bodies == [
        as_lines(f"compliancebot: claimed by {note}"),
        as_lines(f"compliancebot: resolved by U1: {note}"),
    ]


# ---- Trello --------------------------------------------------------------------------------------


@pytest.fixture
def trello() -> Iterator[FakeTrello]:
    """A fake Trello with one board on 127.0.0.1."""
    with FakeTrello() as fake:
        fake.add_board("Compliance")
        yield fake


def trello_sink(fake: FakeTrello) -> TrelloSink:
    return TrelloSink(
        TrelloConfig(api_key=KEY, token=TOKEN, board="Compliance", api_url=fake.url, timeout=5)
    )


def test_a_markdown_link_in_a_resource_name_is_inert_on_the_trello_card(
    trello: FakeTrello,
) -> None:
    """A resource named `[click](https://evil)` or `@board` shows as text: no link, no mention."""
    name = "[click](https://evil) @board ![x](https://evil/i.png)\n# Urgent"
    sink = trello_sink(trello)
    ref = sink.create(replace(FINDING, resource_name=name))
    sink.comment(ref, "resolved: @board see <https://evil>")

    card = trello.cards[ref.key]
    assert card["name"] == f"[CRITICAL] {FINDING.title}: {one_line(name, 500)}"
    shown, kinds = markdown_shown(card["desc"])
    assert not kinds & {"link_open", "image", "heading_open", "html_inline", "html_block"}
    assert words(name) in words(shown)
    assert unescaped(card["desc"], "@") == []
    comment = trello.comments(ref.key)[-1]
    assert markdown_shown(comment) == ("\nresolved: @board see <https://evil>\n\n", set())
    assert unescaped(comment, "@") == []


@ACROSS_EXAMPLES
@given(title=hostile_text, name=long_hostile_text, note=hostile_text)
def test_trello_cards_and_comments_carry_no_markup_from_data(
    trello: FakeTrello, title: str, name: str, note: str
) -> None:
    """Any title, resource name, note: the card shows them as text under a one-line name."""
    sink = trello_sink(trello)
    ref = sink.create(hostile_finding(title, name, note))
    sink.comment(ref, f"compliancebot: claimed by {note}")

    card = trello.cards[ref.key]
    assert "\n" not in card["name"]
    assert len(card["name"]) <= 500
    shown, kinds = markdown_shown(card["desc"])
    # Our own markup: the bullet list of controls.
    assert kinds <= {"bullet_list_open", "bullet_list_close", "list_item_open", "list_item_close"}
    for value in (title, name):
        assert head(value) in words(shown)
    assert words(as_lines(note.strip())) in words(shown)
    assert unescaped(card["desc"], "@") == []
    comment = trello.comments(ref.key)[-1]
    shown, kinds = markdown_shown(comment)
    assert kinds == set()
    assert same_words(shown, as_lines(f"compliancebot: claimed by {note}"))
