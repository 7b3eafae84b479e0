"""Alert rules and the alert lifecycle, as pure functions over plain observations.

Pure: no clock (``now`` is an argument), no I/O, no adapters. The inputs are
read through small protocols that ``fleet.health.ClusterHealth``,
``fleet.inventory.InventorySnapshot``, ``kube.summaries.PodSummary`` and
``fleet.sla.SLAReport`` satisfy, so this module imports none of them. The
periodic alert pass (wired in ``reconcile/loop.py``) gathers one
``ClusterObservation`` per cluster, calls ``evaluate`` with the states it
loaded from ``store.alerts``, saves the new states and hands the returned
notifications to ``fleet.notify``.

Built-in rules (``Rule``), each with a ``for`` duration and thresholds in
``AlertRulesConfig``:

============================  =====================================================  ==========
rule                          condition                                              labels
============================  =====================================================  ==========
ClusterUnreachable            the client endpoint's ``/readyz`` failed               cluster
APIServerEndpointDown         one API server member failed while the cluster is up   endpoint
NodeNotReady                  a node's Ready condition is not True                   node
PodCrashLooping               a pod waits in CrashLoopBackOff                        namespace, pod
WorkloadUnavailable           available replicas below desired                       namespace, kind, name
CapacityHigh                  requested CPU or memory over ``threshold`` (80 %) of   (cluster)
                              allocatable (``fleet.capacity.detect_capacity_high``)
CertificateExpiringSoon       a local cluster's certificate expires within           certificate
                              ``warning_days`` (30); critical within ``critical_days``
SLOBurnRateHigh               a multiwindow burn-rate rule of ``fleet.sla`` fires    window
============================  =====================================================  ==========

Every alert also carries ``alertname`` (the rule) and ``cluster``; the
**fingerprint** is a hash of the sorted labels, so one condition is one alert
however often it is seen (de-duplication).

The lifecycle, per fingerprint (``AlertStatus``)::

    (none) ──condition──▶ PENDING ──held for `for`──▶ FIRING ──condition gone──▶ RESOLVED
               ▲            │ condition gone: dropped, nothing sent (a flap)        │
               └────────────┴───────────── condition again: a new incarnation ◀────┘

- A FIRING alert is notified once, then again every ``repeat_interval_seconds``
  unless **acknowledged**; an acknowledgement lasts until the alert resolves.
- A **silence** (label matchers, a start and an end) suppresses notifications
  of the alerts it matches while it is active; their state still advances, and
  a firing alert whose silence ends is notified then. A RESOLVED notice always
  follows a delivered FIRING one, silenced or not, so receivers never keep a
  stale alert open.
- **Unknown is not false.** A rule whose input is missing for a cluster (no
  probe yet, an inventory that is not synced or not connected, a cluster that
  is down — its stale cache says nothing new) keeps that cluster's alerts of
  that rule exactly as they were. Only a cluster absent from the observations
  altogether (deleted, stopped) has its alerts resolved.
- RESOLVED alerts are kept ``resolved_retention_seconds`` for the listing,
  then dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from pilothouse import errors
from pilothouse.fleet import capacity
from pilothouse.shapes import AlertFields

CRASH_LOOP_REASON = "CrashLoopBackOff"


class Rule(StrEnum):
    CLUSTER_UNREACHABLE = "ClusterUnreachable"
    APISERVER_ENDPOINT_DOWN = "APIServerEndpointDown"
    NODE_NOT_READY = "NodeNotReady"
    POD_CRASH_LOOPING = "PodCrashLooping"
    WORKLOAD_UNAVAILABLE = "WorkloadUnavailable"
    CAPACITY_HIGH = capacity.CAPACITY_HIGH
    CERTIFICATE_EXPIRING_SOON = "CertificateExpiringSoon"
    SLO_BURN_RATE_HIGH = "SLOBurnRateHigh"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


class AlertStatus(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"

    @property
    def active(self) -> bool:
        return self is not AlertStatus.RESOLVED


class NotificationKind(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


# ----- configuration ---------------------------------------------------------------------------


class RuleConfig(BaseModel):
    """One rule's switch, ``for`` duration and severity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    for_seconds: float = Field(ge=0)
    severity: Severity = Severity.WARNING
    #: A firing alert whose condition clears stays firing this long (damps flapping).
    keep_firing_seconds: float = Field(default=0.0, ge=0)


