"""Where the bot token may go: slack.files_url's rule, and the check a download URL passes."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.settings import Settings
from bot.slack.files import on_file_host

BASE = "https://files.slack.com/"

# URL pieces an attacker combines to make one host look like another.
HOSTS = st.sampled_from(
    [
        "files.slack.com",
        "FILES.SLACK.COM",
        "files.slack.com.evil.test",
        "evil.test",
        "files.slack.com@evil.test",
        "evil.test@files.slack.com",
        "files.slack.com:443",
        "files.slack.com:8443",
        "files.slack.com\\@evil.test",
        "files.slack.com%2eevil.test",
        "127.0.0.1",
        "[::1]",
        "",
    ]
)
SCHEMES = st.sampled_from(["https://", "http://", "HTTPS://", "//", "ftp://", "https:/", ""])
PATHS = st.sampled_from(["/files-pri/T1-F1/a.pdf", "", "/../x", "?u=https://files.slack.com/"])


@given(scheme=SCHEMES, host=HOSTS, path=PATHS, tail=st.text(max_size=20))
@example(scheme="https://", host="files.slack.com", path="/files-pri/x", tail="")
def test_a_url_passes_only_when_the_request_would_go_to_the_file_host(
    scheme: str, host: str, path: str, tail: str
) -> None:
    """However a URL is spelled, the token goes with it only if httpx would send the request
    to files.slack.com over https on the default port."""
    url = scheme + host + path + tail

    if on_file_host(url, BASE):
        sent = httpx.Request("GET", url).url
        assert (sent.scheme, sent.host, sent.port) == ("https", "files.slack.com", None)
        assert not sent.userinfo


def test_the_real_file_host_passes_and_its_look_alikes_do_not() -> None:
    """files.slack.com passes; http, another port, another host, a user part do not."""
    good = "https://files.slack.com/files-pri/T1-F1/download/a.pdf"

    assert on_file_host(good, BASE)
    assert not on_file_host(good.replace("https", "http"), BASE)
    assert not on_file_host("https://files.slack.com:8443/files-pri/x", BASE)
    assert not on_file_host("https://files.slack.com.evil.test/files-pri/x", BASE)
    assert not on_file_host("https://files.slack.com@evil.test/files-pri/x", BASE)
    assert not on_file_host("https://u:p@files.slack.com/files-pri/x", BASE)
    assert not on_file_host("https://slack.com/api/files.info", "https://slack.com/files/")


@pytest.mark.parametrize(
    "url",
    [
        "http://files.slack.com/",
        "ftp://files.slack.com/",
        "files.slack.com",
        "http://10.0.0.5/",
        "https://user:secret@files.example/",
        "https://files.example/?x=1",
    ],
)
def test_a_files_url_that_would_expose_the_token_is_refused(url: str) -> None:
    """slack.files_url must be https (plain http only on a loopback address), without user,
    query or fragment; the error names the key."""
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"slack": {"files_url": url}})

    assert "slack.files_url" in str(caught.value)


def test_files_url_defaults_to_slack_and_takes_a_loopback_test_server() -> None:
    """The default is Slack's file host; http://127.0.0.1:port is taken, with a slash added."""
    assert Settings().slack.files_url == BASE
    local = Settings.model_validate({"slack": {"files_url": "http://127.0.0.1:8080"}})
    assert local.slack.files_url == "http://127.0.0.1:8080/"
