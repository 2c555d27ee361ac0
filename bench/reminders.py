"""One reminder sweep over a big compliance calendar: wall time and queries issued.

    python bench/reminders.py [--tasks 2000] [--per-task 25]
                              [--database postgresql://postgres@127.0.0.1:5432/test]

1. The database (default: a fresh SQLite file; a PostgreSQL URL is wiped: point it at a
   scratch database) is migrated and seeded with T weekly tasks' occurrences, P per task
   (T x P rows): the past ones done except one in ten (overdue), the rest open and upcoming,
   up to the sweep's horizon, as a running calendar has them.
2. `ReminderSweep.run_once` (what `serve` runs every calendar.sweep_interval) runs three
   times: the first records the reminders and escalations due, the next two find them recorded.
3. It prints per sweep the wall time, the SQL statements issued, the occurrences made and the
   reminders and escalations recorded. Targets: under 2 s; statements constant (the same for
   any T and P).

Nothing is asserted: this prints numbers.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from slack_load import reset
from sqlalchemy import event, insert

from bot.logging import configure
from bot.reminders import ReminderSweep
from bot.settings import Settings
from ledger import db
from ledger.models import TaskOccurrence
from ledger.tasks import CalendarClock
from rules.tasks import Evidence, Policy, Task, TaskCatalog

DAYS = ("MO", "TU", "WE", "TH", "FR")


def catalog(n: int) -> TaskCatalog:
    """N weekly tasks on varied weekdays, reminded 7 days, 1 day and on the due day."""
    tasks = TaskCatalog()
    for i in range(n):
        task = Task(
            id=f"task_{i:05d}",
            title=f"Weekly review number {i}",
            policy=list(Policy)[i % len(Policy)],
            description="A weekly review.",
            procedure=None,
            controls={"soc2": ("CC6.2",)},
            recurrence=f"FREQ=WEEKLY;BYDAY={DAYS[i % len(DAYS)]}",
            start=date(2026, 1, 5),
            owner=f"U{i:07d}",
            channel="C0REMIND",
            reminders=(timedelta(days=7), timedelta(days=1), timedelta(0)),
            evidence=Evidence.note,
            source=f"bench/task_{i:05d}.yaml",
        )
        tasks.tasks[task.id] = task
    return tasks


def seed(url: str, tasks: TaskCatalog, per_task: int, now: datetime, horizon: int) -> int:
    """Occurrences as a calendar that has run for a while has them; returns how many."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    clock = CalendarClock("UTC")
    today = now.date()
    rng = random.Random(7)
    rows: list[dict[str, Any]] = []
    future = horizon // 7
    for task in tasks.tasks.values():
        first = today - timedelta(days=7 * (per_task - future))
        for day in task.due_dates(first - timedelta(days=1), today + timedelta(days=horizon)):
            due_at = clock.due_at(day)
            done = due_at < now and rng.random() >= 0.1
            rows.append(
                {
                    "task_id": task.id,
                    "due_on": day,
                    "due_at": due_at,
                    "status": "done" if done else "open",
                    "completed_at": due_at if done else None,
                    "completed_by": "bench" if done else None,
                    "on_time": True if done else None,
                    "evidence_note": "ok" if done else None,
                    "created_at": now,
                }
            )
    with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            conn.execute(insert(TaskOccurrence), rows[start : start + 2000])
    engine.dispose()
    return len(rows)


def main() -> None:
    """Seed, sweep three times, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--per-task", type=int, default=25)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    configure(level="warning")

    scratch = tempfile.TemporaryDirectory()
    url = args.database or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    if url.startswith("postgresql"):
        reset(url)
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    settings = Settings.model_validate(
        {
            "calendar": {
                "enabled": True,
                "horizon_days": 90,
                "escalation": {"to": "C0MANAGERS", "after_days": 2, "every_days": 2},
            }
        }
    )
    tasks = catalog(args.tasks)
    started = time.perf_counter()
    total = seed(url, tasks, args.per_task, now, settings.calendar.horizon_days)
    print(
        f"seeded {total} occurrences of {args.tasks} tasks in "
        f"{time.perf_counter() - started:.1f} s ({url.split('@')[-1]})"
    )

    engine = db.make_engine(url)
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("ANALYZE task_occurrences")
            )
    sessions = db.session_factory(engine)
    sweep = ReminderSweep(
        tasks=tasks, calendar=settings.calendar, sessions=sessions, clock=lambda: now
    )
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]).split(None, 1)[0])

    event.listen(engine, "before_cursor_execute", count)
    for n in (1, 2, 3):
        statements.clear()
        started = time.perf_counter()
        done = sweep.run_once()
        elapsed = time.perf_counter() - started
        kinds = {k: statements.count(k) for k in sorted(set(statements))}
        print(
            f"sweep {n}: {elapsed:.2f} s, {len(statements)} statements {kinds}; "
            f"{done['occurrences']} occurrences made, {done['reminders']} reminders and "
            f"{done['escalations']} escalations recorded"
        )
    engine.dispose()
    scratch.cleanup()


if __name__ == "__main__":
    main()
