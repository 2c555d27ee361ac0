"""Load on the Slack endpoint: signed slash commands and button clicks against a big ledger.

    python bench/slack_load.py [--findings 100000] [--clients 20] [--seconds 30]
                               [--database postgresql://postgres@127.0.0.1:5432/test]

1. The database is wiped (its `public` schema is dropped: point it at a scratch database),
   migrated, and seeded with N findings through the ledger's own bulk upsert.
2. A fake Slack Web API (tests/fakes/slack.py) starts on 127.0.0.1 in a child process (its
   work is Slack's, not the bot's), and the bot's ASGI app (the same `build_app` +
   `build_asgi` as `compliancebot serve`) runs under uvicorn in this process.
3. A separate process runs C client threads for S seconds, each sending signed requests as
   Slack does (form-encoded slash commands, `payload` JSON button clicks): status, findings
   pages with filters, show, help, Claim and Next-page clicks.
4. It prints requests served, throughput, p50/p95/p99/max time to the HTTP response, and
   errors (non-200 answers or failed connections). Target: p99 under 300 ms, zero errors.

Nothing is asserted: this prints numbers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_var, None)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402
from slack_sdk.signature import SignatureVerifier  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bot.scanning import ScanOutcome  # noqa: E402
from bot.server import build_asgi, build_services  # noqa: E402
from bot.settings import Settings, SlackSettings  # noqa: E402
from bot.slack.app import build_app  # noqa: E402
from bot.slack.ids import ActionId, FindingsQuery  # noqa: E402
from ledger import db, services  # noqa: E402
from ledger.services import Observation  # noqa: E402
from ledger.verification import Recheck  # noqa: E402
from rules.catalog import load_catalog  # noqa: E402

SECRET = "bench-signing-secret"  # noqa: S105 - signs the fake requests
CHANNEL = "C0BENCH"
USERS = [f"UUSER{i:03d}" for i in range(50)]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reset(url: str) -> None:
    """Drop and recreate the public schema of the scratch database."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def seed(url: str, count: int) -> tuple[float, int]:
    """N failing findings over the catalog's rules, through the ledger's bulk upsert."""
    started = time.perf_counter()
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    catalog = load_catalog()
    rules = list(catalog.rules.values())
    rng = random.Random(7)
    now = datetime.now(UTC)
    observations = []
    for i in range(count):
        rule = rules[i % len(rules)]
        observations.append(
            Observation(
                rule_id=rule.id,
                account=f"{100000000000 + rng.randrange(20)}",
                region=rng.choice(["us-east-1", "eu-west-1", "ap-south-1"]),
                resource_type=rule.resource_type,
                resource_id=f"res-{i:07d}",
                resource_name=None,
                title=rule.title,
                severity=str(rule.severity),
                verdict="fail",
            )
        )
    with db.transaction(sessions) as session:
        scan = services.start_scan(session=session, now=now, trigger="bench", scope={})
        counts = services.upsert_from_scan(
            session=session,
            scan=scan,
            observations=observations,
            covered=set(),
            rule_ids={r.id for r in rules},
            accounts={o.account for o in observations},
            now=now,
        )
        services.finish_scan(
            session=session,
            scan=scan,
            now=now,
            counts=counts,
            api_calls={},
            resources=count,
            errors=[],
        )
    if engine.dialect.name == "postgresql":
        # What autovacuum does soon after a big scan: the planner needs the new statistics.
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE findings"))
    engine.dispose()
    return time.perf_counter() - started, counts.new


def start_bot(url: str, slack_base: str) -> tuple[uvicorn.Server, threading.Thread, str]:
    """The bot's ASGI app under uvicorn on a free port, as `compliancebot serve` builds it."""
    settings = Settings(
        slack=SlackSettings(
            enabled=True,
            api_url=slack_base,
            bot_token="xoxb-test",  # noqa: S106 - the fake's token
            signing_secret=SECRET,
            channel=CHANNEL,
            max_retries=0,
        )
    )
    engine = db.make_engine(url)
    bot = build_services(settings=settings, catalog=load_catalog(), engine=engine)

    def no_scan(account: str | None, trigger: str) -> ScanOutcome:
        raise RuntimeError("the load test does not scan")

    def no_recheck(rule_id: str, account: str, region: str, resource_id: str) -> Recheck:
        return Recheck("unknown", "not in the load test", 0)

    bot.scan, bot.recheck = no_scan, no_recheck
    executor = ThreadPoolExecutor(
        max_workers=settings.server.handler_threads, thread_name_prefix="slack-handler"
    )
    app = build_app(bot, executor=executor)
    asgi = build_asgi(app=app, services=bot, engine=engine, executor=executor)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _request(rng: random.Random, max_id: int, response_url: str) -> tuple[str, str]:
    """One Slack request body, chosen from the mix users send, and its kind."""
    user = rng.choice(USERS)
    roll = rng.random()
    if roll < 0.6:
        text_ = rng.choice(
            [
                "status",
                "findings",
                "findings critical",
                "findings high hipaa",
                "findings mine",
                f"show {rng.randint(1, max_id)}",
                "help",
            ]
        )
        body = urlencode(
            {
                "command": "/compliance",
                "text": text_,
                "user_id": user,
                "channel_id": CHANNEL,
                "team_id": "T0001",
                "response_url": response_url,
                "trigger_id": "t",
            }
        )
        return "command", body
    if roll < 0.8:
        action, value = str(ActionId.claim), str(rng.randint(1, max_id))
    else:
        page = FindingsQuery(severities=("high",), page=rng.randint(1, 50))
        action, value = str(ActionId.page), page.dump()
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T0001"},
        "trigger_id": "t",
        "response_url": response_url,
        "container": {"type": "message", "is_ephemeral": True},
        "actions": [{"action_id": action, "value": value, "type": "button", "block_id": "b"}],
    }
    return "click", urlencode({"payload": json.dumps(payload)})


