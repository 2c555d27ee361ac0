"""Which Slack Web API calls the SDK may repeat by itself after a failure: never one that creates.

A connection reset after Slack accepted `chat.postMessage` looks like any other connection
error; repeated blindly, the post appears twice (once seen three times). Such calls are retried
by their owner instead: the outbox looks a lost post up by its metadata before posting again
(`bot.slack.delivery`), and a listener shows the failure to the person who clicked.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

# A list of what may be repeated, not of what may not: a method added later without thought
# gets no blind retry, which costs an error at worst, never a duplicate.
# Reads (the last part of the method name) ...
_READ_VERBS = frozenset(
    {"info", "list", "history", "replies", "test", "lookupByEmail", "getPermalink"}
)
# ... and writes that set a state, so doing them twice is doing them once.
_IDEMPOTENT = frozenset(
    {
        "chat.update",
        "views.update",
        "views.publish",
        "conversations.open",  # answers the one existing DM
        "apps.connections.open",  # a fresh Socket Mode URL; the unused one expires
    }
)


def method_of(url: str) -> str:
    """The Web API method a request URL calls (`.../api/chat.update?x` -> `chat.update`)."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def repeatable(method: str) -> bool:
    """May a call of `method` be sent again when its answer was lost, without a second effect?"""
    return method in _IDEMPOTENT or method.rsplit(".", 1)[-1] in _READ_VERBS


class OnlyRepeatable(RetryHandler):
    """`inner`, for repeatable calls only; any other call fails at once, to its owner."""

    def __init__(self, inner: RetryHandler) -> None:
        super().__init__(inner.max_retry_count, inner.interval_calculator)
        self.inner = inner

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return repeatable(method_of(request.url)) and self.inner.can_retry(
            state=state, request=request, response=response, error=error
        )

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        self.inner.prepare_for_next_attempt(
            state=state, request=request, response=response, error=error
        )


def retry_handlers(max_retries: int) -> list[RetryHandler]:
    """Connection errors, 429s (waiting Retry-After) and 5xx, retried for repeatable calls."""
    return [
        OnlyRepeatable(handler)
        for handler in (
            ConnectionErrorRetryHandler(max_retry_count=max_retries),
            RateLimitErrorRetryHandler(max_retry_count=max_retries),
            ServerErrorRetryHandler(max_retry_count=max_retries),
        )
    ]
