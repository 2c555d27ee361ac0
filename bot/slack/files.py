"""Evidence files from Slack: looked up by ID (files.info), size-checked, and downloaded with the
bot token only from Slack's file host (slack.files_url), never following a redirect off it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.reminders import EvidenceStore
from ledger.services import LedgerError
from ledger.tasks import EvidenceFile, megabytes
from rules.errors import CompliancebotError

FILE_ID = re.compile(r"F[A-Z0-9]{2,31}")
MAX_REDIRECTS = 3


class EvidenceError(CompliancebotError):
    """An evidence file could not be fetched or kept; the message says which and why."""


def too_large(name: str, size: int, max_bytes: int) -> str:
    """Why a file is refused for its size, with both sizes."""
    return f"{name} is {megabytes(size)}; an evidence file may be at most {megabytes(max_bytes)}"


def on_file_host(url: str, files_url: str) -> bool:
    """Is `url` under `files_url`: same scheme, host and port, and path below its path?

    Checked with the parser that sends the request (httpx), so the check and the request cannot
    disagree about the host (user info, backslashes, odd ports).
    """
    try:
        target, base = httpx.URL(url), httpx.URL(files_url)
    except (httpx.InvalidURL, TypeError):
        return False
    return (
        target.scheme == base.scheme
        and target.host == base.host
        and target.port == base.port
        and not target.userinfo
        and target.path.startswith(base.path)
    )


@dataclass(frozen=True)
class SlackFiles:
    """Fetches files users shared in a modal's file_input, by their ID."""

    client: WebClient
    files_url: str
    token: str | None
    timeout: float
    max_bytes: int

    def fetch(self, file_id: str, store: EvidenceStore) -> EvidenceFile:
        """Download a file Slack knows by `file_id` into `store`, or an EvidenceError."""
        if not FILE_ID.fullmatch(file_id):
            raise EvidenceError(f"{file_id[:40]!r} is not a Slack file ID (like F0123ABCD)")
        info = self._info(file_id)
        name = str(info.get("name") or file_id)[:200]
        size = info.get("size")
        if isinstance(size, int) and size > self.max_bytes:
            raise EvidenceError(too_large(name, size, self.max_bytes))
        url = str(info.get("url_private_download") or info.get("url_private") or "")
        if not url:
            raise EvidenceError(f"Slack gave no download URL for {name}")
        if not on_file_host(url, self.files_url):
            # An external file (Google Drive, Dropbox...) or a forged answer: the token stays.
            raise EvidenceError(
                f"{name} is not stored on Slack's file host ({self.files_url}); "
                "upload the file itself to Slack"
            )
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=False) as http:
                return self._download(http, url, name, store)
        except httpx.HTTPError as exc:
            raise EvidenceError(
                f"could not fetch {name} from Slack: {type(exc).__name__}: {exc}"
            ) from exc

    def _info(self, file_id: str) -> dict[str, Any]:
        try:
            answer = self.client.files_info(file=file_id)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else exc
            raise EvidenceError(
                f"Slack would not describe file {file_id} ({error}); "
                "the app needs the files:read scope"
            ) from exc
        info = answer.get("file")
        if not isinstance(info, dict):
            raise EvidenceError(f"Slack's files.info answer for {file_id} has no file")
        return info

    def _download(
        self, http: httpx.Client, url: str, name: str, store: EvidenceStore
    ) -> EvidenceFile:
        # Identity: the bytes kept (and hashed) are the file's, and nothing inflates past the cap
        # inside one chunk.
        headers = {"Accept-Encoding": "identity"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for _ in range(MAX_REDIRECTS + 1):
            with http.stream("GET", url, headers=headers) as response:
                if response.is_redirect:
                    try:
                        target = response.url.join(response.headers.get("location", ""))
                    except httpx.InvalidURL:
                        target = httpx.URL()
                    if not on_file_host(str(target), self.files_url):
                        raise EvidenceError(
                            f"Slack's file host sent {name} to {target.host or 'an invalid URL'}: "
                            f"not followed, the bot token goes only to {self.files_url}"
                        )
                    url = str(target)
                    continue
                kind = response.headers.get("content-type", "")
                if response.status_code != 200 or kind.startswith("text/html"):
                    # Slack answers a sign-in page (200, HTML) when the token may not read it.
                    raise EvidenceError(
                        f"could not fetch {name} from Slack (HTTP {response.status_code}); "
                        "the app needs the files:read scope"
                    )
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > self.max_bytes:
                    raise EvidenceError(too_large(name, int(length), self.max_bytes))
                try:
                    return store(name, _chunks(response))
                except (LedgerError, httpx.HTTPError):
                    raise  # too large, or the download broke: said as such above and below
                except Exception as exc:
                    # Disk or S3: whatever failed, the user hears the file was not kept.
                    raise EvidenceError(
                        f"could not keep {name}: {type(exc).__name__}: {exc}"
                    ) from exc
        raise EvidenceError(f"Slack's file host redirected {name} more than {MAX_REDIRECTS} times")


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    yield from response.iter_bytes(64 * 1024)
