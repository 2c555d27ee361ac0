"""What `--output ocsf` tells a SIEM about a finding whose risk was accepted."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from bot.output import ocsf_event
from ledger import services
from ledger.db import transaction
from tests.conftest import FakeClock
from tests.ledger.helpers import obs, only_finding, scan


def test_an_accepted_finding_passes_until_its_acceptance_lapses_then_fails(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    """Accepted for 10 days: OCSF says Pass on day 9 and Fail on day 11 (before any rescan)."""
    scan(sessions, clock, [obs("vol-1")])
    fid = only_finding(sessions).id
    with transaction(sessions) as session:
        services.accept_risk(
            session=session,
            finding_id=fid,
            user="ana",
            reason="compensating control",
            until=clock() + timedelta(days=10),
            now=clock(),
        )
    finding = only_finding(sessions)

    during = ocsf_event(finding, None, product_version="t", now=clock() + timedelta(days=9))
    after = ocsf_event(finding, None, product_version="t", now=clock() + timedelta(days=11))

    assert (during["compliance"]["status"], during["compliance"]["status_id"]) == ("Pass", 1)
    assert (after["compliance"]["status"], after["compliance"]["status_id"]) == ("Fail", 3)
