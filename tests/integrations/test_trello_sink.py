"""The Trello ticket sink (py-trello, rebased) against a fake Trello over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from integrations.tickets import TicketError, TicketFinding, TicketRef
from integrations.trello_sink import TrelloConfig, TrelloSink
from tests.fakes.trello import KEY, TOKEN, FakeTrello

FINDING = TicketFinding(
    fingerprint="b" * 64,
    finding_id=9,
    title="Security groups do not allow SSH from the internet",
    severity="high",
    status="open",
    resource_type="aws.ec2.security_group",
    resource_id="sg-0123",
    resource_name="web",
    account="111122223333",
    region="eu-west-1",
    controls=[("PCI DSS", ["1.3.1"])],
    remediation="Remove the 0.0.0.0/0 rule on port 22.",
    link="https://acme.slack.com/archives/C1/p1",
)


@pytest.fixture
def fake() -> Iterator[FakeTrello]:
    """A fake Trello with one board: To Do, Doing, Done and a label per severity."""
    with FakeTrello() as trello:
        trello.add_board("Compliance")
        yield trello


def sink(fake: FakeTrello, **overrides: object) -> TrelloSink:
    """A sink on the fake's board (found by name), with the default lists."""
    values: dict[str, object] = {
        "api_key": KEY,
        "token": TOKEN,
        "board": "Compliance",
        "api_url": fake.url,
        "labels": {"high": "high", "critical": "critical"},
        "timeout": 5,
        **overrides,
    }
    return TrelloSink(TrelloConfig(**values))  # type: ignore[arg-type]


def test_a_card_lands_in_the_open_list_with_label_marker_and_body(fake: FakeTrello) -> None:
    """The card: in To Do, severity label, body with controls and remediation, fingerprint."""
    trello = sink(fake)

    ref = trello.create(FINDING)

    card = fake.cards[ref.key]
    assert fake.lists[card["idList"]]["name"] == "To Do"
    assert [fake.labels[i]["name"] for i in card["idLabels"]] == ["high"]
    assert card["name"] == "[HIGH] Security groups do not allow SSH from the internet: web"
    assert "- PCI DSS: 1.3.1" in card["desc"]
    assert "Remove the 0.0.0.0/0 rule on port 22." in card["desc"]
    assert "Discussion: https://acme.slack.com/archives/C1/p1" in card["desc"]
    assert card["desc"].endswith("compliancebot: cb-" + "b" * 64)
    assert ref.url == card["shortUrl"]


def test_credentials_travel_in_a_header_never_in_the_url(fake: FakeTrello) -> None:
    """py-trello puts key and token in the query string; the rebasing session moves them."""
    trello = sink(fake)
    trello.create(FINDING)

    assert fake.calls
    for call in fake.calls:
        assert "key" not in call.params
        assert "token" not in call.params


def test_a_wrong_token_is_refused_permanently_without_echoing_it(fake: FakeTrello) -> None:
    """401 is not retried; the message names the cause, not the token."""
    trello = sink(fake, token="wrong-token-value")

    with pytest.raises(TicketError) as caught:
        trello.create(FINDING)

    assert caught.value.permanent
    assert "invalid token" in str(caught.value)
    assert "wrong-token-value" not in str(caught.value)


def test_find_after_a_crash_adopts_the_card_and_skips_a_deleted_one(fake: FakeTrello) -> None:
    """A new process finds the card by its marker; a card deleted since is not adopted."""
    first = sink(fake).create(FINDING)
    other = replace(FINDING, fingerprint="c" * 64, finding_id=10)
    second = sink(fake).create(other)
    restarted = sink(fake)

    found = restarted.find(FINDING.fingerprint)
    fake.delete(second.key)
    gone = restarted.find(other.fingerprint)  # still in the index: checked against Trello

    assert found is not None
    assert found.key == first.key
    assert gone is None
    assert restarted.find("d" * 64) is None


