"""Prometheus metrics of the long-running process, served at GET /metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from ledger.models import FindingStatus
from ledger.queries import count_by_status


class _FindingsByState(Collector):
    """Findings per lifecycle state, read from the database at scrape time."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "compliancebot_findings", "Findings per lifecycle state.", labels=["status"]
        )
        try:
            with self._sessions() as session:
                counts = count_by_status(session=session)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is down
            return
        for status in FindingStatus:
            family.add_metric([str(status)], counts.get(str(status), 0))
        yield family


class Metrics:
    """The process's metrics, in a registry of its own (tests build as many as they like)."""

    def __init__(self, sessions: sessionmaker[Session] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "compliancebot_slack_requests",
            "Slack requests handled, by kind (command, action, view, event) and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "compliancebot_tracker_webhooks",
            "Tracker webhook deliveries, by tracker name (jira, trello...) and HTTP status.",
            ["tracker", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "compliancebot_slack_handler_seconds",
            "Time from a Slack request's arrival to its HTTP answer.",
            ["kind"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0),
        )
        self.scans = Counter(
            "compliancebot_scans",
            "Scans run by this process, by trigger and final status.",
            ["trigger", "status"],
            registry=self.registry,
        )
        self.outbound_errors = Counter(
            "compliancebot_outbound_errors",
            "Failed calls to outside APIs, by service, method and error.",
            ["service", "method", "error"],
            registry=self.registry,
        )
        self.delivered = Counter(
            "compliancebot_outbox_delivered",
            "Outbox items delivered, by sink and kind.",
            ["sink", "kind"],
            registry=self.registry,
        )
        if sessions is not None:
            self.registry.register(_FindingsByState(sessions))

    def outbox_outcome(self, sink: str, kind: str, outcome: str, error: str | None) -> None:
        """Count one outbox attempt (the worker's `on_outcome`)."""
        if outcome == "delivered":
            self.delivered.labels(sink, kind).inc()
        elif error is not None:
            self.outbound_errors.labels(sink, kind, error).inc()
