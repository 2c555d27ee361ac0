"""Configuration: file, environment and secrets file; every mistake named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.settings import (
    SECRET_KEYS,
    ConfigError,
    ScheduleSettings,
    load_settings,
    masked,
    missing_secrets,
    require_secrets,
)
from tests.fakes.hostile_files import HOSTILE, hostile_cases

SIGNING_SECRET = "8f742231b10e8888abcd99edabcd85a5"  # as Slack issues them: 32 hex characters


def write(tmp_path: Path, text: str, name: str = "compliancebot.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_no_file_gives_embedded_defaults() -> None:
    """Running with no config at all works: SQLite next to you, one default AWS target."""
    s = load_settings(None, environ={})
    assert s.database.url == "sqlite:///compliancebot.db"
    assert [t.name for t in s.aws.targets] == ["default"]


def test_file_then_environment_override(tmp_path: Path) -> None:
    """Every key can be overridden from COMPLIANCEBOT_* variables, nested with __."""
    path = write(
        tmp_path,
        "aws:\n  max_workers: 4\n  targets:\n    - name: prod\n"
        "      regions: all\n      role_arn: arn:aws:iam::123456789012:role/Audit\n"
        "      external_id: xyz\n",
    )
    s = load_settings(path, environ={"COMPLIANCEBOT_AWS__MAX_WORKERS": "32"})
    assert s.aws.max_workers == 32
    assert s.aws.targets[0].regions == "all"
    s2 = load_settings(None, environ={"COMPLIANCEBOT_CONFIG": str(path)})
    assert s2.aws.max_workers == 4


def test_config_errors_name_file_line_and_key(tmp_path: Path) -> None:
    """An invalid file gives file:line, the key path and what is valid, for every problem."""
    path = write(
        tmp_path,
        "aws:\n  targets:\n    - name: prod\n      regions: [us-east-1, moon]\n"
        "  max_workers: 0\nrules:\n  disabld: []\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    text = str(info.value)
    assert f"{path}:4: aws.targets[0].regions: 'moon' is not an AWS region name" in text
    assert f"{path}:5: aws.max_workers: Input should be greater than or equal to 1" in text
    assert f"{path}:7: rules.disabld: unknown key (check the spelling)" in text


def test_environment_errors_name_the_variable() -> None:
    """A bad environment value names the variable it came from."""
    with pytest.raises(ConfigError, match="environment variable COMPLIANCEBOT_AWS__MAX_WORKERS"):
        load_settings(None, environ={"COMPLIANCEBOT_AWS__MAX_WORKERS": "many"})


def test_password_in_config_file_is_refused(tmp_path: Path) -> None:
    """Secrets never live in the config file: a database password there is an error."""
    path = write(tmp_path, "database:\n  url: postgresql://bot:hunter2@db/compliance\n")
    with pytest.raises(ConfigError, match="a password does not belong in the config file"):
        load_settings(path, environ={})


def test_secrets_file_supplies_secrets_and_they_are_masked(tmp_path: Path) -> None:
    """A secrets file (e.g. a mounted Kubernetes secret) fills secrets; config check masks them."""
    secrets = write(
        tmp_path, "database:\n  url: postgresql://bot:hunter2@db/compliance\n", name="secrets.yaml"
    )
    s = load_settings(None, environ={"COMPLIANCEBOT_SECRETS_FILE": str(secrets)})
    assert s.database.url.endswith("@db/compliance")
    shown = yaml.safe_dump(masked(s))
    assert "hunter2" not in shown
    assert "***" in shown


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    """--config pointing nowhere says so instead of silently using defaults."""
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_non_mapping_file_is_explained(tmp_path: Path) -> None:
    """A file that is a list or a string says which sections are expected."""
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        load_settings(write(tmp_path, "- a\n- b\n"), environ={})


keys = st.sampled_from(["database", "aws", "rules", "logging", "bogus"])
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=10),
    st.lists(st.text(max_size=5), max_size=3),
)
documents = st.dictionaries(
    keys,
    st.one_of(
        leaves,
        st.dictionaries(
            st.sampled_from(["url", "targets", "max_workers", "paths", "level", "format", "x"]),
            leaves,
            max_size=3,
        ),
    ),
    max_size=4,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(doc=documents)
def test_any_config_document_loads_or_gives_a_config_error(
    tmp_path: Path, doc: dict[str, object]
) -> None:
    """No YAML content makes the loader crash: it is valid, or a ConfigError with a location."""
    path = write(tmp_path, yaml.safe_dump(doc))
    try:
        load_settings(path, environ={})
    except ConfigError as exc:
        assert str(path) in str(exc) or "environment" in str(exc)  # noqa: PT017 - valid or this error, both fine


# ---- slack ----------------------------------------------------------------------------------


def test_slack_secret_in_the_config_file_is_refused(tmp_path: Path) -> None:
    """A bot token written in the config file is refused, naming the variable to use instead."""
    path = write(tmp_path, "slack:\n  enabled: true\n  bot_token: xoxb-123\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert f"{path}:3: slack.bot_token" in str(caught.value)
    assert "COMPLIANCEBOT_SLACK__BOT_TOKEN" in str(caught.value)


def test_slack_enabled_without_secrets_names_the_missing_variables(tmp_path: Path) -> None:
    """Slack on without its secrets loads (for commands that do not use them), and where they
    are used the error says which environment variables to set."""
    path = write(tmp_path, "slack:\n  enabled: true\n  channel: C0123ABCD\n")
    # An empty variable (docker compose's unset ${VAR:-}) counts as not set.
    loaded = load_settings(path, environ={"COMPLIANCEBOT_SLACK__BOT_TOKEN": ""})
    with pytest.raises(ConfigError) as caught:
        require_secrets(missing_secrets(loaded))
    message = str(caught.value)
    assert "COMPLIANCEBOT_SLACK__BOT_TOKEN and COMPLIANCEBOT_SLACK__SIGNING_SECRET" in message
    socket = write(tmp_path, "slack:\n  enabled: true\n  mode: socket\n  channel: C0123ABCD\n")
    loaded = load_settings(socket, environ={"COMPLIANCEBOT_SLACK__BOT_TOKEN": "xoxb-1"})
    assert missing_secrets(loaded) == [
        "slack.app_token is not set, and Slack in socket mode needs it: set "
        "COMPLIANCEBOT_SLACK__APP_TOKEN or put it in the secrets file (COMPLIANCEBOT_SECRETS_FILE)"
    ]


def test_every_missing_secret_of_every_integration_is_named_at_once() -> None:
    """Slack, Jira and Trello on without secrets: one error names all their variables."""
    loaded = load_settings(
        None,
        environ={
            "COMPLIANCEBOT_SLACK__ENABLED": "true",
            "COMPLIANCEBOT_SLACK__CHANNEL": "C0123ABCD",
            "COMPLIANCEBOT_TICKETS__JIRA__ENABLED": "true",
            "COMPLIANCEBOT_TICKETS__JIRA__URL": "https://acme.atlassian.net",
            "COMPLIANCEBOT_TICKETS__JIRA__EMAIL": "bot@acme.com",
            "COMPLIANCEBOT_TICKETS__TRELLO__ENABLED": "true",
            "COMPLIANCEBOT_TICKETS__TRELLO__BOARD": "Compliance",
            "COMPLIANCEBOT_TICKETS__TRELLO__API_KEY": "k",
        },
    )

    with pytest.raises(ConfigError) as caught:
        require_secrets(missing_secrets(loaded))

    lines = str(caught.value).splitlines()
    assert lines[0] == "secrets are missing:"
    assert "COMPLIANCEBOT_SLACK__BOT_TOKEN and COMPLIANCEBOT_SLACK__SIGNING_SECRET" in lines[1]
    assert "COMPLIANCEBOT_TICKETS__JIRA__API_TOKEN (Cloud)" in lines[2]
    assert lines[3].startswith("  tickets.trello.token is not set, and Trello needs it: set ")
    assert "COMPLIANCEBOT_TICKETS__TRELLO__TOKEN" in lines[3]
    assert "API_KEY" not in lines[3]  # the key is set


def test_slack_secrets_from_the_environment_are_masked(tmp_path: Path) -> None:
    """Secrets from the environment work and never appear in `config check` output."""
    path = write(tmp_path, "slack:\n  enabled: true\n  channel: C0123ABCD\n")
    s = load_settings(
        path,
        environ={
            "COMPLIANCEBOT_SLACK__BOT_TOKEN": "xoxb-very-secret",
            "COMPLIANCEBOT_SLACK__SIGNING_SECRET": SIGNING_SECRET,
        },
    )
    assert s.slack.bot_token is not None
    assert s.slack.bot_token.get_secret_value() == "xoxb-very-secret"
    shown = yaml.safe_dump(masked(s))
    assert "xoxb-very-secret" not in shown
    assert SIGNING_SECRET not in shown


def test_slack_channel_must_be_an_id(tmp_path: Path) -> None:
    """A channel name where an ID is needed is refused with what an ID looks like."""
    path = write(tmp_path, "slack:\n  channel: '#compliance'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert f"{path}:2: slack.channel: '#compliance' is not a Slack channel ID" in str(caught.value)
    assert "like C0123ABCD" in str(caught.value)


def test_slack_routes_pick_the_first_matching_channel() -> None:
    """Routes match on account, severity and rule; the first match wins, else the default."""
    s = load_settings(
        None,
        environ={
            "COMPLIANCEBOT_SLACK__CHANNEL": "C0DEFAULT",
            "COMPLIANCEBOT_SLACK__ROUTES": '[{"channel": "C0PROD", "accounts": ["111"]},'
            ' {"channel": "C0CRIT", "severities": ["critical"]}]',
        },
    )
    route = s.slack.channel_for
    assert route(account="111", severity="critical", rule_id="r") == "C0PROD"
    assert route(account="222", severity="critical", rule_id="r") == "C0CRIT"
    assert route(account="222", severity="low", rule_id="r") == "C0DEFAULT"


# ---- hostile files --------------------------------------------------------------------------

yaml_ish = st.text(alphabet="ab1.:-[]{}&*!|>'\"#%@,?~<= \n\t\x00\x85é", max_size=300)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(content=st.one_of(st.binary(max_size=600), yaml_ish.map(str.encode)))
def test_any_bytes_as_a_config_file_give_settings_or_a_config_error(
    tmp_path: Path, content: bytes
) -> None:
    """Whatever bytes the config file holds, it loads or gives a ConfigError naming the file."""
    path = tmp_path / "compliancebot.yaml"
    path.write_bytes(content)
    try:
        load_settings(path, environ={})
    except ConfigError as exc:
        assert str(path) in str(exc)  # noqa: PT017 - valid or this error, both fine


@hostile_cases
def test_a_hostile_config_file_is_one_located_error(tmp_path: Path, case: str) -> None:
    """A config file built to hang, crash or exhaust memory is one ConfigError at file:line."""
    path = tmp_path / "compliancebot.yaml"
    HOSTILE[case].make(path)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    where = f"{path}:{HOSTILE[case].line}: " if HOSTILE[case].line else f"{path}: "
    assert str(caught.value).startswith(where)
    assert HOSTILE[case].says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_hostile_secrets_file_is_refused_the_same_way(tmp_path: Path) -> None:
    """The secrets file goes through the same bounded loader: /dev/zero is refused at once."""
    with pytest.raises(ConfigError, match="is a character device, not a YAML file"):
        load_settings(None, environ={"COMPLIANCEBOT_SECRETS_FILE": "/dev/zero"})


def test_anchors_and_merge_keys_share_settings_between_targets(tmp_path: Path) -> None:
    """`<<: *base` still works in a config file: aliases are bounded, not banned."""
    path = write(
        tmp_path,
        "aws:\n  targets:\n"
        "    - &base {name: prod, regions: [us-east-1, eu-west-1], profile: audit}\n"
        "    - {<<: *base, name: staging}\n",
    )
    s = load_settings(path, environ={})
    assert [(t.name, t.regions, t.profile) for t in s.aws.targets] == [
        ("prod", ["us-east-1", "eu-west-1"], "audit"),
        ("staging", ["us-east-1", "eu-west-1"], "audit"),
    ]


# ---- weak and leaked secrets ----------------------------------------------------------------

MINIMUMS = {s.name: s for s in SECRET_KEYS if s.min_length}


def test_the_secrets_people_choose_or_copy_have_minimums() -> None:
    """The secrets that authenticate callers of `serve`, and the audit chain's HMAC key, all
    have a minimum length of 32."""
    assert {name: s.min_length for name, s in MINIMUMS.items()} == {
        "slack.signing_secret": 32,
        "tickets.jira.webhook_secret": 32,
        "tickets.trello.webhook_secret": 32,
        "calendar.feed_token": 32,
        "audit.hmac_key": 32,
        "events.webhook.secret": 32,
    }


@pytest.mark.parametrize("name", list(MINIMUMS))
@pytest.mark.parametrize("value", ["¤", "¤" * 31])
def test_a_short_secret_is_refused_naming_the_variable_and_the_minimum(
    name: str, value: str
) -> None:
    """A 1-character (or 31-character) secret is refused: which variable, how long, how to fix."""
    secret = MINIMUMS[name]
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={secret.variable: value})
    message = str(caught.value)
    assert f"environment variable {secret.variable}: {name}: too short ({len(value)} " in message
    assert "at least 32 needed" in message
    assert "¤" not in message  # the value itself is never echoed
    hint = "Basic Information" if name == "slack.signing_secret" else "secret"
    assert hint in message


def test_every_short_secret_is_listed_at_once_and_32_characters_pass(tmp_path: Path) -> None:
    """All weak secrets are reported together (secrets file with its lines); 32 characters pass."""
    secrets = write(
        tmp_path,
        "calendar:\n  feed_token: short\ntickets:\n  jira:\n    webhook_secret: also-short\n",
        name="secrets.yaml",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"COMPLIANCEBOT_SECRETS_FILE": str(secrets)})
    message = str(caught.value)
    assert f"{secrets}:2: calendar.feed_token: too short (5 characters" in message
    assert f"{secrets}:5: tickets.jira.webhook_secret: too short (10 characters" in message
    assert "secrets.token_urlsafe(32)" in message

    strong = {s.variable: "k" * 32 for s in MINIMUMS.values()}
    s = load_settings(None, environ=strong)
    assert s.calendar.feed_token is not None
    assert s.calendar.feed_token.get_secret_value() == "k" * 32


@pytest.mark.parametrize(
    ("text", "key", "found"),
    [
        ("database:\n  url: postgresql://u@h/db?password=X\n", "database.url", "'password'"),
        (
            "database:\n  url: postgresql://u@h/db?sslmode=require&SSLPassword=X\n",
            "database.url",
            "'SSLPassword'",
        ),
        ("database:\n  url: postgresql://u@h/db?PASS%57ORD=X\n", "database.url", "'PASSWORD'"),
        ("database:\n  url: postgresql://u:X@h/db\n", "database.url", "a password after"),
        ("tickets:\n  jira:\n    url: https://bot:X@jira.acme.com\n", "tickets.jira.url", "a pass"),
        ("slack:\n  api_url: https://slack.example/api/?token=X\n", "slack.api_url", "'token'"),
        (
            "aws:\n  targets:\n    - name: p\n      endpoint_url: https://T0KEN@vpce.example\n",
            "aws.targets[0].endpoint_url",
            "a user name that works as a token",
        ),
    ],
)
def test_a_credential_in_any_url_of_the_config_file_is_refused(
    tmp_path: Path, text: str, key: str, found: str
) -> None:
    """A password or token inside a URL in the config file is refused like any other secret."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    line = text.count("\n", 0, text.index("://"))
    assert message.startswith(f"{path}:{line + 1}: {key}")
    assert found in message
    assert "a password does not belong in the config file" in message
    assert "COMPLIANCEBOT_SECRETS_FILE" in message
    assert "=X" not in message
    assert ":X@" not in message


