"""Capacity, CapacityHigh and cost allocation (``fleet.capacity``), from plain summaries."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse import errors
from pilothouse.fleet import capacity
from pilothouse.fleet.capacity import GroupBy, PriceTable, Resources
from pilothouse.kube.summaries import NamespaceSummary, NodeSummary, PodSummary

GI = 1024**3
MI = 1024**2


def node(name: str, cpu: int = 4000, memory: int = 8 * GI, instance_type: str = "") -> NodeSummary:
    return NodeSummary(
        name=name,
        ready=True,
        unschedulable=False,
        kubelet_version="v1.36.3",
        cpu_millicores=cpu,
        memory_bytes=memory,
        pods=110,
        instance_type=instance_type,
        conditions=(("Ready", "True"),),
    )


def pod(
    namespace: str,
    name: str,
    cpu: int = 0,
    memory: int = 0,
    *,
    node_name: str = "n1",
    phase: str = "Running",
    cpu_limit: int = 0,
    memory_limit: int = 0,
) -> PodSummary:
    return PodSummary(
        namespace=namespace,
        name=name,
        node=node_name,
        phase=phase,
        ready=phase == "Running",
        terminating=False,
        restarts=0,
        waiting_reason="",
        owner_kind="ReplicaSet",
        owner_name="rs",
        cpu_request_millicores=cpu,
        memory_request_bytes=memory,
        cpu_limit_millicores=cpu_limit,
        memory_limit_bytes=memory_limit,
    )


def namespace(name: str, **labels: str) -> NamespaceSummary:
    return NamespaceSummary(name=name, phase="Active", labels=tuple(sorted(labels.items())))


# ----- requests, limits, idle ------------------------------------------------------------------


def test_requests_limits_and_idle_per_cluster_and_namespace() -> None:
    report = capacity.compute_capacity(
        "c1",
        nodes=[node("n1"), node("n2")],
        pods=[
            pod("a", "a-1", 500, 256 * MI, cpu_limit=1000, memory_limit=512 * MI),
            pod("a", "a-2", 500, 256 * MI, node_name="n2", cpu_limit=1000, memory_limit=512 * MI),
            pod("b", "b-1", 1000, GI),
            pod("b", "done", 4000, 4 * GI, phase="Succeeded"),  # finished: holds nothing
            pod("b", "failed", 4000, 4 * GI, phase="Failed"),
            pod("c", "pending", 300, 100 * MI, node_name="", phase="Pending"),  # unscheduled
        ],
    )
    assert report.nodes == 2
    assert report.pods == 3
    assert report.allocatable == Resources(8000, 16 * GI)
    assert report.requested == Resources(2000, 1536 * MI)
    assert report.limits == Resources(2000, 1024 * MI)
    assert report.idle == Resources(6000, 16 * GI - 1536 * MI)
    assert (report.cpu_ratio, report.memory_ratio) == (0.25, 0.0938)  # 1.5/16 = 0.09375, half to even
    assert (report.cpu_limit_ratio, report.memory_limit_ratio) == (0.25, 0.0625)
    assert report.unscheduled_pods == 1
    assert report.unscheduled_requests == Resources(300, 100 * MI)
    assert report.capacity_high.status == "False"
    a, b = report.group("a"), report.group("b")
    assert a is not None
    assert b is not None
    assert (a.pods, a.requested, a.limits, a.namespaces) == (
        2,
        Resources(1000, 512 * MI),
        Resources(2000, GI),
        ("a",),
    )
    assert (b.pods, b.requested, b.cpu_share, b.memory_share) == (1, Resources(1000, GI), 0.125, 0.0625)
    assert report.group("c") is None  # only unscheduled pods
    assert [g.name for g in report.groups] == ["b", "a"]  # most expensive first


def test_an_empty_cluster() -> None:
    report = capacity.compute_capacity("empty", nodes=[], pods=[])
    assert report.allocatable == Resources() == report.requested == report.idle
    assert report.cpu_ratio is None
    assert report.memory_ratio is None
    assert report.capacity_high.status == "False"
    assert report.cost_per_hour == report.idle_cost_per_hour == Decimal(0)
    assert report.groups == ()


# ----- CapacityHigh ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "memory", "threshold", "high"),
    [
        (790, 0, 0.8, False),
        (800, 0, 0.8, False),  # exactly at the threshold: not over it
        (801, 0, 0.8, True),
        (0, 801 * MI, 0.8, True),  # memory alone
        (900, 0, 0.9, False),
        (901, 0, 0.9, True),
        (1000, 1000 * MI, 1.0, False),
        (500, 0, 0.5, False),
        (501, 0, 0.5, True),
    ],
)
def test_capacity_high_when_requests_exceed_the_threshold(
    cpu: int, memory: int, threshold: float, high: bool
) -> None:
    report = capacity.compute_capacity(
        "c", nodes=[node("n1", 1000, 1000 * MI)], pods=[pod("a", "p", cpu, memory)], threshold=threshold
    )
    condition = report.capacity_high
    assert condition.type == "CapacityHigh"
    assert condition.status == ("True" if high else "False")
    assert condition.reason == ("RequestsOverThreshold" if high else "RequestsWithinThreshold")


def test_capacity_high_names_each_resource_over() -> None:
    condition = capacity.detect_capacity_high(Resources(1000, 1000), Resources(950, 850))
    assert condition.status == "True"
    assert condition.message == (
        "cpu requests are 95.0% of allocatable; memory requests are 85.0% of allocatable (threshold 80%)"
    )


def test_requests_on_nothing_allocatable_are_high() -> None:
    assert capacity.detect_capacity_high(Resources(0, 0), Resources(1, 0)).status == "True"


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.01])
def test_the_threshold_is_a_share(threshold: float) -> None:
    with pytest.raises(errors.InvalidInput):
        capacity.compute_capacity("c", nodes=[], pods=[], threshold=threshold)


# ----- teams -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("team", {"payments": ("checkout", "ledger"), "search": ("index",), capacity.NO_TEAM: ("misc",)}),
        ("owner", {"alice": ("checkout",), capacity.NO_TEAM: ("index", "ledger", "misc")}),
    ],
)
def test_group_by_team_label(label: str, expected: dict[str, tuple[str, ...]]) -> None:
    report = capacity.compute_capacity(
        "c",
        nodes=[node("n1")],
        namespaces=[
            namespace("checkout", team="payments", owner="alice"),
            namespace("ledger", team="payments"),
            namespace("index", team="search"),
            namespace("misc"),
        ],
        pods=[
            pod("checkout", "p1", 100, MI),
            pod("ledger", "p2", 200, MI),
            pod("index", "p3", 300, MI),
            pod("misc", "p4", 400, MI),
            pod("gone", "p5", 500, MI),  # namespace not (yet) in the cache: no team
        ],
        group_by=GroupBy.TEAM,
        team_label=label,
    )
    groups = {g.name: g.namespaces for g in report.groups}
    none = expected.pop(capacity.NO_TEAM)
    assert groups.pop(capacity.NO_TEAM) == tuple(sorted((*none, "gone")))
    assert groups == expected
    assert sum(g.requested.cpu_millicores for g in report.groups) == 1500


# ----- cost ------------------------------------------------------------------------------------


def test_cost_per_cpu_hour_and_gib_hour() -> None:
    prices = PriceTable(cpu_hour=Decimal(1), gib_hour=Decimal("0.5"))
    report = capacity.compute_capacity(
        "c",
        nodes=[node("n1", 2000, 4 * GI)],  # 2 + 2 = 4 per hour
        pods=[pod("a", "p1", 500, GI), pod("b", "p2", 1000, 0)],
        prices=prices,
    )
    assert report.cost_per_hour == Decimal("4.0000")
    # a: 1/4 of the CPU (2/h) + 1/4 of the memory (2/h) = 1; b: 1/2 of the CPU = 1
    assert {g.name: g.cost_per_hour for g in report.groups} == {
        "a": Decimal("1.0000"),
        "b": Decimal("1.0000"),
    }
    assert report.idle_cost_per_hour == Decimal("2.0000")
    assert report.currency == "USD"


def test_cost_per_instance_type_is_split_by_the_resource_rates() -> None:
    prices = PriceTable(cpu_hour=Decimal(3), gib_hour=Decimal(1), instance_types={"m.large": Decimal("0.1")})
    report = capacity.compute_capacity(
        "c",
        nodes=[node("n1", 1000, GI, "m.large"), node("n2", 1000, GI, "other")],  # 0.1 + (3 + 1)
        pods=[pod("a", "p1", 1000, 0, node_name="n1")],
        prices=prices,
    )
    # CPU parts: 0.075 (3/4 of 0.1) + 3; a requests half the CPU
    assert report.cost_per_hour == Decimal("4.1000")
    assert report.groups[0].cost_per_hour == Decimal("1.5375")
    assert report.idle_cost_per_hour == Decimal("2.5625")


def test_an_instance_price_with_zero_resource_rates_is_split_in_half() -> None:
    prices = PriceTable(cpu_hour=Decimal(0), gib_hour=Decimal(0), instance_types={"t": Decimal(2)})
    assert prices.node_price(node("n", instance_type="t")) == (Fraction(1), Fraction(1))
    assert prices.node_price(node("n", instance_type="unlisted")) == (Fraction(0), Fraction(0))


def test_overcommitted_requests_share_the_whole_cost_and_leave_none_idle() -> None:
    prices = PriceTable(cpu_hour=Decimal(1), gib_hour=Decimal(0))
    report = capacity.compute_capacity(
        "c", nodes=[node("n1", 1000, GI)], pods=[pod("a", "p", 1500, 0), pod("b", "q", 500, 0)], prices=prices
    )
    assert report.cpu_ratio == 2.0
    assert report.idle == Resources(0, GI)
    assert report.idle_cost_per_hour == Decimal(0)
    assert {g.name: g.cost_per_hour for g in report.groups} == {
        "a": Decimal("0.7500"),
        "b": Decimal("0.2500"),
    }


def test_rounding_keeps_the_parts_adding_up() -> None:
    prices = PriceTable(cpu_hour=Decimal(1), gib_hour=Decimal(0))
    report = capacity.compute_capacity(
        "c",
        nodes=[node("n1", 3000, GI)],
        pods=[pod(ns, ns, 1000, 0) for ns in ("a", "b", "c")],
        prices=prices,
    )
    # each exactly 1.0; with 1/3 shares the largest remainder keeps the sum
    assert sum(g.cost_per_hour for g in report.groups) + report.idle_cost_per_hour == report.cost_per_hour
    thirds = capacity.apportion(Fraction(1), {"a": Fraction(1, 3), "b": Fraction(1, 3), "c": Fraction(1, 3)})
    assert thirds == {"a": Decimal("0.3334"), "b": Decimal("0.3333"), "c": Decimal("0.3333")}


@pytest.mark.parametrize(
    ("total", "shares", "expected"),
    [
        (Fraction(0), {"a": Fraction(0)}, {"a": Decimal(0)}),
        (Fraction(1, 20000), {"a": Fraction(1, 20000)}, {"a": Decimal(0)}),  # 0.00005 rounds half to even: 0
        (Fraction(3, 20000), {"a": Fraction(3, 20000)}, {"a": Decimal("0.0002")}),
        (
            Fraction(2, 3),
            {"b": Fraction(1, 3), "a": Fraction(1, 3)},
            {"a": Decimal("0.3334"), "b": Decimal("0.3333")},
        ),
    ],
)
def test_apportion(total: Fraction, shares: dict[str, Fraction], expected: dict[str, Decimal]) -> None:
    assert capacity.apportion(total, shares) == expected


nodes_strategy = st.lists(
    st.builds(
        node,
        name=st.text("abcdef", min_size=1, max_size=4),
        cpu=st.integers(0, 64_000),
        memory=st.integers(0, 256 * GI),
        instance_type=st.sampled_from(["", "small", "large", "unlisted"]),
    ),
    max_size=6,
)
pods_strategy = st.lists(
    st.builds(
        pod,
        namespace=st.sampled_from(["a", "b", "c", "d"]),
        name=st.text("xyz", min_size=1, max_size=3),
        cpu=st.integers(0, 8_000),
        memory=st.integers(0, 16 * GI),
        node_name=st.sampled_from(["", "n1", "n2"]),
        phase=st.sampled_from(["Running", "Pending", "Succeeded", "Failed", "Unknown"]),
        cpu_limit=st.integers(0, 8_000),
        memory_limit=st.integers(0, 16 * GI),
    ),
    max_size=30,
)
prices_strategy = st.builds(
    PriceTable,
    cpu_hour=st.decimals(0, 10, places=4),
    gib_hour=st.decimals(0, 10, places=4),
    instance_types=st.fixed_dictionaries(
        {"small": st.decimals(0, 5, places=3), "large": st.decimals(0, 50, places=3)}
    ),
)


@settings(max_examples=200, deadline=None)
@given(nodes=nodes_strategy, pods=pods_strategy, prices=prices_strategy, by=st.sampled_from(list(GroupBy)))
def test_invariants(
    nodes: list[NodeSummary], pods: list[PodSummary], prices: PriceTable, by: GroupBy
) -> None:
    namespaces = [namespace("a", team="x"), namespace("b", team="x"), namespace("c", team="y")]
    report = capacity.compute_capacity(
        "c", nodes=nodes, pods=pods, namespaces=namespaces, prices=prices, group_by=by
    )
    # the rounded parts add up to the rounded total, none negative
    assert sum(g.cost_per_hour for g in report.groups) + report.idle_cost_per_hour == report.cost_per_hour
    assert all(g.cost_per_hour >= 0 for g in report.groups)
    assert report.idle_cost_per_hour >= 0
    assert report.cost_per_hour.as_tuple().exponent == -4
    # groups partition the counted pods
    assert sum(g.pods for g in report.groups) == report.pods
    assert sum((g.requested for g in report.groups), Resources()) == report.requested
    assert report.idle.cpu_millicores == max(
        0, report.allocatable.cpu_millicores - report.requested.cpu_millicores
    )
    # deterministic and independent of order
    shuffled = list(pods)
    random.Random(0).shuffle(shuffled)
    again = capacity.compute_capacity(
        "c", nodes=list(reversed(nodes)), pods=shuffled, namespaces=namespaces, prices=prices, group_by=by
    )
    assert again == report


# ----- the price table -------------------------------------------------------------------------


def test_price_table_from_yaml() -> None:
    table = capacity.parse_price_table(
        "currency: EUR\ncpu_hour: 0.04\ngib_hour: 0.005\ninstance_types:\n  kwok.standard: 1.25\n"
    )
    assert table == PriceTable(
        currency="EUR",
        cpu_hour=Decimal("0.04"),
        gib_hour=Decimal("0.005"),
        instance_types={"kwok.standard": Decimal("1.25")},
    )


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_price_table_is_the_defaults(text: str) -> None:
    assert capacity.parse_price_table(text) == PriceTable()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cpu_hour: -1\n", "cpu_hour"),
        ("cpu_hour: lots\n", "cpu_hour"),
        ("cpu_hours: 1\n", "cpu_hours"),  # a typo is not ignored
        ("instance_types: {m5.large: -2}\n", "instance_types"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("cpu_hour: [\n", "not valid YAML"),
    ],
)
def test_a_bad_price_table_is_rejected(text: str, fragment: str) -> None:
    with pytest.raises(errors.InvalidInput, match=r"prices\.yaml") as caught:
        capacity.parse_price_table(text, source="prices.yaml")
    assert fragment in caught.value.message
