"""Capacity and cost of a cluster: requests and limits against allocatable, idle capacity,
the CapacityHigh condition, and cost allocation from a price table.

Pure: plain data in, plain data out, no I/O and no clock. The inputs are the
cached summaries of the live inventory (``kube.summaries.NodeSummary``,
``PodSummary``, ``NamespaceSummary``), read through the small protocols below
so this module imports no adapter. ``api/capacity.py`` and ``cli/capacity.py``
hand it a cluster's cache and render the result; the CapacityHigh alert rule
reads ``ClusterCapacity.capacity_high``.

The model, written down because every number depends on it:

- **Allocatable** is the sum over every node in the cache (cordoned and NotReady
  nodes too: they are still paid for).
- **Requested** counts the pods the scheduler has bound to a node that are not
  finished (phase neither Succeeded nor Failed), terminating ones included: that
  is what holds allocatable. Unscheduled pods are reported apart
  (``unscheduled_pods`` / ``unscheduled_requests``) and count in no ratio.
- **Limits** are the summed limits of the containers that set one; a container
  without a limit adds nothing (the summaries cannot tell "no limit" from
  "limit 0"), so a limits total is a lower bound.
- **Idle** capacity is allocatable - requested, never below zero.
- **CapacityHigh** is true when requested CPU or memory exceeds ``threshold``
  (default 80 %) of allocatable, or anything is requested of nothing.
- **Groups** are namespaces, or teams: the value of a namespace's ``team`` label
  (``team_label``); namespaces without the label form the group ``(none)``
  (label values cannot contain parentheses, so it never clashes).
- **Cost** per hour of a node is its instance type's price if the table has one,
  else CPU-hour price * cores + GiB-hour price * GiB. A node's cost is split into a CPU
  part and a memory part in proportion to those two per-resource rates (half
  and half when both rates are zero). A group pays its share of the requested
  CPU and memory of each part (share = its requests / allocatable, or / total
  requests when requests exceed allocatable); what nobody requested is the
  **idle** cost. Arithmetic is exact (``Fraction``); the total is rounded half
  to even to ``COST_QUANTUM`` and split over the groups and idle by largest
  remainder (ties by name), so the rounded parts always add up to the total.
  Ratios are rounded half to even to four decimals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pilothouse import errors

DEFAULT_THRESHOLD = 0.8
DEFAULT_TEAM_LABEL = "team"
NO_TEAM = "(none)"
COST_QUANTUM = Decimal("0.0001")
RATIO_DIGITS = 4
GIB = 1024**3
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
IDLE = "(idle)"  # only a key inside the apportioning; never a group name
CAPACITY_HIGH = "CapacityHigh"


# ----- inputs ----------------------------------------------------------------------------------


class NodeLike(Protocol):
    """What is read from a node; ``kube.summaries.NodeSummary`` is one."""

    @property
    def name(self) -> str: ...
    @property
    def cpu_millicores(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def instance_type(self) -> str: ...


class PodLike(Protocol):
    """What is read from a pod; ``kube.summaries.PodSummary`` is one."""

    @property
    def namespace(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def phase(self) -> str: ...
    @property
    def cpu_request_millicores(self) -> int: ...
    @property
    def memory_request_bytes(self) -> int: ...
    @property
    def cpu_limit_millicores(self) -> int: ...
    @property
    def memory_limit_bytes(self) -> int: ...


class NamespaceLike(Protocol):
    """What is read from a namespace; ``kube.summaries.NamespaceSummary`` is one."""

    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> tuple[tuple[str, str], ...]: ...


class GroupBy(StrEnum):
    NAMESPACE = "namespace"
    TEAM = "team"


class PriceTable(BaseModel):
    """Prices per hour, in ``currency``. The defaults are illustrative on-demand prices, not a quote.

    ``instance_types`` maps a node's ``node.kubernetes.io/instance-type`` to its price per node
    per hour; other nodes are priced per CPU-hour and GiB-hour.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = "USD"
    cpu_hour: Decimal = Field(default=Decimal("0.0316"), ge=0)
    gib_hour: Decimal = Field(default=Decimal("0.0042"), ge=0)
    instance_types: dict[str, Annotated[Decimal, Field(ge=0)]] = Field(default_factory=dict)

    def node_price(self, node: NodeLike) -> tuple[Fraction, Fraction]:
        """The (CPU part, memory part) of a node's price per hour; see the module docstring."""
        cpu_rate = Fraction(self.cpu_hour) * Fraction(node.cpu_millicores, 1000)
        memory_rate = Fraction(self.gib_hour) * Fraction(node.memory_bytes, GIB)
        listed = self.instance_types.get(node.instance_type) if node.instance_type else None
        if listed is None:
            return cpu_rate, memory_rate
        price = Fraction(listed)
        rates = cpu_rate + memory_rate
        cpu_part = price / 2 if rates == 0 else price * cpu_rate / rates
        return cpu_part, price - cpu_part


