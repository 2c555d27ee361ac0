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
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
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
from bot.archive import LocalStore, S3Store
from bot.settings import ArchiveS3Settings

url, root, crash_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = 0

def point():
    global seen
    seen += 1
    if seen == crash_at:
        os.kill(os.getpid(), signal.SIGKILL)

Base = S3Store if root.startswith("http://") else LocalStore

class Store(Base):
    def put(self, name, body, size):
        super().put(name, body, size)
        point()
    def get(self, name):
        for i, chunk in enumerate(super().get(name)):
            if i == 0:
                point()
            yield chunk

if Base is S3Store:
    store = Store(ArchiveS3Settings(bucket="archive", prefix="cb"), root)
else:
    store = Store(root)

real = archive._commit_object
def commit(session, kind, built, *args, **kwargs):
    point()
    real(session, kind, built, *args, **kwargs)
    session.flush()
    point()
archive._commit_object = commit

sessions = db.session_factory(db.make_engine(url))
now = datetime(2026, 12, 1, 9, tzinfo=UTC)
archive.run(sessions=sessions, store=store, days={"finding_events": 2, "audit": 2},
            clock=lambda: now)
print("finished")
"""


@pytest.fixture(params=["directory", "s3"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where the child archives: a directory, or a moto S3 server on 127.0.0.1."""
    if request.param == "directory":
        yield str(tmp_path / "archive")
        return
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="archive")
    try:
        yield url
    finally:
        server.stop()


def archived_ids(destination: str, tmp_path: Path) -> list[int]:
    """Every finding event id in every archived object, as many times as it is archived."""
    bodies: list[bytes] = []
    if destination.startswith("http://"):
        s3 = boto3.client("s3", endpoint_url=destination, region_name="us-east-1")
        listing = s3.list_objects_v2(Bucket="archive", Prefix="cb/finding_events/")
        for entry in listing.get("Contents", []):
            bodies.append(s3.get_object(Bucket="archive", Key=entry["Key"])["Body"].read())
    else:
        bodies = [p.read_bytes() for p in Path(destination, "finding_events").rglob("*.gz")]
    return [
        json.loads(line)["id"]
        for body in bodies
        for line in gzip.decompress(body).split(b"\n")
        if line
    ]


def test_kill_minus_nine_at_random_points_loses_and_doubles_nothing(
    tmp_path: Path, destination: str
) -> None:
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
    root = destination
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
    archived = archived_ids(destination, tmp_path)
    assert len(archived) == len(set(archived)), "a row archived twice"
    assert set(archived) | kept == before, "a row lost"
    assert not set(archived) & kept, "a row both archived and kept"
    assert report.intact, report.summary()
    assert finished < ROUNDS  # the kills did land somewhere
