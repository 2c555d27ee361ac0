"""Credentials in URLs: whatever a password holds, a shown URL never carries it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import URL, make_url

from rules.redact import mask_url, scrub, url_credentials

secrets = st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)


@given(password=secrets, sslpassword=secrets, user=st.from_regex(r"[a-z@.:]{1,8}", fullmatch=True))
def test_sqlalchemy_finds_no_password_left_in_a_masked_database_url(
    password: str, sslpassword: str, user: str
) -> None:
    """However SQLAlchemy itself encodes a URL, the masked one parses back with only ***."""
    url = URL.create(
        "postgresql+psycopg",
        username=user,
        password=password,
        host="db.internal",
        port=5432,
        database="compliance",
        query={"sslmode": "require", "sslpassword": sslpassword, "PassWord": password},
    ).render_as_string(hide_password=False)

    shown = make_url(mask_url(url))

    assert shown.password == "***"
    assert shown.query["sslpassword"] == "***"
    assert shown.query["PassWord"] == "***"
    assert shown.query["sslmode"] == "require"
    assert (shown.host, shown.database) == ("db.internal", "compliance")
    assert url_credentials(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u@h/db?password=X", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?pass%77ord=X&sslmode=require",
            "postgresql://u@h/db?pass%77ord=***&sslmode=require",
        ),
        ("https://T0KEN@api.example/1", "https://***@api.example/1"),
        (
            "https://api.example/1?key=K&token=T&board=b",
            "https://api.example/1?key=***&token=***&board=b",
        ),
        (
            "https://bucket.s3.amazonaws.com/k?X-Amz-Credential=A&X-Amz-Signature=S",
            "https://bucket.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        ("sqlite:///compliancebot.db", "sqlite:///compliancebot.db"),
        ("postgresql://bot@db:5432/c?sslkey=/k.pem", "postgresql://bot@db:5432/c?sslkey=/k.pem"),
        ("not a url: password=X", "not a url: password=X"),
    ],
)
def test_every_kind_of_credential_is_masked_and_nothing_else(url: str, shown: str) -> None:
    """User info, password-ish and token-ish parameters (any case, %-encoded) become ***."""
    assert mask_url(url) == shown
    assert bool(url_credentials(url)) == (url != shown)


def test_a_driver_message_quoting_the_password_is_scrubbed() -> None:
    """An error text that repeats the password (raw or %-decoded) shows *** instead."""
    url = "postgresql://bot:p%40ss@db/c?sslpassword=k3y"
    text = f"connection to {url} failed: bad password 'p@ss', key k3y"
    assert scrub(text, url) == (
        "connection to postgresql://bot:***@db/c?sslpassword=*** failed: bad password '***', "
        "key ***"
    )