def parse_price_table(text: str, *, source: str = "the price table") -> PriceTable:
    """A ``PriceTable`` from YAML text (an empty document gives the defaults)."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.InvalidInput(f"{source} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise errors.InvalidInput(f"{source} must be a mapping", hint=_PRICE_HINT)
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise errors.InvalidInput(f"{source} is invalid: {problems}", hint=_PRICE_HINT) from None


_PRICE_HINT = (
    "keys: currency, cpu_hour, gib_hour, instance_types: {TYPE: price per node-hour}; prices are >= 0"
)


# ----- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resources:
    cpu_millicores: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millicores + other.cpu_millicores, self.memory_bytes + other.memory_bytes)


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition in the Kubernetes style: ``status`` is "True" or "False"."""

    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class GroupCapacity:
    """One namespace or team: its requests, limits, share of allocatable and cost per hour."""

    name: str
    namespaces: tuple[str, ...]
    pods: int
    requested: Resources
    limits: Resources
    cpu_share: float | None  # requested / cluster allocatable (None: nothing allocatable)
    memory_share: float | None
    cost_per_hour: Decimal


@dataclass(frozen=True, slots=True)
class ClusterCapacity:
    """Capacity and cost of one cluster, grouped by ``group_by``."""

    cluster: str
    group_by: GroupBy
    threshold: float
    nodes: int
    pods: int  # bound and not finished: the ones counted in requested
    allocatable: Resources
    requested: Resources
    limits: Resources
    idle: Resources
    cpu_ratio: float | None  # requested / allocatable (None: nothing allocatable)
    memory_ratio: float | None
    cpu_limit_ratio: float | None
    memory_limit_ratio: float | None
    unscheduled_pods: int
    unscheduled_requests: Resources
    capacity_high: Condition
    currency: str
    cost_per_hour: Decimal
    idle_cost_per_hour: Decimal
    groups: tuple[GroupCapacity, ...]

    def group(self, name: str) -> GroupCapacity | None:
        return next((g for g in self.groups if g.name == name), None)


# ----- computation -----------------------------------------------------------------------------


def team_of(namespace: NamespaceLike | None, *, label: str = DEFAULT_TEAM_LABEL) -> str:
    """The team a namespace belongs to: its ``label`` value, else ``NO_TEAM``."""
    if namespace is None:
        return NO_TEAM
    return dict(namespace.labels).get(label) or NO_TEAM


def ratio(part: int, whole: int) -> float | None:
    """``part / whole`` rounded half to even to ``RATIO_DIGITS``; None when ``whole`` is 0."""
    if whole <= 0:
        return None
    return float(round(Fraction(part, whole), RATIO_DIGITS))


def holds_allocatable(pod: PodLike) -> bool:
    """Whether ``pod`` counts in Requested: bound to a node and not finished."""
    return bool(pod.node) and pod.phase not in FINISHED_PHASES


def allocatable_of(nodes: Iterable[NodeLike]) -> Resources:
    """Allocatable summed over ``nodes`` (cordoned and NotReady ones too)."""
    total = Resources()
    for node in nodes:
        total += Resources(node.cpu_millicores, node.memory_bytes)
    return total


def requests_of(pod: PodLike) -> Resources:
    return Resources(pod.cpu_request_millicores, pod.memory_request_bytes)


