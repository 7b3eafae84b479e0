"""The alerting service: evaluates the built-in rules over the fleet and notifies people.

Each pass gathers what Pilothouse knows of every cluster that should run —
its latest health probe, its inventory snapshot and pods, its SLA report —
hands it to the pure ``alerting.evaluate`` together with the stored alert
states and active silences, saves the new states and delivers the
notifications through ``notify`` in a task of its own, so a slow channel never
stretches a pass. Acknowledgements and silences are written straight to the
store, so the CLI and any API replica can make them while ``pilothouse up``
evaluates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from pilothouse import errors
from pilothouse.fleet import alerting, notify, sla
from pilothouse.fleet.inventory import FleetInventory
from pilothouse.fleet.monitoring import HealthMonitor
from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.store.alerts import AlertRecord, AlertStore, SilenceRecord
from pilothouse.vocabulary import ClusterPhase, DesiredState, ProviderKind

log = structlog.get_logger(__name__)

#: SLA reports read the store: refresh them this often, not every pass.
SLA_REFRESH = timedelta(seconds=30)
#: Certificates change only when rotated: read them this often, not every pass.
CERTIFICATES_REFRESH = timedelta(minutes=5)


class Alerts:
    def __init__(
        self,
        registry: ClusterRegistry,
        monitor: HealthMonitor,
        inventory: FleetInventory,
        store: AlertStore,
        *,
        rules: alerting.AlertRulesConfig,
        channels: Sequence[notify.AnyChannel],
    ) -> None:
        self.registry = registry
        self.monitor = monitor
        self.inventory = inventory
        self.store = store
        self.rules = rules
        self.channels = tuple(channels)
        self._reports: dict[str, tuple[datetime, sla.SLAReport]] = {}
        self._certificates: dict[str, tuple[datetime, dict[str, datetime] | None]] = {}
        self._deliveries: set[asyncio.Task[Any]] = set()

    # ----- evaluation ---------------------------------------------------------------------

    def _report(self, name: str, now: datetime) -> sla.SLAReport | None:
        cached = self._reports.get(name)
        if cached is None or now - cached[0] >= SLA_REFRESH:
            try:
                cached = (now, self.monitor.report(name, now=now))
            except errors.NotFound:
                return None
            self._reports[name] = cached
        return cached[1]

    def _expiries(self, name: str, now: datetime) -> dict[str, datetime] | None:
        """A local cluster's certificate expiries, re-read every ``CERTIFICATES_REFRESH``;
        None (unknown) when they cannot be read."""
        cached = self._certificates.get(name)
        if cached is None or now - cached[0] >= CERTIFICATES_REFRESH:
            try:
                expiries: dict[str, datetime] | None = self.registry.certificate_expiries(name)
            except errors.PilothouseError as exc:
                log.warning("alerts.certificates_unreadable", cluster=name, error=exc.message)
                expiries = None
            cached = (now, expiries)
            self._certificates[name] = cached
        return cached[1]

    def forget_certificates(self, name: str | None = None) -> None:
        """Re-read certificates on the next pass (after a rotation); all clusters without a name."""
        if name is None:
            self._certificates.clear()
        else:
            self._certificates.pop(name, None)

    async def _observations(self, now: datetime) -> list[alerting.ClusterObservation]:
        records = await asyncio.to_thread(self.registry.clusters)
        watched = set(self.inventory.names())
        observations = []
        for record in records:
            if record.desired_state != DesiredState.RUNNING or record.phase == ClusterPhase.DELETING:
                continue
            cache = self.inventory.inventory(record.name) if record.name in watched else None
            observations.append(
                alerting.ClusterObservation(
                    cluster=record.name,
                    health=self.monitor.latest.get(record.name),
                    inventory=cache.snapshot() if cache is not None else None,
                    pods=cache.pods_waiting(alerting.CRASH_LOOP_REASON) if cache is not None else None,
                    sla=await asyncio.to_thread(self._report, record.name, now),
                    certificates=(
                        await asyncio.to_thread(self._expiries, record.name, now)
                        if record.provider == ProviderKind.LOCAL
                        else None
                    ),
                )
            )
        return observations

    async def evaluate_once(self, *, now: datetime | None = None) -> alerting.Evaluation:
        """One pass: evaluate, store the new states, start delivering the notifications."""
        moment = now or datetime.now(UTC)
        previous = alerting.restore(await asyncio.to_thread(self.store.records))
        silences = [_silence(s) for s in await asyncio.to_thread(self.store.silences, active_at=moment)]
        evaluation = alerting.evaluate(
            previous, await self._observations(moment), moment, self.rules, silences
        )
        await asyncio.to_thread(self.store.save, evaluation.states.values())
        for note in evaluation.notifications:
            log.info(
                "alert.transition",
                kind=note.kind.value,
                rule=note.alert.rule.value,
                labels=dict(note.alert.labels),
            )
        self._start_delivery(evaluation)
        return evaluation

    def _start_delivery(self, evaluation: alerting.Evaluation) -> None:
        alertmanagers = [c for c in self.channels if isinstance(c, notify.AlertmanagerChannel)]
        refresh = alerting.refresh_notices(evaluation.states)
        jobs = []
        if evaluation.notifications and self.channels:
            jobs.append(notify.deliver(evaluation.notifications, self.channels, delivery_log=self.store))
        if refresh and alertmanagers:  # Alertmanager forgets alerts it stops hearing about
            jobs.append(notify.deliver(refresh, alertmanagers, delivery_log=None))
        for job in jobs:
            task = asyncio.create_task(job, name="alert-delivery")
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def drain(self) -> None:
        """Wait for deliveries in flight (tests, shutdown)."""
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)

    def prune(self, *, now: datetime | None = None, keep: timedelta = timedelta(days=30)) -> None:
        moment = now or datetime.now(UTC)
        self.store.prune_deliveries(before=moment - keep)
        self.store.prune_silences(ended_before=moment - keep)

    # ----- people -------------------------------------------------------------------------

    def current(self, *, cluster: str | None = None, include_resolved: bool = False) -> list[AlertRecord]:
        statuses = None if include_resolved else [s.value for s in alerting.AlertStatus if s.active]
        return self.store.records(cluster=cluster, statuses=statuses)

    def acknowledge(self, fingerprint: str, *, by: str, now: datetime | None = None) -> AlertRecord:
        return self.store.acknowledge(fingerprint, by=by, at=now or datetime.now(UTC))

    def silence(
        self,
        matchers: Sequence[str],
        *,
        duration: timedelta,
        by: str,
        comment: str = "",
        now: datetime | None = None,
    ) -> SilenceRecord:
        if duration <= timedelta(0):
            raise errors.InvalidInput("a silence must last longer than zero", hint="e.g. --duration 2h")
        parsed = [alerting.Matcher.parse(m).to_dict() for m in matchers]
        start = now or datetime.now(UTC)
        return self.store.add_silence(
            parsed, starts_at=start, ends_at=start + duration, created_by=by, comment=comment
        )

    def silences(self, *, now: datetime | None = None) -> list[SilenceRecord]:
        """Silences that have not ended: active ones and those that start later."""
        moment = now or datetime.now(UTC)
        return [s for s in self.store.silences() if s.ends_at > moment]

    def expire_silence(self, silence_id: str, *, now: datetime | None = None) -> SilenceRecord:
        return self.store.expire_silence(silence_id, at=now or datetime.now(UTC))


def _silence(record: SilenceRecord) -> alerting.Silence:
    return alerting.Silence(
        id=record.id,
        matchers=tuple(alerting.Matcher.from_dict(m) for m in record.matchers),
        starts_at=record.starts_at,
        ends_at=record.ends_at,
        created_by=record.created_by,
        comment=record.comment,
    )
