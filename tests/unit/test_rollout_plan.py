"""The node-rollout planner on plain data: limits, versions, batches, evictions, gates."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilothouse import errors
from pilothouse.fleet import rollout_plan as rp
from pilothouse.fleet.upgrade_plan import Severity
from pilothouse.kube.drain import BudgetState, Expression, NodeState, PodState, Selector
from pilothouse.kube.summaries import WorkloadKind, WorkloadSummary


def node(name: str, version: str = "v1.35.4", *, unschedulable: bool = False) -> NodeState:
    return NodeState(name, True, unschedulable, version, "", "")


def pod(
    name: str,
    node: str = "n0",
    *,
    app: str = "web",
    namespace: str = "shop",
    owner_kind: str = "ReplicaSet",
    owner_name: str = "web-5d8f7c",
    phase: str = "Running",
    ready: bool = True,
    terminating: bool = False,
    mirror: bool = False,
) -> PodState:
    return PodState(
        namespace=namespace,
        name=name,
        uid=f"uid-{name}",
        node=node,
        labels={"app": app},
        phase=phase,
        ready=ready,
        terminating=terminating,
        owner_kind=owner_kind,
        owner_name=owner_name,
        mirror=mirror,
        waiting_reason="",
    )


def budget(
    name: str,
    allowed: int,
    *,
    app: str | None = None,
    namespace: str = "shop",
    healthy: int = 3,
    required: int = 2,
    processed: bool = True,
    policy: str = "IfHealthyBudget",
    selector: Selector | None = None,
) -> BudgetState:
    return BudgetState(
        namespace=namespace,
        name=name,
        selector=selector or Selector({"app": app or name}, ()),
        min_available=str(required),
        max_unavailable="",
        disruptions_allowed=allowed,
        current_healthy=healthy,
        desired_healthy=required,
        expected_pods=healthy,
        processed=processed,
        unhealthy_pod_eviction_policy=policy,
    )


def workload(
    name: str, desired: int = 3, ready: int | None = None, *, namespace: str = "shop"
) -> WorkloadSummary:
    up = desired if ready is None else ready
    return WorkloadSummary(namespace, name, WorkloadKind.DEPLOYMENT, desired, up, up, up, True)


FACTS = rp.RolloutFacts(
    cluster="prod",
    provider="local",
    phase="Running",
    control_plane="1.36.3",
    supported=("1.33.0", "1.35.4", "1.36.3"),
    desired=4,
    nodes=[node(f"kwok-node-{i:03d}") for i in range(4)],
    name_for=lambda i: f"kwok-node-{i:03d}",
)


def codes(plan: rp.RolloutPlan, severity: Severity) -> list[str]:
    return [f.code for f in plan.findings if f.severity is severity]


# ----- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        (1, 0, 4, (1, 0)),
        ("2", "1", 4, (2, 1)),
        ("25%", "25%", 10, (3, 2)),  # surge rounds up, unavailable down
        ("0", "10%", 10, (0, 1)),
        ("100%", "0%", 5, (5, 0)),
        (" 3 ", "0", 2, (3, 0)),
    ],
)
def test_limits_are_counts_or_percentages_of_the_cluster(
    surge: int | str, unavailable: int | str, desired: int, expected: tuple[int, int]
) -> None:
    limits = rp.resolve_limits(surge, unavailable, desired=desired)
    assert (limits.max_surge, limits.max_unavailable) == expected


@pytest.mark.parametrize(
    ("surge", "unavailable", "message"),
    [
        ("-1", "0", "max-surge must be a whole number"),
        ("abc", "0", "max-surge must be a whole number"),
        ("1.5", "0", "max-surge must be a whole number"),
        ("", "0", "max-surge must be a whole number"),
        ("1", "%", "max-unavailable must be a whole number"),
        ("150%", "0", "more than 100%"),
        ("0", "0", "both come to 0 nodes"),
        ("0%", "10%", "both come to 0 nodes"),  # 10% of 4 rounds down to 0
    ],
)
def test_nonsense_limits_are_refused(surge: str, unavailable: str, message: str) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        rp.resolve_limits(surge, unavailable, desired=4)


# ----- versions and the cluster ----------------------------------------------------------------


def test_the_default_target_is_the_control_plane_and_out_of_date_nodes_go_one_per_batch() -> None:
    plan = rp.plan_rollout(FACTS)

    assert plan.allowed, plan.blockers
    assert plan.target == "1.36.3"
    assert [b.old for b in plan.batches] == [(f"kwok-node-{i:03d}",) for i in range(4)]
    assert [b.surge for b in plan.batches] == [(f"kwok-node-{i:03d}",) for i in range(4, 8)]
    assert [s.name for s in plan.steps] == [
        "preflight",
        "prefer-new",
        "batch-1",
        "batch-2",
        "batch-3",
        "batch-4",
        "verify",
    ]
    assert plan.to_dict()["allowed"] is True


def test_only_nodes_on_another_version_are_replaced_unless_all() -> None:
    facts = replace(FACTS, nodes=[node("kwok-node-000", "v1.36.3"), *FACTS.nodes[1:]])
    assert rp.plan_rollout(facts).old_nodes == ("kwok-node-001", "kwok-node-002", "kwok-node-003")
    assert len(rp.plan_rollout(replace(facts, replace_all=True)).old_nodes) == 4


def test_nothing_to_replace_is_refused() -> None:
    facts = replace(FACTS, nodes=[node(f"kwok-node-{i:03d}", "v1.36.3") for i in range(4)])
    plan = rp.plan_rollout(facts)
    assert codes(plan, Severity.BLOCKER) == ["nothing-to-replace"]
    assert plan.batches == ()


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("1.37.2", "version-newer"),  # also unknown
        ("1.36.9", "version-unknown"),
        ("1.32.0", "version-too-old"),
    ],
)
def test_versions_the_control_plane_cannot_serve_are_refused(target: str, code: str) -> None:
    plan = rp.plan_rollout(replace(FACTS, target=target, supported=(*FACTS.supported, "1.32.0")))
    assert code in codes(plan, Severity.BLOCKER)
    assert not plan.allowed


def test_three_minors_older_is_allowed() -> None:
    plan = rp.plan_rollout(replace(FACTS, target="v1.33.0"))
    assert plan.allowed, plan.blockers
    assert plan.target == "1.33.0"


def test_a_malformed_version_is_bad_input() -> None:
    with pytest.raises(errors.InvalidInput, match="malformed target version 'latest'"):
        rp.plan_rollout(replace(FACTS, target="latest"))


def test_a_cluster_meant_to_have_no_nodes_is_refused() -> None:
    plan = rp.plan_rollout(replace(FACTS, desired=0))
    assert "no-desired-size" in codes(plan, Severity.BLOCKER)


def test_imported_and_stopped_clusters_are_refused() -> None:
    assert "not-local" in codes(rp.plan_rollout(replace(FACTS, provider="import")), Severity.BLOCKER)
    assert "cluster-not-running" in codes(rp.plan_rollout(replace(FACTS, phase="Stopped")), Severity.BLOCKER)


def test_workloads_pods_and_budgets_give_findings() -> None:
    facts = replace(
        FACTS,
        pods=[
            pod("bare", "kwok-node-001", owner_kind="", owner_name=""),
            pod("locked-1", "kwok-node-002", app="locked"),
            pod("ds-1", "kwok-node-002", owner_kind="DaemonSet", owner_name="agent"),
            pod("static", "kwok-node-002", owner_kind="Node", mirror=True),
        ],
        budgets=[budget("locked", 0, healthy=2, required=2)],
        workloads=[workload("solo", 1), workload("broken", 2, 0), workload("web", 3)],
    )
    plan = rp.plan_rollout(facts)

    assert codes(plan, Severity.BLOCKER) == ["unmanaged-pods"]
    assert "shop/bare" in plan.blockers[0].message
    assert codes(plan, Severity.WARNING) == ["pdb-blocks-drain", "single-replica", "workloads-failing"]
    assert plan.exempt == ("Deployment shop/broken",)


# ----- batches ---------------------------------------------------------------------------------


def test_batches_hold_surge_plus_unavailable_nodes() -> None:
    facts = replace(FACTS, desired=5, nodes=[node(f"kwok-node-{i:03d}") for i in range(5)])
    plan = rp.plan_rollout(replace(facts, max_surge=2, max_unavailable=1))
    assert [len(b.old) for b in plan.batches] == [3, 2]
    assert [len(b.surge) for b in plan.batches] == [2, 2]
    assert [len(b.replace) for b in plan.batches] == [1, 0]


def test_without_surge_nodes_are_replaced_after_they_are_deleted() -> None:
    plan = rp.plan_rollout(replace(FACTS, max_surge=0, max_unavailable=2))
    assert [b.surge for b in plan.batches] == [(), ()]
    assert [len(b.replace) for b in plan.batches] == [2, 2]


def test_a_cluster_left_above_its_size_sheds_the_surplus_first() -> None:
    # an aborted rollout left kwok-node-004 (already on the target) beside four old nodes
    nodes = [*FACTS.nodes, node("kwok-node-004", "v1.36.3")]
    plan = rp.plan_rollout(replace(FACTS, nodes=nodes))
    assert "cluster-shrinks" in codes(plan, Severity.WARNING)
    assert plan.batches[0] == rp.Batch(old=("kwok-node-000",))
    assert sum(len(b.new) for b in plan.batches) == 3
    assert rp.simulate(plan.batches, nodes=5)[-1].total == 4


def test_new_nodes_take_the_lowest_free_names() -> None:
    nodes = [node("kwok-node-001"), node("kwok-node-004"), node("kwok-node-005")]
    plan = rp.plan_rollout(replace(FACTS, desired=3, nodes=nodes))
    assert [n for b in plan.batches for n in b.new] == ["kwok-node-000", "kwok-node-002", "kwok-node-003"]


@dataclass(frozen=True)
class Shape:
    desired: int
    kept: int
    old: int
    max_surge: int
    max_unavailable: int


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    desired = draw(st.integers(1, 30))
    kept = draw(st.integers(0, desired + 2))
    old = draw(st.integers(1, desired + 3))
    surge = draw(st.integers(0, 6))
    unavailable = draw(st.integers(0 if surge else 1, 6))
    return Shape(desired, kept, old, surge, unavailable)


@settings(max_examples=400, deadline=None)
@given(shapes())
def test_every_plan_keeps_surge_and_unavailability_bounds_and_ends_at_the_desired_size(shape: Shape) -> None:
    old = [f"old-{i}" for i in range(shape.old)]
    new = [f"new-{i}" for i in range(max(0, shape.desired - shape.kept))]
    limits = rp.Limits(shape.max_surge, shape.max_unavailable)
    batches = rp.plan_batches(old, kept=shape.kept, desired=shape.desired, new_names=new, limits=limits)
    initial = shape.kept + shape.old

    assert [n for b in batches for n in b.old] == old  # each old node once, in order
    assert sorted(n for b in batches for n in b.new) == sorted(new)  # each new node once
    assert all(len(b.old) <= limits.batch_size for b in batches)
    for moment in rp.simulate(batches, nodes=initial):
        assert moment.total <= max(initial, shape.desired + shape.max_surge), moment
        assert moment.available >= min(initial, shape.desired) - shape.max_unavailable, moment
    assert rp.simulate(batches, nodes=initial)[-1].total == max(shape.desired, shape.kept)


def test_batch_steps_round_trip_and_titles_name_the_nodes() -> None:
    assert rp.batch_step(0) == "batch-1"
    assert rp.batch_index("batch-12") == 11
    assert rp.batch_index("verify") is None
    assert rp.batch_index("batch-0") is None
    batch = rp.Batch(old=("a", "b"), surge=("c",), replace=("d",))
    assert batch.title == "replace a, b with c, d"
    assert rp.Batch.from_dict(batch.to_dict()) == batch
    many = rp.Batch(old=tuple(f"n{i}" for i in range(10)))
    assert many.title == "replace 10 nodes (n0 … n9)"


# ----- selectors and evictions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (Selector({}, ()), {"app": "x"}, True),
        (None, {"app": "x"}, False),
        (Selector({"app": "x"}, ()), {"app": "x", "tier": "a"}, True),
        (Selector({"app": "x"}, ()), {"app": "y"}, False),
        (Selector({}, (Expression("tier", "In", ("a", "b")),)), {"tier": "b"}, True),
        (Selector({}, (Expression("tier", "In", ("a",)),)), {}, False),
        (Selector({}, (Expression("tier", "NotIn", ("a",)),)), {}, True),
        (Selector({}, (Expression("tier", "NotIn", ("a",)),)), {"tier": "a"}, False),
        (Selector({}, (Expression("tier", "Exists", ()),)), {"tier": ""}, True),
        (Selector({}, (Expression("tier", "DoesNotExist", ()),)), {"tier": ""}, False),
        (Selector({}, (Expression("tier", "Gt", ("1",)),)), {"tier": "2"}, False),
    ],
)
def test_label_selectors(selector: Selector | None, labels: Mapping[str, str], matches: bool) -> None:
    assert rp.selector_matches(selector, labels) is matches


def test_budgets_are_spent_pod_by_pod_and_pods_without_one_go_at_once() -> None:
    pods = [pod(f"web-{i}", app="web") for i in range(3)] + [pod("solo-0", app="solo", owner_name="solo-1")]
    wave = rp.plan_evictions(pods, [budget("web", 1)])

    assert [p.name for p in wave.evict] == ["solo-0", "web-0"]
    assert [w.pod for w in wave.waiting] == ["shop/web-1", "shop/web-2"]
    assert "PodDisruptionBudget shop/web allows no disruption now (3 healthy, 2 required)" in wave.explain()
    assert not wave.drained


def test_what_stays_what_waits_and_what_is_in_flight() -> None:
    pods = [
        pod("gone-soon", terminating=True),
        pod("agent", owner_kind="DaemonSet", owner_name="agent"),
        pod("static", owner_kind="Node", mirror=True),
        pod("bare", owner_kind="", owner_name=""),
        pod("done", phase="Succeeded", ready=False),
    ]
    wave = rp.plan_evictions(pods, [budget("web", 0)])
    assert (wave.terminating, wave.staying, wave.unmanaged) == (1, 2, ("shop/bare",))
    assert [p.name for p in wave.evict] == ["done"]  # finished pods ignore budgets
    assert "pods without a controller: shop/bare" in wave.explain()
    assert rp.plan_evictions([pods[1], pods[2]], []).drained


def test_budgets_that_cannot_be_used_make_pods_wait() -> None:
    double = rp.plan_evictions([pod("web-0")], [budget("web", 5), budget("all", 5, app="web")])
    assert "covered by several PodDisruptionBudgets" in double.waiting[0].reason
    fresh = rp.plan_evictions([pod("web-0")], [budget("web", 5, processed=False)])
    assert "not processed yet" in fresh.waiting[0].reason
    other_namespace = rp.plan_evictions([pod("web-0")], [budget("web", 0, namespace="other")])
    assert [p.name for p in other_namespace.evict] == ["web-0"]


def test_unhealthy_pods_follow_the_eviction_policy_of_their_budget() -> None:
    sick = pod("web-0", ready=False)
    # IfHealthyBudget: an unhealthy pod may go while the budget's healthy count holds
    assert rp.plan_evictions([sick], [budget("web", 0, healthy=2, required=2)]).evict == (sick,)
    assert rp.plan_evictions([sick], [budget("web", 0, healthy=1, required=2)]).evict == ()
    always = budget("web", 0, healthy=1, required=2, policy="AlwaysAllow")
    assert rp.plan_evictions([sick], [always]).evict == (sick,)


@dataclass
class Model:
    """A toy cluster: Deployments whose evicted pods come back Ready on a new node a round
    later, and budgets whose status is computed the way the disruption controller does."""

    replicas: dict[str, int]
    min_available: dict[str, int]
    pods: list[PodState] = field(default_factory=list)
    pending: list[PodState] = field(default_factory=list)
    names: itertools.count[int] = field(default_factory=itertools.count)

    def budgets(self) -> list[BudgetState]:
        found = []
        for app, minimum in self.min_available.items():
            healthy = sum(p.labels["app"] == app and p.ready and not p.terminating for p in self.pods)
            found.append(
                replace(
                    budget(app, max(0, healthy - minimum), healthy=healthy, required=minimum),
                    expected_pods=self.replicas[app],
                )
            )
        return found

    def healthy(self, app: str) -> int:
        return sum(p.labels["app"] == app and p.ready and not p.terminating for p in self.pods)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 6), st.integers(0, 6)), min_size=1, max_size=4),
    st.integers(1, 4),
    st.randoms(use_true_random=False),
)
def test_draining_by_the_plan_never_breaks_a_budget(
    apps: list[tuple[int, int]], nodes: int, rng: random.Random
) -> None:
    model = Model(
        replicas={f"app{i}": r for i, (r, _m) in enumerate(apps)},
        min_available={f"app{i}": min(m, r) for i, (r, m) in enumerate(apps) if m < r},
    )
    for app, count in model.replicas.items():
        for _ in range(count):
            name = f"{app}-{next(model.names)}"
            model.pods.append(pod(name, f"old-{rng.randrange(nodes)}", app=app, owner_name=f"{app}-rs"))
    draining = {f"old-{i}" for i in range(nodes)}
    for _round in range(200):
        on_old = [p for p in model.pods if p.node in draining]
        wave = rp.plan_evictions(on_old, model.budgets())
        if wave.drained:
            break
        for evicted in wave.evict:
            model.pods.remove(evicted)
            app = evicted.labels["app"]
            model.pending.append(pod(f"{app}-{next(model.names)}", "new", app=app, ready=False))
        for app, minimum in model.min_available.items():
            assert model.healthy(app) >= minimum, (app, model.healthy(app), minimum)
        # the replacements start, in a random order, some now and some later
        rng.shuffle(model.pending)
        cut = rng.randint(min(1, len(model.pending)), len(model.pending))  # at least one starts
        started, model.pending = model.pending[:cut], model.pending[cut:]
        model.pods += [replace(p, ready=True) for p in started]
    else:
        pytest.fail("the drain never finished")
    assert not [p for p in model.pods if p.node in draining]


def test_retry_delays_back_off_and_stop_growing() -> None:
    delays = [rp.retry_delay(i) for i in range(10)]
    assert delays == sorted(delays)
    assert delays[-1] == delays[-2] == rp.RETRY_DELAYS[-1]


# ----- waiting and gates -----------------------------------------------------------------------


def test_a_stall_is_progress_missing_for_the_whole_timeout() -> None:
    stall = rp.Stall(10.0)
    assert not stall.observe(False, 100.0)
    assert not stall.observe(False, 105.0)
    assert not stall.observe(True, 109.0)  # progress resets the clock
    assert not stall.observe(False, 110.0)
    assert stall.waited(115.0) == 5.0
    assert stall.observe(False, 120.0)


def test_failing_workloads_skip_the_exempt_ones() -> None:
    workloads = [workload("web", 3, 2), workload("broken", 2, 0), workload("api", 2)]
    assert rp.failing_workloads(workloads, exempt=("Deployment shop/broken",)) == [
        "Deployment shop/web: 2/3 ready"
    ]
    assert not rp.workload_healthy(replace(workload("web"), observed=False))


def test_replacements_are_counted_per_controller() -> None:
    owner = ("ReplicaSet", "shop", "web-5d8f7c")
    pods = [pod("a"), pod("b", terminating=True), pod("c", ready=False), pod("d", owner_name="other")]
    assert rp.replacements_missing({owner: 2}, pods) == ["ReplicaSet shop/web-5d8f7c: 1/2 pods Ready"]
    assert rp.replacements_missing({owner: 1}, pods) == []
    assert rp.owner_exempt(owner, ("Deployment shop/web",))
    assert rp.owner_exempt(("StatefulSet", "shop", "db"), ("StatefulSet shop/db",))
    assert not rp.owner_exempt(owner, ("Deployment shop/api",))


def test_crash_looping_pods_trip_the_gate_unless_their_workload_was_already_failing() -> None:
    crashing = replace(pod("web-5d8f7c-a", ready=False), waiting_reason="CrashLoopBackOff")
    starting = replace(pod("api-1", owner_name="api-77", ready=False), waiting_reason="ContainerCreating")
    assert rp.crashing_pods([crashing, starting], exempt=()) == ["pod shop/web-5d8f7c-a: CrashLoopBackOff"]
    assert rp.crashing_pods([crashing], exempt=("Deployment shop/web",)) == []
    plan = rp.plan_rollout(replace(FACTS, pods=[crashing, starting], workloads=[workload("web")]))
    assert plan.exempt == ("Deployment shop/web",)
    assert "workloads-failing" in codes(plan, Severity.WARNING)