def compute_capacity(
    cluster: str,
    *,
    nodes: Iterable[NodeLike],
    pods: Iterable[PodLike],
    namespaces: Iterable[NamespaceLike] = (),
    prices: PriceTable | None = None,
    group_by: GroupBy = GroupBy.NAMESPACE,
    threshold: float = DEFAULT_THRESHOLD,
    team_label: str = DEFAULT_TEAM_LABEL,
) -> ClusterCapacity:
    """Capacity, the CapacityHigh condition and cost of one cluster; see the module docstring."""
    if not 0 < threshold <= 1:
        raise errors.InvalidInput(f"the capacity threshold must be in (0, 1], not {threshold}")
    prices = prices or PriceTable()
    node_list = list(nodes)
    by_namespace = {ns.name: ns for ns in namespaces}

    allocatable = allocatable_of(node_list)
    requested = limits = unscheduled = Resources()
    counted = unscheduled_pods = 0
    group_requests: dict[str, Resources] = {}
    group_limits: dict[str, Resources] = {}
    group_pods: dict[str, int] = {}
    group_namespaces: dict[str, set[str]] = {}
    for pod in pods:
        if pod.phase in FINISHED_PHASES:
            continue
        request = requests_of(pod)
        if not holds_allocatable(pod):
            unscheduled_pods += 1
            unscheduled += request
            continue
        limit = Resources(pod.cpu_limit_millicores, pod.memory_limit_bytes)
        counted += 1
        requested += request
        limits += limit
        key = (
            pod.namespace
            if group_by == GroupBy.NAMESPACE
            else team_of(by_namespace.get(pod.namespace), label=team_label)
        )
        group_requests[key] = group_requests.get(key, Resources()) + request
        group_limits[key] = group_limits.get(key, Resources()) + limit
        group_pods[key] = group_pods.get(key, 0) + 1
        group_namespaces.setdefault(key, set()).add(pod.namespace)

    # cost: exact fractions, then one rounding of the total, apportioned
    cpu_cost = memory_cost = Fraction(0)
    for node in node_list:
        cpu_part, memory_part = prices.node_price(node)
        cpu_cost += cpu_part
        memory_cost += memory_part
    cpu_basis = max(allocatable.cpu_millicores, requested.cpu_millicores)
    memory_basis = max(allocatable.memory_bytes, requested.memory_bytes)
    exact: dict[str, Fraction] = {}
    for key, request in group_requests.items():
        share = Fraction(0)
        if cpu_basis:
            share += cpu_cost * Fraction(request.cpu_millicores, cpu_basis)
        if memory_basis:
            share += memory_cost * Fraction(request.memory_bytes, memory_basis)
        exact[key] = share
    total = cpu_cost + memory_cost
    exact[IDLE] = total - sum(exact.values(), Fraction(0))
    costs = apportion(total, exact)

    groups = tuple(
        GroupCapacity(
            name=key,
            namespaces=tuple(sorted(group_namespaces[key])),
            pods=group_pods[key],
            requested=group_requests[key],
            limits=group_limits[key],
            cpu_share=ratio(group_requests[key].cpu_millicores, allocatable.cpu_millicores),
            memory_share=ratio(group_requests[key].memory_bytes, allocatable.memory_bytes),
            cost_per_hour=costs[key],
        )
        for key in sorted(group_requests, key=lambda k: (-costs[k], k))
    )
    return ClusterCapacity(
        cluster=cluster,
        group_by=group_by,
        threshold=threshold,
        nodes=len(node_list),
        pods=counted,
        allocatable=allocatable,
        requested=requested,
        limits=limits,
        idle=Resources(
            max(0, allocatable.cpu_millicores - requested.cpu_millicores),
            max(0, allocatable.memory_bytes - requested.memory_bytes),
        ),
        cpu_ratio=ratio(requested.cpu_millicores, allocatable.cpu_millicores),
        memory_ratio=ratio(requested.memory_bytes, allocatable.memory_bytes),
        cpu_limit_ratio=ratio(limits.cpu_millicores, allocatable.cpu_millicores),
        memory_limit_ratio=ratio(limits.memory_bytes, allocatable.memory_bytes),
        unscheduled_pods=unscheduled_pods,
        unscheduled_requests=unscheduled,
        capacity_high=detect_capacity_high(allocatable, requested, threshold=threshold),
        currency=prices.currency,
        cost_per_hour=_quantize(total),
        idle_cost_per_hour=costs[IDLE],
        groups=groups,
    )


def detect_capacity_high(
    allocatable: Resources, requested: Resources, *, threshold: float = DEFAULT_THRESHOLD
) -> Condition:
    """CapacityHigh: requested CPU or memory over ``threshold`` of allocatable."""
    limit = Fraction(threshold)
    over = []
    for resource, want, have in (
        ("cpu", requested.cpu_millicores, allocatable.cpu_millicores),
        ("memory", requested.memory_bytes, allocatable.memory_bytes),
    ):
        if (have <= 0 and want > 0) or (have > 0 and Fraction(want, have) > limit):
            share = "everything" if have <= 0 else f"{float(Fraction(want, have)):.1%}"
            over.append(f"{resource} requests are {share} of allocatable")
    if over:
        return Condition(
            CAPACITY_HIGH, "True", "RequestsOverThreshold", f"{'; '.join(over)} (threshold {threshold:.0%})"
        )
    return Condition(CAPACITY_HIGH, "False", "RequestsWithinThreshold", f"at most {threshold:.0%} requested")


def apportion(total: Fraction, shares: Mapping[str, Fraction]) -> dict[str, Decimal]:
    """Round ``total`` to ``COST_QUANTUM`` and split it by largest remainder over ``shares``
    (which add up to ``total``, none negative); the rounded parts add up to the rounded total."""
    quantum = Fraction(COST_QUANTUM)
    units = round(total / quantum)  # half to even
    floors = {key: math.floor(max(share, Fraction(0)) / quantum) for key, share in shares.items()}
    left = units - sum(floors.values())
    by_remainder = sorted(shares, key=lambda k: (-(max(shares[k], Fraction(0)) / quantum - floors[k]), k))
    for key in by_remainder[: max(0, left)]:
        floors[key] += 1
    return {key: Decimal(count) * COST_QUANTUM for key, count in floors.items()}


def _quantize(value: Fraction) -> Decimal:
    return Decimal(round(value / Fraction(COST_QUANTUM))) * COST_QUANTUM


def total_over(reports: Sequence[ClusterCapacity]) -> Decimal:
    """The fleet's cost per hour: the sum of the clusters' rounded totals."""
    return sum((r.cost_per_hour for r in reports), Decimal(0))
