"""Durable operations: long work on a cluster that survives ``kill -9`` of Pilothouse.

An operation (an upgrade, a node rollout, a backup, a restore) is a record in
the store (``store.operations``) with a spec and a **journal**: the ordered
steps its driver planned when it was created. ``OperationRunner.run`` works
through the journal while holding the cluster's lease (``fleet.leases``), so
one process drives one cluster at a time, and writes the journal before and
after every step:

- a step is marked RUNNING (``attempts`` + 1) before it starts and DONE after;
- a step found RUNNING when an operation is picked up again was interrupted:
  it runs again. Drivers write every step to **observe before acting** (is
  this API server already on the target version? is this node already
  drained?) and return ``StepOutcome.ALREADY_DONE`` when the world already
  shows the effect, so nothing that took effect is done twice; ``acted``
  counts the runs that changed something, and tests assert it is at most 1;
- between steps the runner reads the operator's request: *pause* leaves the
  operation PAUSED (``resume`` makes it PENDING again), *abort* lets the
  driver put the cluster back into a serving state and ends it ABORTED;
- a step that raises a ``PilothouseError`` ends the operation FAILED with the
  error in its message; the cluster is left as the last DONE step left it;
- a step that raises ``StepBlocked`` (it cannot go on without breaking a
  safety rule: a PodDisruptionBudget allows nothing, a health gate is red,
  the operator asked to pause while it waited) is left PENDING and the
  operation PAUSED with the reason; ``resume`` runs the step again, and an
  abort requested meanwhile is carried out at once.

``run_unfinished`` is the level-triggered entry point the background loop
calls: every PENDING or RUNNING operation whose cluster is not busy gets a
task. After a crash, a RUNNING operation's lease belongs to a dead process
and is taken over at once (``Leases``), so the next pass finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import structlog

from pilothouse import errors
from pilothouse.fleet.leases import Leases
from pilothouse.progress import ProgressEvent, ProgressSink, discard
from pilothouse.store.operations import OperationRecord, OperationStore
from pilothouse.vocabulary import OperationPhase, OperationRequest

log = structlog.get_logger(__name__)


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


class StepOutcome(StrEnum):
    ACTED = "acted"  # the step changed the cluster
    ALREADY_DONE = "already-done"  # the cluster already showed the step's effect
    CHECKED = "checked"  # a check that changes nothing passed


@dataclass(frozen=True)
class Step:
    """One entry of an operation's journal."""

    name: str
    title: str
    state: StepState = StepState.PENDING
    attempts: int = 0
    acted: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            name=str(data["name"]),
            title=str(data.get("title", data["name"])),
            state=StepState(data.get("state", StepState.PENDING)),
            attempts=int(data.get("attempts", 0)),
            acted=int(data.get("acted", 0)),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            detail=str(data.get("detail", "")),
        )


def journal(record: OperationRecord) -> list[Step]:
    return [Step.from_dict(s) for s in record.steps]


