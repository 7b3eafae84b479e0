"""Leadership of singleton jobs on SQLite (a file lock) and a real PostgreSQL (an advisory lock).

One replica leads at a time; a leader that releases, or whose process is
killed with SIGKILL, lets another take over at once; and the background loop
skips a singleton job's passes while its replica does not lead.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from pilothouse.reconcile.loop import Job, run_periodically
from pilothouse.store.db import Database
from pilothouse.store.leadership import Leadership


@pytest.fixture
def database(store_url: str) -> Iterator[Database]:
    db = Database(store_url)
    db.migrate()
    yield db
    db.dispose()


def test_one_leader_at_a_time_and_release_hands_over(database: Database) -> None:
    first, second = Leadership(database), Leadership(database)
    try:
        assert first.held()
        assert first.held()  # still, and checked again
        assert not second.held()
        other = Leadership(database, "another-name")  # another name is another lock
        assert other.held()
        other.release()
        first.release()
        assert second.held()
        assert not first.held()
    finally:
        first.release()
        second.release()


def test_a_killed_leader_loses_leadership_at_once(database: Database, store_url: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pilothouse import logs
                from pilothouse.store.db import Database
                from pilothouse.store.leadership import Leadership
                logs.configure("WARNING")
                lead = Leadership(Database({store_url!r}))
                print("leading" if lead.held() else "not leading", flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    ours = Leadership(database)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "leading"
        assert not ours.held()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        deadline = time.monotonic() + 10  # PostgreSQL notices the dead session when its socket closes
        while not ours.held():
            assert time.monotonic() < deadline, "leadership was not taken over after the leader died"
            time.sleep(0.1)
    finally:
        holder.kill()
        ours.release()


async def test_singleton_jobs_run_only_while_leading() -> None:
    ran: list[str] = []
    leading = False

    async def work() -> None:
        ran.append("singleton")

    async def everywhere() -> None:
        ran.append("everywhere")

    async def leads() -> bool:
        return leading

    tasks = [
        asyncio.create_task(run_periodically(Job("one", 0.01, work, singleton=True), leads)),
        asyncio.create_task(run_periodically(Job("all", 0.01, everywhere), leads)),
    ]
    await asyncio.sleep(0.2)
    assert "everywhere" in ran
    assert "singleton" not in ran
    leading = True
    await asyncio.sleep(0.2)
    assert "singleton" in ran
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
