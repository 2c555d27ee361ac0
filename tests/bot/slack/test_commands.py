"""Slash-command text parsing: every input is a command or a message saying what is valid."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slack import commands as cmd
from bot.slack.ids import FindingsQuery, SlackInputError

FRAMEWORKS = ("hipaa", "soc2", "hitrust", "pci_dss", "cis_aws")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", cmd.Status()),
        ("status", cmd.Status()),
        ("HELP", cmd.Help()),
        ("tasks", cmd.Tasks()),
        ("findings", cmd.Findings(FindingsQuery())),
        (
            "findings critical high HIPAA mine",
            cmd.Findings(
                FindingsQuery(severities=("critical", "high"), framework="hipaa", mine=True)
            ),
        ),
        ("findings pci", cmd.Findings(FindingsQuery(framework="pci_dss"))),
        ("show #42", cmd.Show(42)),
        ("scan", cmd.Scan(None)),
        ("scan Prod-EU", cmd.Scan("Prod-EU")),
        ("report cis", cmd.Report("cis_aws")),
    ],
)
def test_valid_commands(text: str, expected: cmd.Command) -> None:
    """What a user types maps to the request they meant (case-insensitive, aliases work)."""
    assert cmd.parse(text, FRAMEWORKS) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus", "unknown subcommand 'bogus'; valid: status, findings"),
        ("findings urgent", "give severities (critical, high, medium, low, info)"),
        ("findings hipaa soc2", "at most one framework"),
        ("show", "`show` takes one finding id"),
        ("show abc", "'abc' is not a finding id"),
        ("report", "`report` takes one framework: cis_aws, hipaa"),
        ("report iso27001", "`report` takes one framework"),
        ("status now", "`status` takes no arguments"),
        ("scan a b", "`scan` takes at most one account"),
    ],
)
def test_bad_commands_say_what_is_valid(text: str, message: str) -> None:
    """A wrong subcommand or argument gets a message naming what would be valid."""
    with pytest.raises(SlackInputError) as caught:
        cmd.parse(text, FRAMEWORKS)
    assert message in str(caught.value)


@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_with_a_message(text: str) -> None:
    """No text makes the parser crash: it is a command, or a SlackInputError with a message."""
    try:
        parsed = cmd.parse(text, FRAMEWORKS)
    except SlackInputError as exc:
        assert str(exc)  # noqa: PT017 - either outcome is fine; a refusal must say something
    else:
        assert isinstance(
            parsed,
            cmd.Command,
        )


@given(
    st.lists(
        st.sampled_from(["critical", "high", "low", "mine", "hipaa", "soc2", "cis"]), max_size=8
    )
)
def test_findings_filters_round_trip_through_a_button(words: list[str]) -> None:
    """Filters survive being carried in a Next-page button's value."""
    try:
        parsed = cmd.parse("findings " + " ".join(words), FRAMEWORKS)
    except SlackInputError:
        return
    assert isinstance(parsed, cmd.Findings)
    assert FindingsQuery.load(parsed.query.with_page(3).dump()) == parsed.query.with_page(3)
