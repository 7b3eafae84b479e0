"""Certificates of local clusters: expiry tracking and rotation without downtime.

``Certificates.status`` lists every certificate of a local cluster with its
validity (``providers.local.pki.read_certificates``; ``cryptography`` reads
them). ``Certificates.start_rotation`` records a durable operation
(``fleet.operations``) whose driver, ``CertificateRotation``, works through:

- ``issue``: re-issue every leaf certificate from the cluster's existing CAs
  (the CAs and the service-account key stay, so nothing that trusts the
  cluster has to change), rewrite the kubeconfigs that embed client
  certificates and the admin kubeconfig Pilothouse keeps (encrypted) in its
  store. Done already when every leaf was issued after the operation was
  created.
- one step per process that reads a certificate — etcd members, API servers,
  controller-managers, schedulers, kwok — restarting it one at a time
  (``fleet.rolling``: API servers leave HAProxy's rotation first, so an HA
  cluster keeps answering). Old and new leaves chain to the same CAs, so
  restarted and not-yet-restarted processes talk to each other throughout.
  Done already when the process started after the new leaves were written.

An abort puts every API server back into rotation; the cluster then runs
with a mix of old and new leaves, all valid.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from pilothouse import errors
from pilothouse.fleet import operations, rolling
from pilothouse.fleet.registry import KUBECONFIG_SECRET, ClusterRegistry
from pilothouse.fleet.upgrades import load_local, persist_runtime
from pilothouse.providers.local import pki, topology
from pilothouse.providers.local.provider import LocalRuntime
from pilothouse.store.operations import OperationRecord, OperationStore

log = structlog.get_logger(__name__)

KIND = "certificate-rotation"
#: Certificate times have whole seconds: a leaf issued just after the operation was created
#: may read up to a second earlier.
_ROUNDING = timedelta(seconds=1)


@dataclass(frozen=True)
class CertificateStatus:
    path: str
    not_before: datetime
    not_after: datetime
    is_ca: bool
    days_left: float


def rotation_steps(spec: topology.LocalClusterSpec) -> list[tuple[str, str]]:
    """The journal of a rotation: issue, then every process that reads a certificate."""
    cps = spec.control_planes
    steps = [("issue", "issue new leaf certificates")]
    steps += [(f"etcd-{i}", f"restart etcd member {i}") for i in range(cps)]
    steps += [(f"kube-apiserver-{i}", f"restart API server {i}") for i in range(cps)]
    steps += [(f"kube-controller-manager-{i}", f"restart controller-manager {i}") for i in range(cps)]
    steps += [(f"kube-scheduler-{i}", f"restart scheduler {i}") for i in range(cps)]
    steps.append(("kwok", "restart kwok"))
    return steps


class Certificates:
    """Lists certificates and starts rotations."""

    def __init__(self, registry: ClusterRegistry, store: OperationStore) -> None:
        self.registry = registry
        self.store = store

    def status(self, name: str, *, now: datetime | None = None) -> list[CertificateStatus]:
        """Every certificate of a local cluster, soonest expiry first."""
        _record, _spec, runtime = load_local(self.registry, name)
        moment = now or datetime.now(UTC)
        found = [
            CertificateStatus(
                path=path,
                not_before=info.not_before,
                not_after=info.not_after,
                is_ca=info.is_ca,
                days_left=(info.not_after - moment).total_seconds() / 86400,
            )
            for path, info in pki.read_certificates(runtime.layout.pki).items()
        ]
        return sorted(found, key=lambda c: (c.not_after, c.path))

    def start_rotation(self, name: str, *, created_by: str = "") -> OperationRecord:
        _record, spec, _runtime = load_local(self.registry, name)
        return self.store.create(
            KIND, name, {}, steps=operations.planned(rotation_steps(spec)), created_by=created_by
        )


class CertificateRotation:
    """The driver of ``certificate-rotation`` operations; see the module docstring."""

    def __init__(self, registry: ClusterRegistry, *, settings: rolling.RollingSettings | None = None) -> None:
        self.registry = registry
        self.settings = settings or rolling.RollingSettings()

    async def run_step(
        self, record: OperationRecord, step: operations.Step, report: operations.Report
    ) -> operations.StepOutcome:
        if step.name == "issue":
            return await asyncio.to_thread(self._issue, record)
        return await self._restart(record, step.name, report)

    def _leaves_issued_at(self, runtime: LocalRuntime) -> datetime:
        """When the current leaves were issued: the oldest leaf's back-dated notBefore, undone."""
        leaves = [i for i in pki.read_certificates(runtime.layout.pki).values() if not i.is_ca]
        if not leaves:
            raise errors.NotFound("the cluster has no leaf certificates", hint="its PKI directory is damaged")
        return min(i.not_before for i in leaves) + pki.CLOCK_SKEW

    def _issue(self, record: OperationRecord) -> operations.StepOutcome:
        _cluster, spec, runtime = load_local(self.registry, record.cluster)
        done = self._leaves_issued_at(runtime) >= record.created_at - _ROUNDING
        if not done:
            self.registry.local.rotate_leaf_certificates(spec, runtime, now=datetime.now(UTC))
        # Idempotent, and needed again if the last run died between the files and the store.
        creds = self.registry.local.admin_credentials(spec, runtime)
        self.registry.store.put_secret(
            record.cluster, KUBECONFIG_SECRET, creds.to_yaml(record.cluster).encode()
        )
        log.info("certificates.issued", cluster=record.cluster, already=done)
        return operations.StepOutcome.ALREADY_DONE if done else operations.StepOutcome.ACTED

    async def _restart(
        self, record: OperationRecord, process: str, report: operations.Report
    ) -> operations.StepOutcome:
        _cluster, spec, runtime = await asyncio.to_thread(load_local, self.registry, record.cluster)
        persist = persist_runtime(self.registry, record.cluster)
        issued_at = await asyncio.to_thread(self._leaves_issued_at, runtime)
        running = await asyncio.to_thread(
            functools.partial(self.registry.local.running_binary, spec, runtime, process, persist=persist)
        )
        current = runtime.processes.get(process)
        if running is not None and current is not None and current.create_time > issued_at.timestamp():
            await rolling.ensure_in_rotation(runtime, process, self.settings)
            report(f"{process} already runs with the new certificates")
            return operations.StepOutcome.ALREADY_DONE
        await rolling.restart_in_rotation(
            self.registry, spec, runtime, process, persist=persist, report=report, settings=self.settings
        )
        return operations.StepOutcome.ACTED

    async def abort(self, record: OperationRecord) -> str:
        _cluster, spec, runtime = await asyncio.to_thread(load_local, self.registry, record.cluster)
        await rolling.restore_rotation(runtime, spec.control_planes)
        return "every API server is back in rotation; old and new leaf certificates are all valid"
