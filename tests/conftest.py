"""Shared test set-up: no real AWS, no proxies, moto worlds on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Never reach a real endpoint, and never send loopback traffic to a proxy.
for _var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "AWS_PROFILE",
             "AWS_ENDPOINT_URL", "COMPLIANCEBOT_CONFIG"):
    os.environ.pop(_var, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",  # noqa: S105 - moto only
    AWS_DEFAULT_REGION="us-east-1", MOTO_EC2_LOAD_DEFAULT_AMIS="false",
    AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent",
)


@pytest.fixture
def moto_world() -> Iterator[None]:
    """A fresh, empty simulated AWS account for the test."""
    from moto import mock_aws

    with mock_aws():
        yield
