"""The task catalog: the shipped tasks, recurrence (month ends, DST), and errors naming file,
line and field."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.tasks import CalendarClock
from rules.catalog import load_catalog
from rules.errors import CatalogError
from rules.tasks import Policy, load_tasks, parse_lead, resolve_owner

FRAMEWORKS = load_catalog().frameworks

VALID = """\
id: my_task
title: Review the firewall rules
policy: Configuration Management
description: Look at every rule.
controls:
  soc2: [CC6.6]
recurrence: FREQ=MONTHLY;BYMONTHDAY=-1
owner: security
reminders: [7d, due]
evidence: note
"""


def write(tmp_path: Path, text: str, name: str = "my_task") -> Path:
    """A user task directory holding one task file."""
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "tasks" / f"{name}.yaml").write_text(text)
    return tmp_path


def load(root: Path) -> dict[str, object]:
    """The user's tasks only."""
    return dict(load_tasks(frameworks=FRAMEWORKS, extra_paths=[root], include_builtin=False).tasks)


def test_the_shipped_tasks_cover_hipaa_and_soc2_and_every_policy() -> None:
    """The default set loads, cites HIPAA and SOC 2, and spans the policies."""
    tasks = load_tasks(frameworks=FRAMEWORKS).tasks.values()

    assert len(tasks) >= 10
    assert all({"hipaa", "soc2"} <= set(t.controls) for t in tasks)
    assert {t.policy for t in tasks} == set(Policy)
    weekly = next(t for t in tasks if t.id == "access_review_weekly")
    assert weekly.due_dates(date(2026, 12, 1), date(2026, 12, 31)) == [
        date(2026, 12, 7),
        date(2026, 12, 14),
        date(2026, 12, 21),
        date(2026, 12, 28),
    ]


def test_month_end_recurrence_lands_on_the_last_day_of_every_month(tmp_path: Path) -> None:
    """BYMONTHDAY=-1: Jan 31, Feb 28 (29 in a leap year), Mar 31, Apr 30."""
    task = load(write(tmp_path, VALID))["my_task"]

    dates = task.due_dates(date(2027, 12, 31), date(2028, 4, 30))  # type: ignore[attr-defined]

    assert dates == [date(2028, 1, 31), date(2028, 2, 29), date(2028, 3, 31), date(2028, 4, 30)]


def test_the_due_instant_follows_daylight_saving_time() -> None:
    """09:00 in Berlin is 08:00 UTC before the March change and 07:00 UTC after it."""
    clock = CalendarClock("Europe/Berlin", time(9, 0))

    before = clock.due_at(date(2026, 3, 23))
    after = clock.due_at(date(2026, 3, 30))
    autumn = clock.due_at(date(2026, 10, 26))

    assert before == datetime(2026, 3, 23, 8, 0, tzinfo=UTC)
    assert after == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert autumn == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)
    assert clock.today(datetime(2026, 3, 29, 22, 30, tzinfo=UTC)) == date(2026, 3, 30)


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ("FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=MONTHY"),
            ":7: recurrence:",
            "is not a valid RRULE",
        ),
        (
            ("FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=HOURLY"),
            ":7: recurrence:",
            "at most daily",
        ),
        (
            ("FREQ=MONTHLY;BYMONTHDAY=-1", "DTSTART:20260101\\nRRULE:FREQ=DAILY"),
            ":7: recurrence:",
            "give the rule alone",
        ),
        (("soc2: [CC6.6]", "soc2: [CC99.9]"), ":6: controls.soc2[0]:", "unknown soc2 control"),
        (("soc2: [CC6.6]", "sox: [A1]"), ":6: controls.sox:", "unknown framework 'sox'"),
        (("owner: security", "owner: Security Team"), ":8: owner:", "is not an owner"),
        (("[7d, due]", "[7 days]"), ":9: reminders:", "is not a lead time"),
        (("evidence: note", "evidence: photo"), ":10: evidence:", "Input should be"),
        (("policy: Configuration Management", "policy: Vibes"), ":3: policy:", "Input should"),
        (("id: my_task", "id: other_task"), ":1: id:", "must match the file name"),
        (("title: Review", "titel: Review"), ":2: titel:", "unknown field"),
    ],
)
def test_task_errors_name_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], where: str, message: str
) -> None:
    """Every bad field is reported as file:line: field: what is wrong."""
    root = write(tmp_path, VALID.replace(*change))

    with pytest.raises(CatalogError) as caught:
        load(root)

    text = str(caught.value)
    assert f"my_task.yaml{where}" in text
    assert message in text


def test_an_unknown_disabled_task_names_the_known_ones(tmp_path: Path) -> None:
    """calendar.disabled with a typo is an error listing the task ids."""
    with pytest.raises(CatalogError) as caught:
        load_tasks(frameworks=FRAMEWORKS, disabled=["acess_review_weekly"])

    assert "unknown task 'acess_review_weekly'; known: access_review_weekly" in str(caught.value)


@given(n=st.integers(min_value=0, max_value=999), unit=st.sampled_from("dhw"))
def test_lead_times_read_as_written(n: int, unit: str) -> None:
    """'<n>d', '<n>h', '<n>w' are that many days, hours, weeks."""
    expected = {"d": timedelta(days=n), "h": timedelta(hours=n), "w": timedelta(weeks=n)}[unit]

    assert parse_lead(f"{n}{unit}") == expected


@given(text=st.text(max_size=40))
def test_any_recurrence_text_loads_or_is_a_named_error(text: str) -> None:
    """Whatever is written as the recurrence: a task, or an error naming the field."""
    with tempfile.TemporaryDirectory() as scratch:
        root = write(Path(scratch), VALID.replace("FREQ=MONTHLY;BYMONTHDAY=-1", repr(text)))
        try:
            load(root)
            problem = None
        except CatalogError as exc:
            problem = str(exc)

    assert problem is None or "my_task.yaml" in problem


# ---- owners checked against the config: still file:line: field ----------------------------------


def test_an_owner_role_missing_from_calendar_owners_is_one_line_at_the_owner_line(
    tmp_path: Path,
) -> None:
    """`owner: security` with only `it` mapped: file:8: owner: what is wrong, on one line."""
    root = write(tmp_path, VALID)
    task = load_tasks(frameworks=FRAMEWORKS, extra_paths=[root], include_builtin=False).tasks[
        "my_task"
    ]

    with pytest.raises(CatalogError) as caught:
        resolve_owner(task, {"it": "U0123ABCD"})

    assert str(caught.value) == (
        f"{root / 'tasks' / 'my_task.yaml'}:8: owner: owner role 'security' is not in "
        "calendar.owners (defined: it)"
    )


@given(roles=st.dictionaries(st.text(min_size=1, max_size=200), st.just("U0123ABCD"), max_size=5))
def test_whatever_the_configured_role_names_the_owner_error_stays_one_line(
    roles: dict[str, str],
) -> None:
    """Role names from the config file with newlines, tabs or 200 characters: the error is
    still one line starting with file:line: owner:."""
    roles.pop("security", None)
    with tempfile.TemporaryDirectory() as scratch:
        root = write(Path(scratch), VALID)
        task = load_tasks(frameworks=FRAMEWORKS, extra_paths=[root], include_builtin=False).tasks[
            "my_task"
        ]

        with pytest.raises(CatalogError) as caught:
            resolve_owner(task, roles)

    text = str(caught.value)
    assert text.startswith(f"{root / 'tasks' / 'my_task.yaml'}:8: owner: owner role 'security'")
    assert len(text.splitlines()) == 1