def load(url: str, clients: int, seconds: float, max_id: int, response_url: str, out: Any) -> None:
    """Child process: `clients` threads sending signed requests until the time is up."""
    verifier = SignatureVerifier(SECRET)
    stop_at = time.monotonic() + seconds
    results: list[tuple[str, float, int]] = []
    lock = threading.Lock()

    host, port = urlsplit(url).hostname, urlsplit(url).port

    def client(seed_: int) -> None:
        # http.client rather than httpx: the load generator should take as little of the two
        # cores from the server under test as it can.
        rng = random.Random(seed_)
        mine = []
        conn = http.client.HTTPConnection(host or "127.0.0.1", port, timeout=10)
        while time.monotonic() < stop_at:
            kind, body = _request(rng, max_id, response_url)
            ts = str(int(time.time()))
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": verifier.generate_signature(timestamp=ts, body=body) or "",
            }
            started = time.perf_counter()
            try:
                conn.request("POST", "/slack/events", body=body, headers=headers)
                answer = conn.getresponse()
                answer.read()
                status = answer.status
            except (OSError, http.client.HTTPException):
                status = -1
                conn.close()
                conn = http.client.HTTPConnection(host or "127.0.0.1", port, timeout=10)
            mine.append((kind, time.perf_counter() - started, status))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(results)


def fake_slack(urls: Any, stop: Any) -> None:
    """Child process: the fake Slack Web API, so that its work is not the bot's."""
    from tests.fakes.slack import FakeSlack

    with FakeSlack() as fake:
        urls.put((fake.base_url, fake.response_url()))
        stop.wait()


def pct(values: list[float], q: float) -> float:
    """The q-th percentile, in milliseconds."""
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] * 1000


def main(argv: list[str] | None = None) -> int:
    """Seed, serve, load, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--findings", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--database",
        default=os.environ.get(
            "COMPLIANCEBOT_BENCH_DATABASE", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a scratch database: its public schema is dropped",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the findings a previous run seeded (same --findings) instead of reseeding",
    )
    args = parser.parse_args(argv)

    if args.reuse:
        seeded = args.findings
    else:
        reset(args.database)
        seeded_s, seeded = seed(args.database, args.findings)
        print(f"seeded {seeded} findings in {seeded_s:.1f} s", file=sys.stderr)
    spawn = multiprocessing.get_context("spawn")
    urls: Any = spawn.Queue()
    stop_slack = spawn.Event()
    slack = spawn.Process(target=fake_slack, args=(urls, stop_slack))
    slack.start()
    base_url, response_url = urls.get(timeout=60)
    server, thread, url = start_bot(args.database, base_url)
    try:
        queue: Any = multiprocessing.get_context("spawn").Queue()
        proc = multiprocessing.get_context("spawn").Process(
            target=load,
            args=(url, args.clients, args.seconds, seeded, response_url, queue),
        )
        proc.start()
        results = queue.get(timeout=args.seconds + 120)
        proc.join(60)
    finally:
        server.should_exit = True
        thread.join(30)
        stop_slack.set()
        slack.join(30)
    latencies = [r[1] for r in results if r[2] == 200]
    errors = [r for r in results if r[2] != 200]
    by_kind: dict[str, list[float]] = {}
    for kind, seconds, status in results:
        if status == 200:
            by_kind.setdefault(kind, []).append(seconds)
    print(f"findings in the ledger: {seeded} ({args.database.split('://')[0]})")
    print(f"clients:                {args.clients} for {args.seconds:.0f} s")
    print(f"requests served:        {len(latencies)} ({len(latencies) / args.seconds:.1f}/s)")
    print(
        f"time to HTTP response:  p50 {pct(latencies, 50):.1f} ms, p95 {pct(latencies, 95):.1f}"
        f" ms, p99 {pct(latencies, 99):.1f} ms, max {max(latencies, default=0) * 1000:.1f} ms"
    )
    for kind, values in sorted(by_kind.items()):
        print(
            f"  {kind:8s} {len(values):6d} requests, p50 {pct(values, 50):.1f} ms, "
            f"p99 {pct(values, 99):.1f} ms"
        )
    statuses: dict[int, int] = {}
    for _, _, status in errors:
        statuses[status] = statuses.get(status, 0) + 1
    print(f"errors:                 {len(errors)} {statuses if statuses else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
