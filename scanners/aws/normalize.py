"""Reshape awkward API answers (CSV reports, polymorphic policy JSON) into plain data."""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import unquote

_REPORT_NONE = {"N/A", "not_supported", "no_information", ""}


def _report_value(value: str) -> Any:
    if value in _REPORT_NONE:
        return None
    if value in ("true", "false"):
        return value == "true"
    return value


def parse_credential_report(content: bytes | str) -> dict[str, dict[str, Any]]:
    """The IAM credential report CSV as {user name: row}, with booleans and None for N/A."""
    text = content.decode() if isinstance(content, bytes) else content
    rows: dict[str, dict[str, Any]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        entry = {k: _report_value(v) for k, v in row.items() if k is not None}
        entry["access_keys"] = [
            {
                "active": entry.get(f"access_key_{n}_active") is True,
                "last_rotated": entry.get(f"access_key_{n}_last_rotated"),
                "last_used_date": entry.get(f"access_key_{n}_last_used_date"),
            }
            for n in (1, 2)
            if entry.get(f"access_key_{n}_active") is True
        ]
        rows[row["user"]] = entry
    return rows


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def normalize_policy(document: Any) -> dict[str, Any] | None:
    """An IAM or bucket policy with Statement, Action, Resource and Principal always lists.

    Policies arrive as a dict, a JSON string or a URL-encoded JSON string; `Principal: "*"`
    becomes `{"AWS": ["*"]}` so one expression covers both spellings.
    """
    if document is None:
        return None
    if isinstance(document, str):
        text = document if document.lstrip().startswith("{") else unquote(document)
        document = json.loads(text)
    statements = []
    for raw in _as_list(document.get("Statement")):
        stmt = dict(raw)
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in stmt:
                stmt[key] = _as_list(stmt[key])
        principal = stmt.get("Principal")
        if principal == "*":
            stmt["Principal"] = {"AWS": ["*"]}
        elif isinstance(principal, dict):
            stmt["Principal"] = {k: _as_list(v) for k, v in principal.items()}
        statements.append(stmt)
    return {**document, "Statement": statements}


def bucket_region(location: str | None) -> str:
    """GetBucketLocation's answer as a region name (None means us-east-1, EU is eu-west-1)."""
    if not location:
        return "us-east-1"
    return "eu-west-1" if location == "EU" else location