def test_close_and_reopen_move_the_card_with_a_comment(fake: FakeTrello) -> None:
    """Resolved: to Done with why; reopened: back to To Do, also out of the archive."""
    trello = sink(fake)
    ref = trello.create(FINDING)

    trello.progress(ref, "claimed")
    doing = fake.lists[fake.cards[ref.key]["idList"]]["name"]
    trello.close(ref, "compliancebot: resolved by alice")
    done = fake.lists[fake.cards[ref.key]["idList"]]["name"]
    fake.archive(ref.key)
    trello.reopen(ref, "compliancebot: reopened again")

    card = fake.cards[ref.key]
    assert (doing, done) == ("Doing", "Done")
    assert fake.lists[card["idList"]]["name"] == "To Do"
    assert card["closed"] is False
    assert fake.comments(ref.key) == [
        "compliancebot: resolved by alice",
        "compliancebot: reopened again",
    ]


def test_assign_sets_and_clears_the_member(fake: FakeTrello) -> None:
    """A mapped member becomes the card's member; None clears it."""
    trello = sink(fake)
    ref = trello.create(FINDING)

    trello.assign(ref, fake.person["id"])
    assigned = list(fake.cards[ref.key]["idMembers"])
    trello.assign(ref, None)

    assert assigned == [fake.person["id"]]
    assert fake.cards[ref.key]["idMembers"] == []


def test_rate_limit_is_retryable_with_retry_after_and_400_is_not(fake: FakeTrello) -> None:
    """429 carries Retry-After into the error; a refused value is permanent with its text."""
    trello = sink(fake)
    ref = trello.create(FINDING)
    fake.fail("POST", "cards", status=429, retry_after=7)

    with pytest.raises(TicketError) as limited:
        trello.comment(ref, "hello")
    fake.fail("PUT", "cards", status=400, body="invalid value for idList")
    with pytest.raises(TicketError) as refused:
        trello.close(ref, "done")

    assert (limited.value.permanent, limited.value.retry_after) == (False, 7.0)
    assert refused.value.permanent
    assert "invalid value for idList" in str(refused.value)


def test_a_dead_server_and_a_malformed_answer_are_retryable(fake: FakeTrello) -> None:
    """A 503 and a body that is not JSON are worth another try later."""
    trello = sink(fake)
    ref = trello.create(FINDING)
    fake.fail("POST", "cards", status=503)
    fake.fail("POST", "cards", status=200, body="<html>proxy error</html>")

    with pytest.raises(TicketError) as unavailable:
        trello.comment(ref, "hello")
    with pytest.raises(TicketError) as garbled:
        trello.comment(ref, "hello")

    assert not unavailable.value.permanent
    assert not garbled.value.permanent
    assert "not JSON" in str(garbled.value)


def test_a_comment_on_a_deleted_card_says_it_is_gone(fake: FakeTrello) -> None:
    """404 on the card: permanent and `gone`, so the sync can make a new one."""
    trello = sink(fake)
    ref = trello.create(FINDING)
    fake.delete(ref.key)

    with pytest.raises(TicketError) as caught:
        trello.comment(ref, "hello")

    assert caught.value.gone


def test_changed_since_reports_moves_archives_and_deletions_by_people(fake: FakeTrello) -> None:
    """The board's actions since a time: done, reopened, deleted; the bot's own moves are not."""
    trello = sink(fake)
    since = datetime.now(UTC) - timedelta(seconds=5)
    moved = trello.create(FINDING)
    archived = trello.create(replace(FINDING, fingerprint="c" * 64))
    deleted = trello.create(replace(FINDING, fingerprint="d" * 64))
    mine = trello.create(replace(FINDING, fingerprint="e" * 64))
    fake.move(moved.key, "Done")
    fake.archive(archived.key)
    fake.delete(deleted.key)
    trello.close(mine, "by the bot")

    changed = {r.key: r for r in trello.changed_since(since, datetime.now(UTC)).refs}

    assert set(changed) == {moved.key, archived.key, deleted.key}
    assert changed[moved.key].done
    assert changed[archived.key].done
    assert changed[deleted.key].deleted


