"""An archive run killed with SIGKILL at random points, 20 times: nothing lost, nothing twice.

Each round is a child process that archives with a store that kills its own process at the
k-th of its crash points (k drawn by a seeded generator): after an object is written, midway
through reading it back, before the rows are deleted, after they are deleted but before the
commit. A last, undisturbed run then finishes. Every finding event must be in the database or
in exactly one archived object, and the audit trail that is left must verify.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from ledger import audit as chain
from ledger import db
from ledger.models import FindingEvent
from tests.conftest import FakeClock
from tests.ledger.helpers import obs, scan

ROUNDS = 20
CHILD = r"""
import os, signal, sys
from datetime import UTC, datetime
from ledger import archive, db
from bot.archive import LocalStore

url, root, crash_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = 0

def point():
    global seen
    seen += 1
    if seen == crash_at:
        os.kill(os.getpid(), signal.SIGKILL)

class Store(LocalStore):
    def put(self, name, body, size):
        super().put(name, body, size)
        point()
    def get(self, name):
        for i, chunk in enumerate(super().get(name)):
            if i == 0:
                point()
            yield chunk

real = archive._commit_object
def commit(session, kind, built, *args, **kwargs):
    point()
    real(session, kind, built, *args, **kwargs)
    session.flush()
    point()
archive._commit_object = commit

sessions = db.session_factory(db.make_engine(url))
now = datetime(2026, 12, 1, 9, tzinfo=UTC)
archive.run(sessions=sessions, store=Store(root), days={"finding_events": 2, "audit": 2},
            clock=lambda: now)
print("finished")
"""


def test_kill_minus_nine_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    clock = FakeClock()
    for day in range(28):  # 28 days of events, a few per day
        for resource in ("vol-1", "vol-2", "vol-3"):
            verdict = "fail" if (day + len(resource)) % 2 == 0 else "pass"
            scan(sessions, clock, [obs(resource, verdict=verdict)])
        clock.advance(days=1)
    with sessions() as session:
        before = set(session.scalars(select(FindingEvent.id)))
    root = tmp_path / "archive"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    rng = random.Random(20261203)
    finished = 0
    for _ in range(ROUNDS):
        crash_at = rng.randint(1, 60)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, url, str(root), str(crash_at)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert child.returncode in (0, -9), child.stderr[-2000:]
        finished += child.returncode == 0
    last = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(root), "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert last.returncode == 0, last.stderr[-2000:]

    with sessions() as session:
        kept = set(session.scalars(select(FindingEvent.id)))
        report = chain.verify(session=session, key=None)
    archived: list[int] = []
    for path in (root / "finding_events").rglob("*.gz"):
        archived += [
            json.loads(line)["id"]
            for line in gzip.decompress(path.read_bytes()).split(b"\n")
            if line
        ]
    assert len(archived) == len(set(archived)), "a row archived twice"
    assert set(archived) | kept == before, "a row lost"
    assert not set(archived) & kept, "a row both archived and kept"
    assert report.intact, report.summary()
    assert finished < ROUNDS  # the kills did land somewhere
