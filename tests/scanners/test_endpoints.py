"""Custom endpoints: S3 Control reaches a proxy or emulator given as an IP address."""

from __future__ import annotations

import contextlib
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from scanners.aws.collector import _unprefix_ip_host


@pytest.mark.parametrize(
    ("endpoint", "expected_host"),
    [
        ("http://127.0.0.1:4566", "127.0.0.1:4566"),
        ("http://localhost:4566", "localhost:4566"),
        ("https://s3-control.proxy.example.com", "123456789012.s3-control.proxy.example.com"),
    ],
)
def test_s3_control_account_prefix_only_dropped_for_ip_endpoints(
    endpoint: str, expected_host: str
) -> None:
    """An IP endpoint gets no account-id sub-domain (it cannot have one); a DNS name keeps it."""
    client = boto3.client(
        "s3control",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    client.meta.events.register("before-sign.s3-control", _unprefix_ip_host)
    sent: list[str] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.url)
        return AWSResponse(request.url, 200, {}, None)

    client.meta.events.register("before-send", capture)
    # The fake empty answer may not parse; the URL it went to is the point.
    with contextlib.suppress(Exception):
        client.get_public_access_block(AccountId="123456789012")

    assert sent[0].split("/")[2] == expected_host