def planned(steps: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """A fresh journal from (name, title) pairs, for ``OperationStore.create``."""
    names = [name for name, _ in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"step names must be unique: {names}")
    return [Step(name, title).to_dict() for name, title in steps]


Report = Callable[[str], None]


class StepBlocked(errors.Conflict):
    """A step cannot go on safely now; the operation pauses (see the module docstring)."""

    code = "step_blocked"


class Driver(Protocol):
    """Performs the steps of one kind of operation."""

    async def run_step(self, record: OperationRecord, step: Step, report: Report) -> StepOutcome:
        """Bring about ``step``; observe first and return ALREADY_DONE when nothing is left to do."""
        ...

    async def abort(self, record: OperationRecord) -> str:
        """Leave the cluster serving after an abort between steps; return what was done."""
        ...


def _now() -> str:
    return datetime.now(UTC).isoformat()


class OperationRunner:
    """Runs operations of the kinds it has drivers for; see the module docstring."""

    def __init__(self, store: OperationStore, leases: Leases, drivers: Mapping[str, Driver]) -> None:
        self.store = store
        self.leases = leases
        self.drivers = dict(drivers)
        self._tasks: dict[str, asyncio.Task[OperationRecord | None]] = {}

    async def run(self, operation_id: str, *, progress: ProgressSink = discard) -> OperationRecord:
        """Drive one operation to its end (or to a pause); ``Conflict`` if its cluster is busy."""
        record = await asyncio.to_thread(self.store.get, operation_id)
        if record.phase.finished or record.phase is OperationPhase.PAUSED:
            return record
        driver = self.drivers.get(record.kind)
        if driver is None:
            raise errors.InvalidInput(
                f"operation {record.id} is of kind {record.kind!r}, which this Pilothouse cannot run",
                hint="upgrade Pilothouse, or abort the operation",
            )
        structlog.contextvars.bind_contextvars(operation=record.id, cluster=record.cluster)
        async with self.leases.hold(record.cluster):
            return await self._drive(record, driver, progress)

    async def _save(
        self, record: OperationRecord, steps: Sequence[Step], phase: OperationPhase, message: str
    ) -> OperationRecord:
        return await asyncio.to_thread(
            self.store.save_progress,
            record.id,
            phase=phase,
            steps=[s.to_dict() for s in steps],
            message=message,
        )

    async def _drive(
        self, record: OperationRecord, driver: Driver, progress: ProgressSink
    ) -> OperationRecord:
        steps = journal(record)
        total = len(steps)
        log.info("operation.running", kind=record.kind, steps=total, phase=record.phase.value)
        record = await self._save(record, steps, OperationPhase.RUNNING, "running")
        for index, step in enumerate(steps):
            if step.state is StepState.DONE:
                continue
            current = await asyncio.to_thread(self.store.get, record.id)
            if current.requested is OperationRequest.ABORT:
                done = await driver.abort(current)
                log.info("operation.aborted", at_step=step.name, cleanup=done)
                return await self._save(
                    record, steps, OperationPhase.ABORTED, f"aborted before {step.title}; {done}"
                )
            if current.requested is OperationRequest.PAUSE:
                log.info("operation.paused", at_step=step.name)
                return await self._save(record, steps, OperationPhase.PAUSED, f"paused before {step.title}")
            interrupted = step.state is StepState.RUNNING
            step = replace(step, state=StepState.RUNNING, attempts=step.attempts + 1, started_at=_now())
            steps[index] = step
            record = await self._save(record, steps, OperationPhase.RUNNING, step.title)
            progress(ProgressEvent(record.kind, step.title, index, total))
            log.info("operation.step", step=step.name, attempt=step.attempts, interrupted=interrupted)

            def report(detail: str, _index: int = index, _kind: str = record.kind) -> None:
                progress(ProgressEvent(_kind, f"{steps[_index].title}: {detail}", _index, total))

            try:
                outcome = await driver.run_step(record, step, report)
            except StepBlocked as exc:
                steps[index] = replace(step, state=StepState.PENDING, detail=exc.message)
                current = await asyncio.to_thread(self.store.get, record.id)
                if current.requested is OperationRequest.ABORT:
                    done = await driver.abort(current)
                    log.info("operation.aborted", at_step=step.name, cleanup=done)
                    return await self._save(
                        record, steps, OperationPhase.ABORTED, f"aborted during {step.title}; {done}"
                    )
                log.info("operation.blocked", step=step.name, reason=exc.message)
                return await self._save(
                    record, steps, OperationPhase.PAUSED, f"paused at {step.title}: {exc.message}"
                )
            except errors.PilothouseError as exc:
                steps[index] = replace(step, detail=exc.message)
                log.warning("operation.failed", step=step.name, error=exc.message, code=exc.code)
                return await self._save(
                    record, steps, OperationPhase.FAILED, f"{step.title} failed: {exc.message}"
                )
            steps[index] = replace(
                step,
                state=StepState.DONE,
                acted=step.acted + (outcome is StepOutcome.ACTED),
                finished_at=_now(),
                detail=outcome.value,
            )
            record = await self._save(record, steps, OperationPhase.RUNNING, f"{step.title}: done")
        progress(ProgressEvent(record.kind, "done", total, total))
        log.info("operation.succeeded", kind=record.kind)
        return await self._save(record, steps, OperationPhase.SUCCEEDED, "succeeded")

    # ----- the background loop -------------------------------------------------------------

    async def run_unfinished(self) -> list[str]:
        """Start a task for every runnable operation not already running here; return their ids."""
        started = []
        for record in await asyncio.to_thread(self.store.list, unfinished=True):
            if record.phase is OperationPhase.PAUSED or record.kind not in self.drivers:
                continue
            task = self._tasks.get(record.id)
            if task is not None and not task.done():
                continue
            cluster = await asyncio.to_thread(self.leases.store.find, record.cluster)
            if cluster is None or self.leases.busy(cluster, datetime.now(UTC)):
                continue
            self._tasks[record.id] = asyncio.create_task(self._run_logged(record.id), name=f"op:{record.id}")
            started.append(record.id)
        return started

    async def _run_logged(self, operation_id: str) -> OperationRecord | None:
        try:
            return await self.run(operation_id)
        except errors.Conflict:
            return None  # someone else holds the cluster: a later pass retries
        except errors.PilothouseError as exc:
            log.warning("operation.not_run", operation=operation_id, error=exc.message)
            return None

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()


async def wait_finished(
    store: OperationStore, operation_id: str, *, timeout: float, poll: float = 0.5
) -> OperationRecord:
    """Poll until the operation is finished or paused; ``TimeoutError`` after ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            record = await asyncio.to_thread(store.get, operation_id)
            if record.phase.finished or record.phase is OperationPhase.PAUSED:
                return record
            await asyncio.sleep(poll)