class PodRuleConfig(RuleConfig):
    min_restarts: int = Field(default=0, ge=0)
    excluded_namespaces: tuple[str, ...] = ()


class WorkloadRuleConfig(RuleConfig):
    #: Fire when at least this many desired replicas are not available.
    min_unavailable: int = Field(default=1, ge=1)
    excluded_namespaces: tuple[str, ...] = ()


class CapacityRuleConfig(RuleConfig):
    #: Fire when requested CPU or memory exceeds this share of allocatable.
    threshold: float = Field(default=capacity.DEFAULT_THRESHOLD, gt=0, le=1)


class CertificateRuleConfig(RuleConfig):
    #: Fire when a certificate expires within this many days ...
    warning_days: float = Field(default=30, gt=0)
    #: ... with severity critical within this many (or once expired).
    critical_days: float = Field(default=7, ge=0)


class BurnRuleConfig(RuleConfig):
    #: Which ``fleet.sla`` burn-rate rules count (empty: all).
    windows: tuple[str, ...] = ()


class AlertRulesConfig(BaseModel):
    """Every built-in rule's settings; override any field (e.g. in the settings file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster_unreachable: RuleConfig = RuleConfig(for_seconds=10, severity=Severity.CRITICAL)
    apiserver_endpoint_down: RuleConfig = RuleConfig(for_seconds=60)
    node_not_ready: RuleConfig = RuleConfig(for_seconds=120)
    pod_crash_looping: PodRuleConfig = PodRuleConfig(for_seconds=300)
    workload_unavailable: WorkloadRuleConfig = WorkloadRuleConfig(for_seconds=300)
    capacity_high: CapacityRuleConfig = CapacityRuleConfig(for_seconds=900)
    certificate_expiring_soon: CertificateRuleConfig = CertificateRuleConfig(for_seconds=0)
    slo_burn_rate_high: BurnRuleConfig = BurnRuleConfig(for_seconds=120, severity=Severity.CRITICAL)
    #: Re-notify an unacknowledged firing alert this often (None: never).
    repeat_interval_seconds: float | None = Field(default=4 * 3600, gt=0)
    resolved_retention_seconds: float = Field(default=24 * 3600, ge=0)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any]) -> AlertRulesConfig:
        """The defaults with ``overrides`` laid over them, per rule field by field, so
        ``{"capacity_high": {"threshold": 0.9}}`` keeps that rule's other defaults."""
        base = cls().model_dump()
        merged = dict(base)
        for key, value in overrides.items():
            default = base.get(key)
            merged[key] = (
                {**default, **value} if isinstance(default, dict) and isinstance(value, Mapping) else value
            )
        return cls.model_validate(merged)

    def rule(self, rule: Rule) -> RuleConfig:
        return {
            Rule.CLUSTER_UNREACHABLE: self.cluster_unreachable,
            Rule.APISERVER_ENDPOINT_DOWN: self.apiserver_endpoint_down,
            Rule.NODE_NOT_READY: self.node_not_ready,
            Rule.POD_CRASH_LOOPING: self.pod_crash_looping,
            Rule.WORKLOAD_UNAVAILABLE: self.workload_unavailable,
            Rule.CAPACITY_HIGH: self.capacity_high,
            Rule.CERTIFICATE_EXPIRING_SOON: self.certificate_expiring_soon,
            Rule.SLO_BURN_RATE_HIGH: self.slo_burn_rate_high,
        }[rule]


# ----- inputs (structural: the concrete types live in health, inventory, summaries, sla) -------


class EndpointLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def error(self) -> str | None: ...


class HealthLike(Protocol):
    """``fleet.health.ClusterHealth``: ``endpoints`` lists the client endpoint first."""

    @property
    def up(self) -> bool: ...
    @property
    def endpoints(self) -> Sequence[EndpointLike]: ...


class NodeLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def ready(self) -> bool: ...


class WorkloadLike(Protocol):
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def desired(self) -> int: ...
    @property
    def available(self) -> int: ...


class ResourcesLike(Protocol):
    @property
    def cpu_millicores(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...


class SnapshotLike(Protocol):
    """``fleet.inventory.InventorySnapshot``."""

    @property
    def nodes(self) -> Sequence[NodeLike]: ...
    @property
    def workloads(self) -> Sequence[WorkloadLike]: ...
    @property
    def pods_waiting(self) -> Mapping[str, int]: ...
    @property
    def allocatable(self) -> ResourcesLike: ...
    @property
    def requested(self) -> ResourcesLike: ...
    @property
    def synced(self) -> bool: ...
    @property
    def connected(self) -> bool: ...


class PodLike(Protocol):
    """``kube.summaries.PodSummary`` (from ``ClusterInventory.pods_in()``)."""

    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def restarts(self) -> int: ...
    @property
    def waiting_reason(self) -> str: ...


class BurnRuleLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def factor(self) -> float: ...
    @property
    def long_window(self) -> timedelta: ...
    @property
    def short_window(self) -> timedelta: ...


class BurnAlertLike(Protocol):
    @property
    def rule(self) -> BurnRuleLike: ...
    @property
    def long_burn(self) -> float | None: ...
    @property
    def short_burn(self) -> float | None: ...


class ReportLike(Protocol):
    """``fleet.sla.SLAReport``."""

    @property
    def slo(self) -> float: ...
    @property
    def firing(self) -> Sequence[BurnAlertLike]: ...


@dataclass(frozen=True)
class ClusterObservation:
    """What is known about one cluster at evaluation time; ``None`` parts are unknown.

    ``pods``: the inventory's pods (at least the crash-looping ones:
    ``ClusterInventory.pods_waiting(CRASH_LOOP_REASON)``) for one alert per
    crash-looping pod; without them PodCrashLooping is one alert per cluster, from
    ``inventory.pods_waiting``. ``certificates``: a local cluster's certificates (path
    relative to its PKI directory → notAfter); ``None`` for imported clusters and
    whenever they could not be read.
    """

    cluster: str
    health: HealthLike | None = None
    inventory: SnapshotLike | None = None
    pods: Sequence[PodLike] | None = None
    sla: ReportLike | None = None
    certificates: Mapping[str, datetime] | None = None


# ----- alerts, silences, notifications ---------------------------------------------------------


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable identity for a label set (which includes ``alertname``)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Condition:
    """One rule's condition found true in this pass."""

    rule: Rule
    labels: Mapping[str, str]
    severity: Severity
    summary: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


@dataclass(frozen=True)
class AlertState:
    """One alert (one incarnation of a condition) and what was last notified about it.

    ``started_at``: the condition was first seen; ``last_seen_at``: last seen true;
    ``notified``: the last kind of notice handed out for this incarnation.
    ``silenced_by``: the id of the silence that matched in the last pass.
    """

    fingerprint: str
    rule: Rule
    labels: Mapping[str, str]
    severity: Severity
    status: AlertStatus
    summary: str
    started_at: datetime
    last_seen_at: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    last_notified_at: datetime | None = None
    notified: NotificationKind | None = None
    silenced_by: str | None = None

    @property
    def cluster(self) -> str:
        return self.labels.get("cluster", "")

    @property
    def acknowledged(self) -> bool:
        return self.acked_by is not None


def restore(records: Iterable[AlertFields]) -> dict[str, AlertState]:
    """Alert states from stored records, keyed by fingerprint; unknown rules are skipped."""
    states: dict[str, AlertState] = {}
    known = {r.value for r in Rule}
    for r in records:
        if r.rule not in known:
            continue
        states[r.fingerprint] = AlertState(
            fingerprint=r.fingerprint,
            rule=Rule(r.rule),
            labels=dict(r.labels),
            severity=Severity(r.severity),
            status=AlertStatus(r.status),
            summary=r.summary,
            started_at=r.started_at,
            last_seen_at=r.last_seen_at,
            fired_at=r.fired_at,
            resolved_at=r.resolved_at,
            acked_by=r.acked_by,
            acked_at=r.acked_at,
            last_notified_at=r.last_notified_at,
            notified=NotificationKind(r.notified) if r.notified else None,
            silenced_by=r.silenced_by,
        )
    return states


class MatchOp(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True)
class Matcher:
    """A label matcher as in Alertmanager; a missing label has the value ``""``."""

    name: str
    value: str
    op: MatchOp = MatchOp.EQUAL

    def __post_init__(self) -> None:
        if self.op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise errors.InvalidInput(
                    f"the matcher {self.name}{self.op}{self.value!r} is not a valid regular expression: {exc}",
                    hint="use Python regular expression syntax, e.g. cluster=~'prod-.*'",
                ) from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is MatchOp.EQUAL:
            return actual == self.value
        if self.op is MatchOp.NOT_EQUAL:
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op is MatchOp.REGEX else not found

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex``."""
        found = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*", text)
        if found is None:
            raise errors.InvalidInput(
                f"not a label matcher: {text!r}",
                hint="use NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX",
            )
        value = found.group(3)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return cls(found.group(1), value, MatchOp(found.group(2)))

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "value": self.value, "op": self.op.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Matcher:
        return cls(data["name"], data["value"], MatchOp(data.get("op", "=")))


@dataclass(frozen=True)
class Silence:
    """Suppresses notifications of the alerts all its matchers match, in ``[starts_at, ends_at)``."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str = ""
    comment: str = ""

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return bool(self.matchers) and all(m.matches(labels) for m in self.matchers)


def silence_for(labels: Mapping[str, str], silences: Iterable[Silence], now: datetime) -> Silence | None:
    """The first active silence matching ``labels``."""
    return next((s for s in silences if s.active(now) and s.matches(labels)), None)


@dataclass(frozen=True)
class Notification:
    """A transition to tell people about; ``alert`` is the state after it."""

    kind: NotificationKind
    alert: AlertState
    repeat: bool = False


class Evaluation(NamedTuple):
    states: dict[str, AlertState]
    notifications: tuple[Notification, ...]


# ----- rules -----------------------------------------------------------------------------------


@dataclass
class _Found:
    """Conditions found in one pass, and the (cluster, rule) pairs whose input was unknown."""

    conditions: dict[str, Condition] = field(default_factory=dict)
    unknown: set[tuple[str, Rule]] = field(default_factory=set)

    def add(
        self, rule: Rule, cluster: str, extra: Mapping[str, str], severity: Severity, summary: str
    ) -> None:
        labels = {"alertname": rule.value, "cluster": cluster, **extra}
        condition = Condition(rule, labels, severity, summary)
        self.conditions[condition.fingerprint] = condition


_HEALTH_RULES = (Rule.CLUSTER_UNREACHABLE, Rule.APISERVER_ENDPOINT_DOWN)
_INVENTORY_RULES = (
    Rule.NODE_NOT_READY,
    Rule.POD_CRASH_LOOPING,
    Rule.WORKLOAD_UNAVAILABLE,
    Rule.CAPACITY_HIGH,
)


def _detect_health(found: _Found, cluster: str, health: HealthLike, config: AlertRulesConfig) -> None:
    rule = config.cluster_unreachable
    if rule.enabled and not health.up:
        client = health.endpoints[0] if health.endpoints else None
        why = f": {client.error}" if client is not None and client.error else ""
        found.add(
            Rule.CLUSTER_UNREACHABLE, cluster, {}, rule.severity, f"cluster {cluster} is unreachable{why}"
        )
    rule = config.apiserver_endpoint_down
    if not (rule.enabled and health.up):
        if not health.up:  # the cluster itself is down: the members say nothing new
            found.unknown.add((cluster, Rule.APISERVER_ENDPOINT_DOWN))
        return
    for endpoint in health.endpoints:
        if endpoint.kind == "apiserver" and not endpoint.ok:
            found.add(
                Rule.APISERVER_ENDPOINT_DOWN,
                cluster,
                {"endpoint": endpoint.name},
                rule.severity,
                f"API server {endpoint.name} of cluster {cluster} is down"
                + (f": {endpoint.error}" if endpoint.error else ""),
            )


def _detect_inventory(
    found: _Found,
    cluster: str,
    inventory: SnapshotLike,
    pods: Sequence[PodLike] | None,
    config: AlertRulesConfig,
) -> None:
    if config.node_not_ready.enabled:
        for node in inventory.nodes:
            if not node.ready:
                found.add(
                    Rule.NODE_NOT_READY,
                    cluster,
                    {"node": node.name},
                    config.node_not_ready.severity,
                    f"node {node.name} of cluster {cluster} is not Ready",
                )
    pod_rule = config.pod_crash_looping
    if pod_rule.enabled:
        if pods is not None:
            for pod in pods:
                if (
                    pod.waiting_reason == CRASH_LOOP_REASON
                    and pod.restarts >= pod_rule.min_restarts
                    and pod.namespace not in pod_rule.excluded_namespaces
                ):
                    found.add(
                        Rule.POD_CRASH_LOOPING,
                        cluster,
                        {"namespace": pod.namespace, "pod": pod.name},
                        pod_rule.severity,
                        f"pod {pod.namespace}/{pod.name} in cluster {cluster} is crash-looping "
                        f"({pod.restarts} restarts)",
                    )
        elif (count := inventory.pods_waiting.get(CRASH_LOOP_REASON, 0)) > 0:
            found.add(
                Rule.POD_CRASH_LOOPING,
                cluster,
                {},
                pod_rule.severity,
                f"{count} pod(s) in cluster {cluster} are crash-looping",
            )
    workload_rule = config.workload_unavailable
    if workload_rule.enabled:
        for w in inventory.workloads:
            missing = w.desired - w.available
            if (
                missing >= workload_rule.min_unavailable
                and w.namespace not in workload_rule.excluded_namespaces
            ):
                found.add(
                    Rule.WORKLOAD_UNAVAILABLE,
                    cluster,
                    {"namespace": w.namespace, "kind": str(w.kind), "name": w.name},
                    workload_rule.severity,
                    f"{w.kind} {w.namespace}/{w.name} in cluster {cluster} has {w.available} of "
                    f"{w.desired} replicas available",
                )


def _detect_capacity(found: _Found, cluster: str, inventory: SnapshotLike, config: AlertRulesConfig) -> None:
    rule = config.capacity_high
    if not rule.enabled:
        return
    condition = capacity.detect_capacity_high(
        capacity.Resources(inventory.allocatable.cpu_millicores, inventory.allocatable.memory_bytes),
        capacity.Resources(inventory.requested.cpu_millicores, inventory.requested.memory_bytes),
        threshold=rule.threshold,
    )
    if condition.status == "True":
        found.add(Rule.CAPACITY_HIGH, cluster, {}, rule.severity, f"cluster {cluster}: {condition.message}")


def _detect_certificates(
    found: _Found, cluster: str, certificates: Mapping[str, datetime], now: datetime, config: AlertRulesConfig
) -> None:
    rule = config.certificate_expiring_soon
    if not rule.enabled:
        return
    for path, not_after in sorted(certificates.items()):
        left = not_after - now
        if left > timedelta(days=rule.warning_days):
            continue
        severity = Severity.CRITICAL if left <= timedelta(days=rule.critical_days) else rule.severity
        when = (
            f"expired {_days(-left)} ago ({not_after:%Y-%m-%d %H:%M} UTC)"
            if left <= timedelta(0)
            else f"expires in {_days(left)} ({not_after:%Y-%m-%d %H:%M} UTC)"
        )
        found.add(
            Rule.CERTIFICATE_EXPIRING_SOON,
            cluster,
            {"certificate": path},
            severity,
            f"certificate {path} of cluster {cluster} {when}",
        )


def _days(length: timedelta) -> str:
    days = length.total_seconds() / 86400
    return f"{days:.1f} days" if days >= 1 else f"{length.total_seconds() / 3600:.1f} hours"


def _detect_burn(found: _Found, cluster: str, report: ReportLike, config: AlertRulesConfig) -> None:
    rule = config.slo_burn_rate_high
    if not rule.enabled:
        return
    for alert in report.firing:
        if rule.windows and alert.rule.name not in rule.windows:
            continue
        found.add(
            Rule.SLO_BURN_RATE_HIGH,
            cluster,
            {"window": alert.rule.name},
            rule.severity,
            f"cluster {cluster} burns its {report.slo:.3%} SLO error budget at "
            f"{alert.long_burn or 0:.1f}x over {_span(alert.rule.long_window)} and "
            f"{alert.short_burn or 0:.1f}x over {_span(alert.rule.short_window)} "
            f"(threshold {alert.rule.factor:g}x)",
        )


def _span(length: timedelta) -> str:
    seconds = int(length.total_seconds())
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


def detect_conditions(
    observations: Iterable[ClusterObservation], now: datetime, config: AlertRulesConfig
) -> _Found:
    """Every rule over every observation: the true conditions and the unknown (cluster, rule) pairs."""
    found = _Found()
    for obs in observations:
        cluster = obs.cluster
        if obs.health is None:
            found.unknown.update((cluster, r) for r in _HEALTH_RULES)
        else:
            _detect_health(found, cluster, obs.health, config)
        cluster_down = obs.health is not None and not obs.health.up
        inventory = obs.inventory
        if inventory is None or not inventory.synced or not inventory.connected or cluster_down:
            found.unknown.update((cluster, r) for r in _INVENTORY_RULES)
        else:
            _detect_inventory(found, cluster, inventory, obs.pods, config)
            _detect_capacity(found, cluster, inventory, config)
        if obs.certificates is None:
            found.unknown.add((cluster, Rule.CERTIFICATE_EXPIRING_SOON))
        else:
            _detect_certificates(found, cluster, obs.certificates, now, config)
        if obs.sla is None:
            found.unknown.add((cluster, Rule.SLO_BURN_RATE_HIGH))
        else:
            _detect_burn(found, cluster, obs.sla, config)
    return found


# ----- lifecycle -------------------------------------------------------------------------------


def _elapsed(since: datetime | None, now: datetime) -> float:
    return float("inf") if since is None else (now - since).total_seconds()


def _notify_firing(
    state: AlertState, now: datetime, config: AlertRulesConfig
) -> tuple[AlertState, Notification | None]:
    """Decide whether a firing alert is (re)notified now; mark it notified if so."""
    if state.silenced_by is not None or state.acknowledged:
        return state, None
    repeat = state.notified is NotificationKind.FIRING
    if repeat and (
        config.repeat_interval_seconds is None
        or _elapsed(state.last_notified_at, now) < config.repeat_interval_seconds
    ):
        return state, None
    state = replace(state, notified=NotificationKind.FIRING, last_notified_at=now)
    return state, Notification(NotificationKind.FIRING, state, repeat=repeat)


def _advance_true(
    previous: AlertState | None,
    condition: Condition,
    now: datetime,
    config: AlertRulesConfig,
    silence: Silence | None,
) -> tuple[AlertState, Notification | None]:
    """The condition holds: start, keep pending, fire, or keep firing."""
    silenced_by = silence.id if silence is not None else None
    if previous is None or previous.status is AlertStatus.RESOLVED:
        state = AlertState(
            fingerprint=condition.fingerprint,
            rule=condition.rule,
            labels=dict(condition.labels),
            severity=condition.severity,
            status=AlertStatus.PENDING,
            summary=condition.summary,
            started_at=now,
            last_seen_at=now,
            silenced_by=silenced_by,
        )
    else:
        state = replace(
            previous,
            summary=condition.summary,
            severity=condition.severity,
            last_seen_at=now,
            silenced_by=silenced_by,
        )
    if state.status is AlertStatus.PENDING:
        if _elapsed(state.started_at, now) < config.rule(condition.rule).for_seconds:
            return state, None
        state = replace(state, status=AlertStatus.FIRING, fired_at=now)
    return _notify_firing(state, now, config)


def _advance_false(
    previous: AlertState, now: datetime, config: AlertRulesConfig, silence: Silence | None
) -> tuple[AlertState | None, Notification | None]:
    """The condition is gone: drop a pending alert, resolve a firing one, expire a resolved one."""
    if previous.status is AlertStatus.PENDING:
        return None, None
    if previous.status is AlertStatus.RESOLVED:
        if _elapsed(previous.resolved_at, now) > config.resolved_retention_seconds:
            return None, None
        return previous, None
    silenced_by = silence.id if silence is not None else None
    if _elapsed(previous.last_seen_at, now) < config.rule(previous.rule).keep_firing_seconds:
        return _notify_firing(replace(previous, silenced_by=silenced_by), now, config)
    state = replace(previous, status=AlertStatus.RESOLVED, resolved_at=now, silenced_by=silenced_by)
    if previous.notified is not NotificationKind.FIRING:
        return state, None  # never announced: nothing to take back
    state = replace(state, notified=NotificationKind.RESOLVED, last_notified_at=now)
    return state, Notification(NotificationKind.RESOLVED, state)


def evaluate(
    previous: Mapping[str, AlertState],
    observations: Sequence[ClusterObservation],
    now: datetime,
    config: AlertRulesConfig | None = None,
    silences: Sequence[Silence] = (),
) -> Evaluation:
    """One pass: the new state of every alert, and the notifications to send (firing, resolved).

    ``previous`` maps fingerprints to the states of the last pass (``restore`` of the
    stored records). Deterministic: the same inputs give the same outputs.
    """
    config = config or AlertRulesConfig()
    found = detect_conditions(observations, now, config)
    observed_clusters = {obs.cluster for obs in observations}
    states: dict[str, AlertState] = {}
    notifications: list[Notification] = []

    for fp, condition in found.conditions.items():
        silence = silence_for(condition.labels, silences, now)
        state, note = _advance_true(previous.get(fp), condition, now, config, silence)
        states[fp] = state
        if note is not None:
            notifications.append(note)

    for fp, old in previous.items():
        if fp in states:
            continue
        enabled = config.rule(old.rule).enabled
        if enabled and old.cluster in observed_clusters and (old.cluster, old.rule) in found.unknown:
            states[fp] = old  # unknown is not false: carry over untouched
            continue
        silence = silence_for(old.labels, silences, now)
        new_state, note = _advance_false(old, now, config, silence)
        if new_state is not None:
            states[fp] = new_state
        if note is not None:
            notifications.append(note)

    notifications.sort(key=lambda n: (n.kind != NotificationKind.RESOLVED, n.alert.cluster, n.alert.rule))
    return Evaluation(states, tuple(notifications))


def acknowledge(state: AlertState, by: str, now: datetime) -> AlertState:
    """Acknowledge an active alert: no more notices for it until it resolves."""
    if not state.status.active:
        raise errors.InvalidInput(
            f"alert {state.fingerprint} is resolved; there is nothing to acknowledge",
            hint="list active alerts with `pilothouse alerts list`",
        )
    return replace(state, acked_by=by, acked_at=now)


def refresh_notices(states: Mapping[str, AlertState]) -> tuple[Notification, ...]:
    """Repeat notices for every firing alert already announced, acknowledged or not.

    For receivers that expire alerts they stop hearing about: Alertmanager resolves an
    alert without ``endsAt`` after its ``resolve_timeout`` (5 minutes by default), so the
    alert pass re-sends these to Alertmanager channels every pass, as Prometheus does.
    Alertmanager de-duplicates them; people are not notified again.
    """
    return tuple(
        Notification(NotificationKind.FIRING, s, repeat=True)
        for s in sorted(states.values(), key=lambda s: (s.cluster, s.rule, s.fingerprint))
        if s.status is AlertStatus.FIRING and s.notified is NotificationKind.FIRING
    )
