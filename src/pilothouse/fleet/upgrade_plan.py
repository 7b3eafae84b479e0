"""Upgrade planning: the ordered steps of a control-plane upgrade and what blocks or risks it.

Pure: ``plan_upgrade(facts)`` reads plain data (``UpgradeFacts``, gathered by
``fleet.upgrades`` from the store, the binary cache, the health monitor, the
live inventory and the API server) and returns an ``UpgradePlan``; no I/O,
no clock (``facts.now``). The same plan is printed by ``pilothouse upgrade
plan``, returned as JSON by the API, and its steps become the journal of the
durable upgrade operation.

Rules, each a ``Finding`` with a stable ``code``:

Blockers (the upgrade is refused):
  ``version-unknown``     the target is not a release Pilothouse supports
  ``version-not-newer``   the target is the current version or older (no downgrades)
  ``version-skew``        more than one minor at a time (1.34 → 1.36): go through 1.35
  ``binaries-missing``    the target's binaries are not installed
  ``not-local``           an imported cluster: Pilothouse does not run its control plane
  ``cluster-unhealthy``   an endpoint fails its probe, or the cluster was never probed
  ``kubelet-too-old``     nodes whose kubelet would be more than 3 minors behind the target
  ``api-removed``         an API removed by the target release (and still served by the
                          current one) is still in use
  ``certificate-expired`` a control-plane certificate has already expired

Warnings (the upgrade may go on; read them):
  ``single-control-plane`` one API server: the API is down while it restarts
  ``kubelet-newer``        nodes newer than the current control plane
  ``pdb-blocks-drain``     a PodDisruptionBudget allows no disruption now (a later node
                           rollout would wait on it)
  ``single-replica``       a Deployment or StatefulSet with one replica (unavailable while
                           its node is replaced)
  ``capacity-headroom``    requests above ``headroom_threshold`` of allocatable: little room
                           for the pods of a surge node
  ``api-deprecated``       a deprecated API is in use (removed in a later release)
  ``api-removed-earlier``  a stored manifest names an API the current release no longer
                           serves: re-applying it fails already, the upgrade changes nothing
  ``api-scan-incomplete``  some objects or Helm releases could not be checked for old APIs
  ``certificate-expiring`` a certificate expires within ``certificate_warning_days``

Steps, in order: ``preflight``; one per etcd member when the target pins another
etcd version; one per API server (drain it from the load balancer, restart it on
the target, wait for ``/readyz``, put it back); one per controller-manager, then
per scheduler; ``finalize`` (record the new version). Control plane before nodes:
nodes are replaced by a node rollout afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pilothouse import errors

#: Kubelets may be up to this many minors older than the API server (since Kubernetes 1.28).
KUBELET_MAX_SKEW = 3
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str, *, what: str = "version") -> Version:
        found = _VERSION.match(text.strip())
        if found is None:
            raise errors.InvalidInput(
                f"malformed {what} {text!r}: expected MAJOR.MINOR.PATCH such as 1.36.3",
                hint="list the supported versions with `pilothouse binaries list`",
            )
        return cls(int(found[1]), int(found[2]), int(found[3]))

    @classmethod
    def lenient(cls, text: str) -> Version | None:
        """``v1.35.4`` or ``1.35.4-kwok`` style; None when it does not start with a version."""
        found = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", text.strip())
        return cls(int(found[1]), int(found[2]), int(found[3])) if found else None

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


class Severity(StrEnum):
    BLOCKER = "blocker"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str
    hint: str = ""
    subject: str = ""  # the object concerned, e.g. "default/web" or "apiserver.crt"

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "hint": self.hint,
            "subject": self.subject,
        }


@dataclass(frozen=True)
class PlanStep:
    name: str
    title: str


class Judged:
    """A plan with findings: it may go ahead only without blockers (shared by the planners)."""

    findings: tuple[Finding, ...]

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.BLOCKER)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)

    @property
    def allowed(self) -> bool:
        return not self.blockers


@dataclass(frozen=True)
class PdbFacts:
    namespace: str
    name: str
    disruptions_allowed: int


@dataclass(frozen=True)
class WorkloadFacts:
    kind: str
    namespace: str
    name: str
    desired: int


@dataclass(frozen=True)
class ApiUse:
    """An API version something still uses: live requests, stored manifests, Helm releases."""

    group: str
    version: str
    kind: str
    source: str  # e.g. "requests (apiserver metric)", "last-applied-configuration of default/web"
    deprecated_in: str | None = None  # "1.35" style minors
    removed_in: str | None = None
    replacement: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class UpgradeFacts:
    """Everything the planner reads; ``None`` means unknown (and is reported as such)."""

    cluster: str
    provider: str  # "local" or "import"
    current: str
    target: str
    now: datetime
    supported: tuple[str, ...]
    installed: tuple[str, ...]
    control_planes: int = 1
    etcd_members: int = 1
    etcd_version: Mapping[str, str] = field(default_factory=dict)  # kubernetes version -> etcd version
    failing_endpoints: tuple[str, ...] | None = None  # None: never probed
    kubelet_versions: Mapping[str, int] = field(default_factory=dict)  # version -> nodes
    pdbs: Sequence[PdbFacts] = ()
    workloads: Sequence[WorkloadFacts] = ()
    api_uses: Sequence[ApiUse] = ()
    api_scan_gaps: tuple[str, ...] = ()  # what could not be checked for old APIs, for people
    certificates: Mapping[str, datetime] | None = None
    cpu_request_ratio: float | None = None
    memory_request_ratio: float | None = None
    headroom_threshold: float = 0.8
    certificate_warning_days: int = 30


@dataclass(frozen=True)
class UpgradePlan(Judged):
    cluster: str
    current: str
    target: str
    steps: tuple[PlanStep, ...]
    findings: tuple[Finding, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "current": self.current,
            "target": self.target,
            "allowed": self.allowed,
            "steps": [{"name": s.name, "title": s.title} for s in self.steps],
            "blockers": [f.to_dict() for f in self.blockers],
            "warnings": [f.to_dict() for f in self.warnings],
        }


def _minor(text: str) -> tuple[int, int] | None:
    found = re.match(r"^v?(\d+)\.(\d+)", text.strip())
    return (int(found[1]), int(found[2])) if found else None


def _versions(facts: UpgradeFacts, current: Version, target: Version) -> list[Finding]:
    found: list[Finding] = []
    supported = ", ".join(facts.supported) or "none"
    if str(target) not in facts.supported:
        found.append(
            Finding(
                "version-unknown",
                Severity.BLOCKER,
                f"Kubernetes {target} is not a release Pilothouse supports (supported: {supported})",
                "choose one of the supported versions",
            )
        )
    if target <= current:
        found.append(
            Finding(
                "version-not-newer",
                Severity.BLOCKER,
                f"the cluster already runs {current}; {target} is not newer (downgrades are not supported)",
                "restore a backup taken on the older version to go back",
            )
        )
    elif (target.major, target.minor) > (current.major, current.minor + 1):
        step = Version(current.major, current.minor + 1, 0)
        candidates = [v for v in facts.supported if _minor(v) == (step.major, step.minor)]
        through = candidates[-1] if candidates else f"{step.major}.{step.minor}.x"
        found.append(
            Finding(
                "version-skew",
                Severity.BLOCKER,
                f"{current} → {target} skips a minor release; control planes upgrade one minor at a time",
                f"upgrade to {through} first, then to {target}",
            )
        )
    if str(target) in facts.supported and str(target) not in facts.installed:
        found.append(
            Finding(
                "binaries-missing",
                Severity.BLOCKER,
                f"the binaries of Kubernetes {target} are not installed",
                f"pilothouse binaries install --version {target}",
            )
        )
    return found


def _cluster(facts: UpgradeFacts) -> list[Finding]:
    found: list[Finding] = []
    if facts.provider != "local":
        found.append(
            Finding(
                "not-local",
                Severity.BLOCKER,
                f"cluster {facts.cluster} was imported; Pilothouse does not run its control plane",
                "upgrade it with the tools that created it; Pilothouse keeps watching it",
            )
        )
    if facts.failing_endpoints is None:
        found.append(
            Finding(
                "cluster-unhealthy",
                Severity.BLOCKER,
                f"cluster {facts.cluster} has not been probed yet, so its health is unknown",
                "start it and wait for a health probe (`pilothouse fleet status`)",
            )
        )
    elif facts.failing_endpoints:
        found.append(
            Finding(
                "cluster-unhealthy",
                Severity.BLOCKER,
                f"endpoints failing their probes: {', '.join(facts.failing_endpoints)}",
                "repair the cluster first (`pilothouse fleet status`, `pilothouse logs`)",
            )
        )
    if facts.control_planes < 2:
        found.append(
            Finding(
                "single-control-plane",
                Severity.WARNING,
                "the cluster has one API server: its API is unavailable while that server restarts",
                "create HA clusters (--control-planes 3) for zero-downtime upgrades",
            )
        )
    return found


def _nodes(facts: UpgradeFacts, current: Version, target: Version) -> list[Finding]:
    found: list[Finding] = []
    too_old, too_new = 0, 0
    for text, count in facts.kubelet_versions.items():
        version = Version.lenient(text)
        if version is None:
            continue
        if (target.major, target.minor - KUBELET_MAX_SKEW) > (version.major, version.minor):
            too_old += count
        elif (version.major, version.minor, version.patch) > (current.major, current.minor, current.patch):
            too_new += count
    if too_old:
        found.append(
            Finding(
                "kubelet-too-old",
                Severity.BLOCKER,
                f"{too_old} node(s) run a kubelet more than {KUBELET_MAX_SKEW} minors older than {target}",
                "roll those nodes to a newer version first (`pilothouse rollout`)",
            )
        )
    if too_new:
        found.append(
            Finding(
                "kubelet-newer",
                Severity.WARNING,
                f"{too_new} node(s) run a kubelet newer than the control plane ({current})",
                "kubelets must never be newer than the API server; check how they were added",
            )
        )
    return found


def _workloads(facts: UpgradeFacts) -> list[Finding]:
    found = [
        Finding(
            "pdb-blocks-drain",
            Severity.WARNING,
            f"PodDisruptionBudget {p.namespace}/{p.name} allows no disruption now",
            "a node rollout waits on it; scale the workload up or relax the budget",
            subject=f"{p.namespace}/{p.name}",
        )
        for p in sorted(facts.pdbs, key=lambda p: (p.namespace, p.name))
        if p.disruptions_allowed <= 0
    ]
    found += [
        Finding(
            "single-replica",
            Severity.WARNING,
            f"{w.kind} {w.namespace}/{w.name} has a single replica: it is unavailable while its node is replaced",
            "run two or more replicas with a PodDisruptionBudget",
            subject=f"{w.namespace}/{w.name}",
        )
        for w in sorted(facts.workloads, key=lambda w: (w.namespace, w.name, w.kind))
        if w.desired == 1 and w.kind in ("Deployment", "StatefulSet")
    ]
    ratios = [
        (name, ratio)
        for name, ratio in (("cpu", facts.cpu_request_ratio), ("memory", facts.memory_request_ratio))
        if ratio is not None and ratio > facts.headroom_threshold
    ]
    if ratios:
        found.append(
            Finding(
                "capacity-headroom",
                Severity.WARNING,
                "requests are "
                + ", ".join(f"{ratio:.0%} of allocatable {name}" for name, ratio in ratios)
                + ": little room for the pods of a surge node",
                "add nodes or lower maxSurge/maxUnavailable before a node rollout",
            )
        )
    return found


def _apis(facts: UpgradeFacts, current: Version, target: Version) -> list[Finding]:
    found: list[Finding] = []
    if facts.api_scan_gaps:
        found.append(
            Finding(
                "api-scan-incomplete",
                Severity.WARNING,
                "not everything could be checked for old API versions: " + "; ".join(facts.api_scan_gaps[:5]),
                "run the plan again; if it persists, check those resources by hand",
            )
        )
    seen: set[tuple[str, str, str]] = set()
    for use in sorted(facts.api_uses, key=lambda u: (u.api_version, u.kind, u.source)):
        key = (use.api_version, use.kind, use.source)
        if key in seen:
            continue
        seen.add(key)
        removed = _minor(use.removed_in) if use.removed_in else None
        instead = f"use {use.replacement}" if use.replacement else "migrate to a served version"
        if removed is not None and removed <= (current.major, current.minor):
            found.append(
                Finding(
                    "api-removed-earlier",
                    Severity.WARNING,
                    f"{use.api_version} {use.kind} was removed in {use.removed_in}, before this cluster's "
                    f"{current.major}.{current.minor}; {use.source} still names it",
                    f"{instead}: re-applying that manifest fails already",
                    subject=f"{use.api_version}/{use.kind}",
                )
            )
        elif removed is not None and removed <= (target.major, target.minor):
            found.append(
                Finding(
                    "api-removed",
                    Severity.BLOCKER,
                    f"{use.api_version} {use.kind} is removed in {use.removed_in} and still used by {use.source}",
                    instead,
                    subject=f"{use.api_version}/{use.kind}",
                )
            )
        elif use.deprecated_in is not None or use.removed_in is not None:
            when = f"removed in {use.removed_in}" if use.removed_in else f"deprecated in {use.deprecated_in}"
            found.append(
                Finding(
                    "api-deprecated",
                    Severity.WARNING,
                    f"{use.api_version} {use.kind} is {when}; used by {use.source}",
                    instead,
                    subject=f"{use.api_version}/{use.kind}",
                )
            )
    return found


def _certificates(facts: UpgradeFacts) -> list[Finding]:
    found: list[Finding] = []
    for path, not_after in sorted((facts.certificates or {}).items()):
        left = not_after - facts.now
        if left <= timedelta(0):
            found.append(
                Finding(
                    "certificate-expired",
                    Severity.BLOCKER,
                    f"certificate {path} expired at {not_after:%Y-%m-%d %H:%M} UTC",
                    f"rotate the cluster's certificates: pilothouse certificates rotate {facts.cluster}",
                    subject=path,
                )
            )
        elif left <= timedelta(days=facts.certificate_warning_days):
            found.append(
                Finding(
                    "certificate-expiring",
                    Severity.WARNING,
                    f"certificate {path} expires in {left.days} day(s) ({not_after:%Y-%m-%d} UTC)",
                    f"rotate first: pilothouse certificates rotate {facts.cluster}",
                    subject=path,
                )
            )
    return found


def control_plane_steps(facts: UpgradeFacts, target: Version) -> tuple[PlanStep, ...]:
    """The ordered steps of a local control-plane upgrade to ``target``."""
    steps = [PlanStep("preflight", "check binaries and health")]
    if facts.etcd_version.get(facts.current) != facts.etcd_version.get(str(target)):
        steps += [
            PlanStep(f"etcd-{i}", f"upgrade etcd member {i} to {facts.etcd_version.get(str(target), '?')}")
            for i in range(facts.etcd_members)
        ]
    steps += [
        PlanStep(f"kube-apiserver-{i}", f"upgrade API server {i} to {target}")
        for i in range(facts.control_planes)
    ]
    steps += [
        PlanStep(f"kube-controller-manager-{i}", f"upgrade controller-manager {i} to {target}")
        for i in range(facts.control_planes)
    ]
    steps += [
        PlanStep(f"kube-scheduler-{i}", f"upgrade scheduler {i} to {target}")
        for i in range(facts.control_planes)
    ]
    steps.append(PlanStep("finalize", f"record version {target}"))
    return tuple(steps)


def plan_upgrade(facts: UpgradeFacts) -> UpgradePlan:
    """The plan of upgrading ``facts.cluster`` from ``facts.current`` to ``facts.target``."""
    target = Version.parse(facts.target, what="target version")
    current = Version.parse(facts.current, what="current version")
    findings = [
        *_versions(facts, current, target),
        *_cluster(facts),
        *_nodes(facts, current, target),
        *_apis(facts, current, target),
        *_certificates(facts),
        *_workloads(facts),
    ]
    findings.sort(key=lambda f: (f.severity is not Severity.BLOCKER, f.code, f.subject))
    return UpgradePlan(
        cluster=facts.cluster,
        current=str(current),
        target=str(target),
        steps=control_plane_steps(facts, target),
        findings=tuple(findings),
    )
