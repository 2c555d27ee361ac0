"""The framework report (Markdown): names and titles from a framework file are text, not markup."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from sqlalchemy.orm import Session, sessionmaker

from bot.report import framework_report
from integrations.markup import one_line
from rules.catalog import Catalog, Control, Framework
from tests.hostile import hostile_text
from tests.integrations.rendered import markdown_shown

NOW = datetime(2026, 11, 1, tzinfo=UTC)
# The report's own markup: a heading per section, and bullet lists of controls in bold.
OURS = {
    "heading_open",
    "heading_close",
    "bullet_list_open",
    "bullet_list_close",
    "list_item_open",
    "list_item_close",
    "strong_open",
    "strong_close",
}


def catalog_of(name: str, version: str, control: str, title: str) -> Catalog:
    """A catalog holding one user-supplied framework, with no rule covering it."""
    framework = Framework(
        id="custom",
        name=name,
        version=version,
        controls={control: Control(title=title, section="S")},
        source="custom.yaml",
    )
    return Catalog(frameworks={"custom": framework})


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_text, version=hostile_text, control=hostile_text, title=hostile_text)
def test_a_hostile_framework_file_renders_as_text_in_the_report(
    sessions: sessionmaker[Session], name: str, version: str, control: str, title: str
) -> None:
    """Links, images, HTML or headings in a framework file's names show as their characters."""
    with sessions() as session:
        report = framework_report(
            session=session,
            catalog=catalog_of(name, version, control, title := "T" + title),
            framework="custom",
            now=NOW,
        )

    shown, kinds = markdown_shown(report)
    assert kinds <= OURS
    headings = [line for line in report.splitlines() if line.startswith("#")]
    assert len(headings) == 4  # the title and three sections, whatever the names hold
    for value in (name, version, control, title):
        assert one_line(value, 1000) in " ".join(shown.split())


def test_a_link_in_a_control_title_is_not_a_link(sessions: sessionmaker[Session]) -> None:
    """A control titled `[click](https://evil)` shows those characters, no link."""
    with sessions() as session:
        report = framework_report(
            session=session,
            catalog=catalog_of("Evil <b>", "1.0", "C-1", "[click](https://evil) ![x](y)"),
            framework="custom",
            now=NOW,
        )

    shown, kinds = markdown_shown(report)
    assert "link_open" not in kinds
    assert "image" not in kinds
    assert "[click](https://evil) ![x](y)" in shown
    assert "Evil <b> compliance report" in shown