def test_urls_without_credentials_are_accepted(tmp_path: Path) -> None:
    """TLS options that name files (sslkey, passfile) are not secrets: such a URL loads."""
    url = "postgresql://bot@db:5432/compliance?sslmode=verify-full&sslkey=/k.pem&passfile=/p"
    s = load_settings(write(tmp_path, f"database:\n  url: {url}\n"), environ={})
    assert s.database.url == url


def test_a_database_url_from_the_environment_is_masked_everywhere_it_is_shown() -> None:
    """A password in the URL's user info or query (any case) never reaches `config check`."""
    url = "postgresql://bot:hunter1@db/compliance?sslpassword=hunter2&Password=hunter3"
    s = load_settings(
        None,
        environ={
            "COMPLIANCEBOT_DATABASE__URL": url,
            "COMPLIANCEBOT_TICKETS__JIRA__URL": "https://bot:hunter4@jira.acme.com",
        },
    )
    shown = yaml.safe_dump(masked(s))
    assert "hunter" not in shown
    assert "postgresql://bot:***@db/compliance?sslpassword=***&Password=***" in shown
    assert "https://bot:***@jira.acme.com" in shown


def test_settings_read_the_environment_they_are_given_and_leave_the_process_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`load_settings(environ=...)` reads that mapping only; the process's variables are
    neither read nor changed (other threads keep seeing them)."""
    import os

    monkeypatch.setenv("COMPLIANCEBOT_SCHEDULE__RETENTION_DAYS", "11")
    before = dict(os.environ)

    given = load_settings(environ={"COMPLIANCEBOT_SCHEDULE__RETENTION_DAYS": "22"})
    empty = load_settings(environ={})

    assert given.schedule.retention_days == 22
    assert empty.schedule.retention_days == ScheduleSettings().retention_days == 90
    assert dict(os.environ) == before