def test_validate_names_missing_lists_and_labels_with_those_that_exist(fake: FakeTrello) -> None:
    """A list or label the board lacks is named, with the board's own."""
    trello = sink(fake, lists={"open": "Backlog", "resolved": "Done"}, labels={"low": "Low!"})

    problems = trello.validate()

    assert problems == [
        "trello.lists.open: board 'Compliance' has no list 'Backlog'; lists: To Do, Doing, Done",
        "trello.labels.low: board 'Compliance' has no label 'Low!'; labels: critical, high, "
        "medium, low, info",
    ]


def test_validate_names_users_who_are_not_members_of_the_board(fake: FakeTrello) -> None:
    """A `users` value that is not a board member's id is named, with the id when it is a
    member's username, so a claim is not left unassigned forever."""
    stranger = fake.add_member("sam", "Sam Stranger")  # on Trello, but not on this board
    users = {"UPAT": fake.person["id"], "UNAME": "@pat", "USAM": stranger["id"]}

    problems = sink(fake, users=users).validate()

    members = f"compliancebot ({fake.bot['id']}), pat ({fake.person['id']})"
    assert problems == [
        f"trello.users.UNAME: '@pat' is not the id of a member of board 'Compliance', so a claim "
        f"by UNAME could never be assigned; use the member id: pat is {fake.person['id']}",
        f"trello.users.USAM: '{stranger['id']}' is not the id of a member of board "
        f"'Compliance', so a claim by USAM could never be assigned; members: {members}",
    ]


def test_a_malformed_member_list_is_read_as_no_members_not_a_crash(fake: FakeTrello) -> None:
    """A members answer of numbers, strings and nulls names the users entry, nothing worse."""
    board = next(iter(fake.boards))
    fake.fail("GET", f"boards/{board}/members", status=200, body='[1, "x", null, {"id": 5}]')

    problems = sink(fake, users={"UPAT": fake.person["id"]}).validate()

    assert len(problems) == 1
    assert problems[0].startswith("trello.users.UPAT: ")
    assert problems[0].endswith("members: None (5)")


def test_a_wrong_list_label_and_member_are_all_named_at_once(fake: FakeTrello) -> None:
    """Every mapped list, label and member the board lacks comes back in one answer."""
    problems = sink(
        fake,
        lists={"open": "Backlog", "claimed": "Doing", "resolved": "Closed"},
        labels={"critical": "sev1"},
        users={"UX": "0" * 24},
    ).validate()

    assert [p.split(":")[0] for p in problems] == [
        "trello.lists.open",
        "trello.lists.resolved",
        "trello.labels.critical",
        "trello.users.UX",
    ]


def test_an_unknown_board_names_the_boards_the_token_sees(fake: FakeTrello) -> None:
    """A board name that does not exist is reported with the visible ones."""
    problems = sink(fake, board="Security").validate()

    assert problems == [
        "trello.board: Trello board 'Security' does not exist or the token cannot see it; "
        "boards: Compliance"
    ]


def test_a_webhook_action_reads_like_a_polled_one(fake: FakeTrello) -> None:
    """The action inside a webhook delivery gives the same ref as polling would."""
    trello = sink(fake)
    ref = trello.create(FINDING)
    action = fake.move(ref.key, "Done")

    got = trello.ref_from_action(action)

    assert got == TicketRef(sink="trello", key=ref.key, url="", done=True, change=(action["id"],))


def test_lookup_answers_cards_on_the_board_and_deleted_ones(fake: FakeTrello) -> None:
    """By the card ids we recorded: present (archived too), deleted (None); junk ids not asked."""
    trello = sink(fake)
    kept = trello.create(FINDING)
    archived = trello.create(replace(FINDING, fingerprint="c" * 64))
    deleted = trello.create(replace(FINDING, fingerprint="d" * 64))
    fake.archive(archived.key)
    fake.delete(deleted.key)

    found = trello.lookup([kept.key, archived.key, deleted.key, "../members/me", "f" * 25])

    assert {key: ref.done if ref else None for key, ref in found.items()} == {
        kept.key: False,
        archived.key: True,
        deleted.key: None,
    }
