"""The durable-operation runner over a real store (SQLite and PostgreSQL) and real leases.

The driver here is plain Python that records what it is asked to do, so the
runner's own rules are what is tested: steps in order and journaled, pause and
abort between steps, a failing step, an interrupted step run again, one
operation per cluster, and the cluster lease held while it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from cryptography.fernet import Fernet

from pilothouse import errors
from pilothouse.fleet import operations
from pilothouse.fleet.leases import Leases
from pilothouse.store import clusters, secrets
from pilothouse.store.db import Database
from pilothouse.store.operations import OperationRecord, OperationStore
from pilothouse.vocabulary import OperationPhase, OperationRequest

STEPS = [("one", "step one"), ("two", "step two"), ("three", "step three")]


@dataclass
class RecordingDriver:
    store: OperationStore
    seen: list[str] = field(default_factory=list)
    fail_at: str | None = None
    block_at: str | None = None
    request_at: tuple[str, OperationRequest] | None = None
    aborted: list[str] = field(default_factory=list)

    async def run_step(
        self, record: OperationRecord, step: operations.Step, report: operations.Report
    ) -> operations.StepOutcome:
        self.seen.append(step.name)
        # The lease is held while a step runs: nobody else may work on the cluster.
        assert self.store.get(record.id).phase is OperationPhase.RUNNING
        if self.request_at is not None and self.request_at[0] == step.name:
            self.store.request(record.id, self.request_at[1])
        if step.name == self.block_at:
            raise operations.StepBlocked(f"{step.name} would break a budget", hint="wait")
        if step.name == self.fail_at:
            raise errors.ProcessFailed(f"{step.name} broke", hint="fix it")
        return operations.StepOutcome.ACTED

    async def abort(self, record: OperationRecord) -> str:
        self.aborted.append(record.id)
        return "put back"


@pytest.fixture
def setup(store_url: str) -> Iterator[tuple[OperationStore, Leases]]:
    database = Database(store_url)
    database.migrate()
    cluster_store = clusters.ClusterStore(database, secrets.SecretBox(Fernet.generate_key()))
    cluster_store.add(name="alpha", provider="local", desired_state="running", phase="Running")
    yield OperationStore(database), Leases(cluster_store)
    database.dispose()


def _start(store: OperationStore) -> OperationRecord:
    return store.create("test", "alpha", {"x": 1}, steps=operations.planned(STEPS), created_by="tester")


async def test_steps_run_in_order_and_are_journaled(setup: tuple[OperationStore, Leases]) -> None:
    store, leases = setup
    driver = RecordingDriver(store)
    record = _start(store)
    with pytest.raises(errors.Conflict, match="already has an unfinished test operation"):
        _start(store)

    done = await operations.OperationRunner(store, leases, {"test": driver}).run(record.id)

    assert done.phase is OperationPhase.SUCCEEDED
    assert driver.seen == ["one", "two", "three"]
    journal = operations.journal(done)
    assert [(s.state, s.attempts, s.acted) for s in journal] == [(operations.StepState.DONE, 1, 1)] * 3
    assert done.started_at is not None
    assert done.finished_at is not None
    assert leases.store.get("alpha").lease_holder is None  # released
    _start(store)  # a finished operation no longer blocks a new one


async def test_pause_then_resume_continues_where_it_stopped(setup: tuple[OperationStore, Leases]) -> None:
    store, leases = setup
    driver = RecordingDriver(store, request_at=("one", OperationRequest.PAUSE))
    runner = operations.OperationRunner(store, leases, {"test": driver})
    record = _start(store)

    paused = await runner.run(record.id)
    assert paused.phase is OperationPhase.PAUSED
    assert paused.requested is None
    assert driver.seen == ["one"]
    assert await runner.run_unfinished() == []  # paused operations are left alone

    store.resume(record.id)
    driver.request_at = None
    done = await runner.run(record.id)
    assert done.phase is OperationPhase.SUCCEEDED
    assert driver.seen == ["one", "two", "three"]


async def test_abort_between_steps_and_of_a_paused_operation(setup: tuple[OperationStore, Leases]) -> None:
    store, leases = setup
    driver = RecordingDriver(store, request_at=("two", OperationRequest.ABORT))
    runner = operations.OperationRunner(store, leases, {"test": driver})
    record = _start(store)

    aborted = await runner.run(record.id)
    assert aborted.phase is OperationPhase.ABORTED
    assert "put back" in aborted.message
    assert driver.seen == ["one", "two"]
    assert driver.aborted == [record.id]
    with pytest.raises(errors.Conflict, match="already Aborted"):
        store.request(record.id, OperationRequest.PAUSE)

    second = _start(store)
    store.save_progress(second.id, phase=OperationPhase.PAUSED, steps=second.steps, message="paused")
    assert store.request(second.id, OperationRequest.ABORT).phase is OperationPhase.PENDING
    assert (await runner.run(second.id)).phase is OperationPhase.ABORTED


async def test_a_failing_step_fails_the_operation_with_its_message(
    setup: tuple[OperationStore, Leases],
) -> None:
    store, leases = setup
    driver = RecordingDriver(store, fail_at="two")
    failed = await operations.OperationRunner(store, leases, {"test": driver}).run(_start(store).id)
    assert failed.phase is OperationPhase.FAILED
    assert failed.message == "step two failed: two broke"
    assert [s.state for s in operations.journal(failed)] == [
        operations.StepState.DONE,
        operations.StepState.RUNNING,
        operations.StepState.PENDING,
    ]


async def test_an_interrupted_step_runs_again_and_unknown_kinds_are_refused(
    setup: tuple[OperationStore, Leases],
) -> None:
    store, leases = setup
    record = _start(store)
    journal = operations.journal(record)
    journal[0] = operations.Step("one", "step one", operations.StepState.RUNNING, attempts=1)
    store.save_progress(
        record.id, phase=OperationPhase.RUNNING, steps=[s.to_dict() for s in journal], message=""
    )
    driver = RecordingDriver(store)

    done = await operations.OperationRunner(store, leases, {"test": driver}).run(record.id)
    assert driver.seen == ["one", "two", "three"]
    assert operations.journal(done)[0].attempts == 2

    other = store.create("mystery", "alpha", {}, steps=operations.planned(STEPS))
    with pytest.raises(errors.InvalidInput, match="kind 'mystery'"):
        await operations.OperationRunner(store, leases, {"test": driver}).run(other.id)


async def test_a_blocked_step_pauses_and_runs_again_on_resume(setup: tuple[OperationStore, Leases]) -> None:
    store, leases = setup
    driver = RecordingDriver(store, block_at="two")
    runner = operations.OperationRunner(store, leases, {"test": driver})
    record = _start(store)

    paused = await runner.run(record.id)
    assert paused.phase is OperationPhase.PAUSED
    assert paused.message == "paused at step two: two would break a budget"
    assert operations.journal(paused)[1].state is operations.StepState.PENDING

    store.resume(record.id)
    driver.block_at = None
    done = await runner.run(record.id)
    assert done.phase is OperationPhase.SUCCEEDED
    assert driver.seen == ["one", "two", "two", "three"]
