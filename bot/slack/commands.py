"""The slash command's text, parsed into a typed request (pure: tested with hypothesis)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bot.slack.ids import FindingsQuery, SlackInputError, parse_id, shown
from rules.catalog import Severity
from rules.tasks import is_task_id

SUBCOMMANDS = ("status", "findings", "show", "scan", "report", "tasks", "help")
ALIASES = {"pci": "pci_dss", "pci-dss": "pci_dss", "cis": "cis_aws", "cis-aws": "cis_aws"}
MAX_ARGS = 8


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Findings:
    query: FindingsQuery


@dataclass(frozen=True)
class Show:
    finding_id: int


@dataclass(frozen=True)
class Scan:
    account: str | None


REPORT_FORMATS = ("md", "html", "csv", "json", "pdf")


@dataclass(frozen=True)
class Report:
    framework: str
    format: str = "md"  # one of REPORT_FORMATS


@dataclass(frozen=True)
class Tasks:
    pass


@dataclass(frozen=True)
class TasksHistory:
    task: str | None  # a task id, or every task


@dataclass(frozen=True)
class Help:
    pass


Command = Status | Findings | Show | Scan | Report | Tasks | TasksHistory | Help


def _framework(word: str, frameworks: Collection[str]) -> str | None:
    word = ALIASES.get(word, word)
    return word if word in frameworks else None


def parse(text: str, frameworks: Collection[str]) -> Command:  # noqa: PLR0912 - a branch a subcommand
    """`text` as typed after the command; raises SlackInputError saying what is valid."""
    raw_words = text.split()
    words = [w.lower() for w in raw_words]
    if not words:
        return Status()
    sub, args = words[0], words[1:]
    if len(args) > MAX_ARGS:
        raise SlackInputError(f"too many arguments to `{sub}` ({len(args)}; at most {MAX_ARGS})")
    known = ", ".join(sorted(frameworks))
    if sub in ("status", "tasks", "help"):
        if args and sub != "tasks":
            raise SlackInputError(f"`{sub}` takes no arguments")
        plain: dict[str, Command] = {"status": Status(), "help": Help()}
        return _tasks(args) if sub == "tasks" else plain[sub]
    if sub == "findings":
        severities: list[str] = []
        framework = None
        mine = False
        for word in args:
            if word in Severity.__members__:
                if word not in severities:
                    severities.append(word)
            elif word == "mine":
                mine = True
            elif (fw := _framework(word, frameworks)) is not None:
                if framework is not None and framework != fw:
                    raise SlackInputError("name at most one framework")
                framework = fw
            else:
                raise SlackInputError(
                    f"`findings` does not understand {word!r}: give severities "
                    f"({', '.join(Severity)}), a framework ({known}) and/or `mine`"
                )
        return Findings(FindingsQuery(severities=tuple(severities), framework=framework, mine=mine))
    if sub == "show":
        if len(args) != 1:
            raise SlackInputError("`show` takes one finding id, e.g. `show 42`")
        return Show(parse_id(args[0].removeprefix("#"), "finding", "`show`:"))
    if sub == "scan":
        if len(args) > 1:
            raise SlackInputError("`scan` takes at most one account (a target name or account id)")
        return Scan(raw_words[1] if args else None)
    if sub == "report":
        if not 1 <= len(args) <= 2 or _framework(args[0], frameworks) is None:
            raise SlackInputError(
                f"`report` takes one framework: {known}; then a format if you like: "
                f"{', '.join(REPORT_FORMATS)}"
            )
        fw = _framework(args[0], frameworks)
        assert fw is not None
        if len(args) == 2 and args[1] not in REPORT_FORMATS:
            raise SlackInputError(
                f"`report {fw}`: {shown(args[1])} is not a format; valid: "
                f"{', '.join(REPORT_FORMATS)}"
            )
        return Report(fw, args[1] if len(args) == 2 else "md")
    raise SlackInputError(f"unknown subcommand {sub!r}; valid: {', '.join(SUBCOMMANDS)}")


def _tasks(args: list[str]) -> Command:
    """`tasks` (what is due) or `tasks history [task]`."""
    if not args:
        return Tasks()
    if args[0] != "history" or len(args) > 2:
        raise SlackInputError("`tasks` takes nothing (what is due) or `history [task id]`")
    if len(args) == 1:
        return TasksHistory(None)
    if not is_task_id(args[1]):
        raise SlackInputError(
            f"`tasks history`: {shown(args[1])} is not a task id (lower case letters, digits "
            "and _, e.g. access_review)"
        )
    return TasksHistory(args[1])
