"""The alert rules and lifecycle of ``fleet.alerting``, driven by a fake clock value.

Inputs are the real types the alert pass will hand in (``ClusterHealth``,
``InventorySnapshot`` from a real ``ClusterInventory``, ``PodSummary``,
``SLAReport``), so mypy also checks they fit the protocols. Sequences of
passes (one observation per tick) check pending → firing after ``for``,
flapping, resolution, acknowledgement, silences and de-duplication.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pilothouse import errors
from pilothouse.fleet import alerting, sla
from pilothouse.fleet.health import ClusterHealth, EndpointHealth, EndpointKind
from pilothouse.fleet.inventory import ClusterInventory, InventorySnapshot, KindCache
from pilothouse.kube import watching
from pilothouse.kube.summaries import Kind, NodeSummary, PodSummary, WorkloadKind, WorkloadSummary

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = alerting.AlertRulesConfig()
Status = alerting.AlertStatus
Kind_ = alerting.NotificationKind


def health(cluster: str = "alpha", *, up: bool = True, down_members: Sequence[int] = ()) -> ClusterHealth:
    client = EndpointHealth(
        "haproxy", "https://127.0.0.1:6443", EndpointKind.LOADBALANCER, up, 1.0, None if up else "refused"
    )
    members = tuple(
        EndpointHealth(
            f"kube-apiserver-{i}",
            f"https://127.0.0.{i + 1}:6443",
            EndpointKind.APISERVER,
            i not in down_members,
            1.0,
            None if i not in down_members else "/readyz: HTTP 500",
        )
        for i in range(3)
    )
    return ClusterHealth(cluster, T0, (client, *members), up)


def node(name: str, *, ready: bool = True) -> NodeSummary:
    return NodeSummary(name, ready, False, "v1.36.3", 1000, 1 << 30, 110, "kwok", (("Ready", str(ready)),))


def pod(
    name: str,
    *,
    waiting: str = "",
    restarts: int = 0,
    namespace: str = "default",
    cpu: int = 0,
    memory: int = 0,
) -> PodSummary:
    return PodSummary(
        namespace, name, "n0", "Running", not waiting, False, restarts, waiting, "", "", cpu, memory, 0, 0
    )


def workload(name: str, *, desired: int = 3, available: int = 3) -> WorkloadSummary:
    return WorkloadSummary(
        "default", name, WorkloadKind.DEPLOYMENT, desired, available, available, desired, True
    )


def inventory(
    cluster: str = "alpha",
    *,
    nodes: Sequence[NodeSummary] = (),
    pods: Sequence[PodSummary] = (),
    workloads: Sequence[WorkloadSummary] = (),
    synced: bool = True,
) -> ClusterInventory:
    inv = ClusterInventory(cluster, kinds=(Kind.NODES, Kind.PODS, Kind.DEPLOYMENTS), clock=lambda: 0.0)
    contents: tuple[tuple[KindCache[Any], Sequence[Any]], ...] = (
        (inv.nodes, nodes),
        (inv.pods, pods),
        (inv.deployments, workloads),
    )
    for cache, objects in contents:
        cache.on_connected()
        if synced:
            cache.on_event(watching.Synced(objects=tuple(objects), resource_version="1"))
    return inv


def observe(
    cluster: str = "alpha",
    *,
    up: bool = True,
    down_members: Sequence[int] = (),
    inv: ClusterInventory | None = None,
    with_pods: bool = True,
    report: sla.SLAReport | None = None,
    certificates: Mapping[str, datetime] | None = None,
) -> alerting.ClusterObservation:
    snapshot: InventorySnapshot | None = inv.snapshot() if inv is not None else None
    return alerting.ClusterObservation(
        cluster,
        health=health(cluster, up=up, down_members=down_members),
        inventory=snapshot,
        pods=inv.pods_in() if inv is not None and with_pods else None,
        sla=report,
        certificates=certificates,
    )


def run(
    ticks: Sequence[tuple[float, Sequence[alerting.ClusterObservation]]],
    *,
    config: alerting.AlertRulesConfig = CONFIG,
    silences: Sequence[alerting.Silence] = (),
    states: dict[str, alerting.AlertState] | None = None,
) -> tuple[dict[str, alerting.AlertState], list[tuple[float, str, str]]]:
    """Evaluate at each (seconds after T0, observations); return the final states and
    every notification as (seconds, kind, rule)."""
    current = dict(states or {})
    sent: list[tuple[float, str, str]] = []
    for seconds, observations in ticks:
        current, notes = alerting.evaluate(
            current, observations, T0 + timedelta(seconds=seconds), config, silences
        )
        sent += [(seconds, n.kind.value, n.alert.rule.value) for n in notes]
    return current, sent


def only(states: dict[str, alerting.AlertState]) -> alerting.AlertState:
    assert len(states) == 1, states
    return next(iter(states.values()))


# ----- ClusterUnreachable: the 15-second promise --------------------------------------------------


@pytest.mark.parametrize(
    ("downs", "expected_fire"),
    [
        # probes every 5 s; down from t=0: pending at 0, 5; fires at 10 (for = 10 s), within 15 s
        ([0, 5, 10, 15], 10.0),
        # a single failed probe between good ones never fires (a flap)
        ([5], None),
        # down twice, up, down again: the pending clock restarts
        ([0, 5, 15, 20, 25], 25.0),
    ],
)
def test_cluster_unreachable_fires_after_its_for_duration(
    downs: list[int], expected_fire: float | None
) -> None:
    ticks = [(float(t), [observe(up=t not in downs)]) for t in range(0, 30, 5)]

    _states, sent = run(ticks)

    fired = [t for t, kind, rule in sent if kind == "firing" and rule == "ClusterUnreachable"]
    assert fired == ([] if expected_fire is None else [expected_fire])


def test_unreachable_resolves_when_the_cluster_answers_again_and_is_notified_once_each_way() -> None:
    ticks = [(float(t), [observe(up=t >= 20)]) for t in range(0, 40, 5)]

    states, sent = run(ticks)

    assert sent == [(10.0, "firing", "ClusterUnreachable"), (20.0, "resolved", "ClusterUnreachable")]
    state = only(states)
    assert state.status is Status.RESOLVED
    assert state.fired_at == T0 + timedelta(seconds=10)
    assert state.resolved_at == T0 + timedelta(seconds=20)
    assert state.labels == {"alertname": "ClusterUnreachable", "cluster": "alpha"}


def test_a_pending_alert_that_clears_is_dropped_silently() -> None:
    states, sent = run([(0, [observe(up=False)]), (5, [observe(up=True)])])

    assert states == {}
    assert sent == []


def test_keep_firing_damps_flapping() -> None:
    config = CONFIG.model_copy(
        update={
            "cluster_unreachable": alerting.RuleConfig(
                for_seconds=0, severity="critical", keep_firing_seconds=20
            )
        }
    )
    ups = {0: False, 5: True, 10: False, 15: True, 20: True, 25: True, 30: True, 35: True}

    _states, sent = run([(float(t), [observe(up=u)]) for t, u in ups.items()], config=config)

    # fires at once, the flaps inside 20 s keep it firing, it resolves 20 s after last seen
    assert sent == [(0.0, "firing", "ClusterUnreachable"), (30.0, "resolved", "ClusterUnreachable")]


# ----- the other rules ---------------------------------------------------------------------------


def test_apiserver_endpoint_down_while_the_cluster_is_up() -> None:
    states, sent = run([(0, [observe(down_members=[1])]), (60, [observe(down_members=[1])])])

    state = only(states)
    assert state.rule is alerting.Rule.APISERVER_ENDPOINT_DOWN
    assert state.labels["endpoint"] == "kube-apiserver-1"
    assert "HTTP 500" in state.summary
    assert sent == [(60.0, "firing", "APIServerEndpointDown")]


def test_a_down_cluster_reports_unreachable_only_and_freezes_member_and_inventory_alerts() -> None:
    inv = inventory(nodes=[node("n0", ready=False)])
    before, _ = run([(0, [observe(down_members=[2], inv=inv)]), (200, [observe(down_members=[2], inv=inv)])])
    assert {s.rule for s in before.values()} == {
        alerting.Rule.APISERVER_ENDPOINT_DOWN,
        alerting.Rule.NODE_NOT_READY,
    }

    after, sent = run([(205, [observe(up=False, inv=inventory())])], states=before)

    frozen = {fp: s for fp, s in after.items() if s.rule is not alerting.Rule.CLUSTER_UNREACHABLE}
    assert frozen == before  # unknown is not false: neither resolved nor advanced
    assert sent == []  # ClusterUnreachable is only pending


@pytest.mark.parametrize("with_pods", [True, False])
def test_pod_crash_looping_per_pod_or_per_cluster(with_pods: bool) -> None:
    inv = inventory(
        pods=[
            pod("web-1", waiting="CrashLoopBackOff", restarts=4),
            pod("web-2"),
            pod("db-0", waiting="ImagePullBackOff"),
        ]
    )

    states, sent = run(
        [(0, [observe(inv=inv, with_pods=with_pods)]), (300, [observe(inv=inv, with_pods=with_pods)])]
    )

    state = only(states)
    assert state.rule is alerting.Rule.POD_CRASH_LOOPING
    if with_pods:
        assert state.labels == {
            "alertname": "PodCrashLooping",
            "cluster": "alpha",
            "namespace": "default",
            "pod": "web-1",
        }
        assert "4 restarts" in state.summary
    else:
        assert "1 pod(s)" in state.summary
    assert sent == [(300.0, "firing", "PodCrashLooping")]


def test_thresholds_are_user_settable() -> None:
    config = alerting.AlertRulesConfig.model_validate(
        {
            "pod_crash_looping": {"for_seconds": 0, "min_restarts": 5},
            "workload_unavailable": {"for_seconds": 0, "min_unavailable": 2},
            "node_not_ready": {"for_seconds": 0, "enabled": False},
        }
    )
    inv = inventory(
        nodes=[node("n0", ready=False)],
        pods=[
            pod("a", waiting="CrashLoopBackOff", restarts=4),
            pod("b", waiting="CrashLoopBackOff", restarts=5),
        ],
        workloads=[workload("one-short", available=2), workload("two-short", available=1)],
    )

    states, _sent = run([(0, [observe(inv=inv)])], config=config)

    assert sorted(s.labels.get("pod") or s.labels["name"] for s in states.values()) == ["b", "two-short"]
    with pytest.raises(ValueError, match="for_seconds"):
        alerting.AlertRulesConfig.model_validate({"node_not_ready": {"for_seconds": -1}})


def test_workload_and_node_alerts_resolve_when_fixed() -> None:
    broken = inventory(nodes=[node("n0", ready=False)], workloads=[workload("web", available=1)])
    fixed = inventory(nodes=[node("n0")], workloads=[workload("web")])

    states, sent = run(
        [(0, [observe(inv=broken)]), (300, [observe(inv=broken)]), (310, [observe(inv=fixed)])]
    )

    assert sorted(sent) == [
        (300.0, "firing", "NodeNotReady"),
        (300.0, "firing", "WorkloadUnavailable"),
        (310.0, "resolved", "NodeNotReady"),
        (310.0, "resolved", "WorkloadUnavailable"),
    ]
    assert {s.status for s in states.values()} == {Status.RESOLVED}


def test_an_unsynced_inventory_is_unknown_not_healthy() -> None:
    broken = inventory(nodes=[node("n0", ready=False)])
    states, _ = run([(0, [observe(inv=broken)])])

    again, sent = run([(400, [observe(inv=inventory(synced=False))])], states=states)

    assert again == states
    assert sent == []


def test_slo_burn_rate_high_from_the_sla_report() -> None:
    now = T0 + timedelta(seconds=120)
    samples = [sla.Sample(now - timedelta(hours=2) + timedelta(seconds=10 * i), up=False) for i in range(720)]
    report = sla.compute_report("alpha", sla.spans_from_samples(samples, until=now), now=now)
    assert report.firing

    states, sent = run([(0, [observe(report=report)]), (120, [observe(report=report)])])

    assert {s.labels["window"] for s in states.values()} == {"fast-burn", "slow-burn"}
    assert [k for _, k, _ in sent] == ["firing", "firing"]
    assert (
        "x over 1h" in next(iter(states.values())).summary
        or "x over 6h" in next(iter(states.values())).summary
    )


def test_a_cluster_that_is_no_longer_observed_has_its_alerts_resolved() -> None:
    states, _ = run([(0, [observe(up=False)]), (10, [observe(up=False)])])

    after, sent = run([(15, [observe("beta")])], states=states)

    assert only(after).status is Status.RESOLVED
    assert sent == [(15.0, "resolved", "ClusterUnreachable")]


# ----- identity, acknowledgement, silences, repeats ---------------------------------------------


def test_the_same_condition_in_one_pass_and_across_passes_is_one_alert() -> None:
    obs = observe(up=False)
    states, sent = run([(0, [obs, obs]), (10, [obs]), (15, [obs, obs])])

    state = only(states)
    assert state.fingerprint == alerting.fingerprint({"alertname": "ClusterUnreachable", "cluster": "alpha"})
    assert state.started_at == T0
    assert sent == [(10.0, "firing", "ClusterUnreachable")]


def test_fingerprints_depend_on_every_label_and_not_on_order() -> None:
    a = alerting.fingerprint({"alertname": "NodeNotReady", "cluster": "x", "node": "n0"})
    assert a == alerting.fingerprint({"node": "n0", "cluster": "x", "alertname": "NodeNotReady"})
    assert a != alerting.fingerprint({"alertname": "NodeNotReady", "cluster": "x", "node": "n1"})
    assert a != alerting.fingerprint({"alertname": "NodeNotReady", "cluster": "y", "node": "n0"})


def test_unacknowledged_alerts_repeat_and_acknowledged_ones_stay_quiet_until_resolved() -> None:
    config = CONFIG.model_copy(update={"repeat_interval_seconds": 60.0})
    down = [observe(up=False)]
    states, sent = run([(0, down), (10, down), (70, down)], config=config)
    assert sent == [(10.0, "firing", "ClusterUnreachable"), (70.0, "firing", "ClusterUnreachable")]

    fp, state = next(iter(states.items()))
    acked = {fp: alerting.acknowledge(state, "alice", T0 + timedelta(seconds=75))}
    states, sent = run([(130, down), (200, down), (205, [observe()])], config=config, states=acked)

    assert sent == [(205.0, "resolved", "ClusterUnreachable")]
    assert only(states).acked_by == "alice"

    states, sent = run([(210, down), (220, down)], config=config, states=states)
    assert only(states).acked_by is None  # a new incarnation starts unacknowledged
    assert sent == [(220.0, "firing", "ClusterUnreachable")]
    with pytest.raises(errors.InvalidInput):
        alerting.acknowledge(
            alerting.evaluate(states, [observe()], T0 + timedelta(seconds=300))[0][fp], "bob", T0
        )


def silence(*matchers: str, start: float = 0, end: float = 100) -> alerting.Silence:
    return alerting.Silence(
        "s1",
        tuple(alerting.Matcher.parse(m) for m in matchers),
        T0 + timedelta(seconds=start),
        T0 + timedelta(seconds=end),
        created_by="alice",
    )


@pytest.mark.parametrize(
    ("matchers", "silenced"),
    [
        (["cluster=alpha"], True),
        (["cluster=beta"], False),
        (["alertname=ClusterUnreachable", "cluster=~al.*"], True),
        (["cluster!=alpha"], False),
        (["cluster!~b.*"], True),
        (["node="], True),  # a missing label matches the empty value
    ],
)
def test_silences_suppress_notices_but_not_state(matchers: list[str], silenced: bool) -> None:
    down = [observe(up=False)]

    states, sent = run([(0, down), (10, down)], silences=[silence(*matchers)])

    assert only(states).status is Status.FIRING
    assert only(states).silenced_by == ("s1" if silenced else None)
    assert sent == ([] if silenced else [(10.0, "firing", "ClusterUnreachable")])


def test_a_firing_alert_is_notified_when_its_silence_ends_and_a_silenced_one_resolves_quietly() -> None:
    down = [observe(up=False)]
    quiet = [silence("cluster=alpha", end=30)]

    _states, sent = run([(0, down), (10, down), (20, down), (30, down), (40, [observe()])], silences=quiet)
    assert sent == [(30.0, "firing", "ClusterUnreachable"), (40.0, "resolved", "ClusterUnreachable")]

    _states, sent = run([(0, down), (10, down), (20, [observe()])], silences=quiet)
    assert sent == []  # never announced, so nothing to take back


def test_a_silence_before_its_start_does_nothing() -> None:
    down = [observe(up=False)]

    _states, sent = run([(0, down), (10, down)], silences=[silence("cluster=alpha", start=60, end=120)])

    assert sent == [(10.0, "firing", "ClusterUnreachable")]


def test_resolved_alerts_expire_after_their_retention() -> None:
    config = CONFIG.model_copy(update={"resolved_retention_seconds": 60.0})
    states, _ = run([(0, [observe(up=False)]), (10, [observe(up=False)]), (15, [observe()])], config=config)

    kept, _ = run([(70, [observe()])], config=config, states=states)
    gone, _ = run([(80, [observe()])], config=config, states=states)

    assert only(kept).status is Status.RESOLVED
    assert gone == {}


@pytest.mark.parametrize("text", ["cluster", "=alpha", "clu ster=alpha", "cluster=~(", "9x=y"])
def test_bad_matchers_are_refused(text: str) -> None:
    with pytest.raises(errors.InvalidInput):
        alerting.Matcher.parse(text)


def test_matchers_round_trip_and_strip_quotes() -> None:
    matcher = alerting.Matcher.parse("cluster=~'prod-.*'")
    assert matcher == alerting.Matcher("cluster", "prod-.*", alerting.MatchOp.REGEX)
    assert alerting.Matcher.from_dict(matcher.to_dict()) == matcher


def test_evaluate_is_deterministic_and_restore_round_trips() -> None:
    inv = inventory(
        nodes=[node("n0", ready=False), node("n1", ready=False)], workloads=[workload("w", available=0)]
    )
    obs = [observe(down_members=[0], inv=inv), observe("beta", up=False)]
    now = T0 + timedelta(seconds=400)

    first = alerting.evaluate({}, obs, T0)
    again = alerting.evaluate(first.states, obs, now)
    twice = alerting.evaluate(first.states, obs, now)

    assert again == twice
    assert [n.alert.cluster for n in again.notifications] == ["alpha"] * 4 + ["beta"]
    assert alerting.restore(again.states.values()) == again.states


def test_refresh_notices_cover_announced_firing_alerts_only() -> None:
    config = CONFIG.model_copy(update={"node_not_ready": alerting.RuleConfig(for_seconds=0)})
    inv = inventory(nodes=[node("n0", ready=False), node("n1", ready=False)])
    quiet = [silence("node=n1")]
    states, _ = run([(0, [observe(inv=inv, down_members=[1])])], config=config, silences=quiet)
    fp, state = next((fp, s) for fp, s in states.items() if s.labels.get("node") == "n0")
    states[fp] = alerting.acknowledge(state, "alice", T0)

    notices = alerting.refresh_notices(states)

    # n0: announced (and acked: Alertmanager must still hear of it); n1: silenced, never
    # announced; the API server alert: still pending
    assert [n.alert.labels.get("node") for n in notices] == ["n0"]
    assert all(n.repeat and n.kind is Kind_.FIRING for n in notices)


# ----- CapacityHigh ------------------------------------------------------------------------------


def test_capacity_high_fires_over_the_threshold_and_resolves_under_it() -> None:
    config = CONFIG.model_copy(update={"capacity_high": alerting.CapacityRuleConfig(for_seconds=60)})
    crowded = inventory(nodes=[node("n0")], pods=[pod("big", cpu=850)])  # 85 % of 1000m
    roomy = inventory(nodes=[node("n0")], pods=[pod("big", cpu=500)])

    states, sent = run(
        [(0, [observe(inv=crowded)]), (30, [observe(inv=crowded)]), (60, [observe(inv=crowded)])],
        config=config,
    )
    alert = only(states)
    assert (alert.rule, alert.status, sent) == (
        alerting.Rule.CAPACITY_HIGH,
        Status.FIRING,
        [(60, "firing", "CapacityHigh")],
    )
    assert "cpu requests are 85.0% of allocatable" in alert.summary

    states, sent = run([(90, [observe(inv=roomy)])], config=config, states=states)
    assert (only(states).status, sent) == (Status.RESOLVED, [(90, "resolved", "CapacityHigh")])


def test_capacity_threshold_is_user_settable_and_checked() -> None:
    crowded = inventory(nodes=[node("n0")], pods=[pod("big", memory=900 << 20)])  # 88 % of 1 GiB
    lenient = alerting.AlertRulesConfig.model_validate(
        {"capacity_high": {"for_seconds": 0, "threshold": 0.9}}
    )
    strict = alerting.AlertRulesConfig.model_validate({"capacity_high": {"for_seconds": 0, "threshold": 0.5}})

    assert run([(0, [observe(inv=crowded)])], config=lenient)[0] == {}
    assert only(run([(0, [observe(inv=crowded)])], config=strict)[0]).summary.startswith(
        "cluster alpha: memory requests are 87.9% of allocatable"
    )
    with pytest.raises(ValueError, match="threshold"):
        alerting.AlertRulesConfig.model_validate({"capacity_high": {"for_seconds": 0, "threshold": 1.5}})


# ----- CertificateExpiringSoon -------------------------------------------------------------------


def test_certificates_warn_then_turn_critical_as_expiry_nears() -> None:
    certificates = {
        "apiserver.crt": T0 + timedelta(days=20),
        "ca.crt": T0 + timedelta(days=3650),
        "front-proxy-client.crt": T0 + timedelta(days=5),
        "etcd/peer-0.crt": T0 - timedelta(hours=2),
    }

    states, sent = run([(0, [observe(certificates=certificates)])])

    by_cert = {s.labels["certificate"]: s for s in states.values()}
    assert sorted(by_cert) == ["apiserver.crt", "etcd/peer-0.crt", "front-proxy-client.crt"]
    assert by_cert["apiserver.crt"].severity is alerting.Severity.WARNING
    assert by_cert["front-proxy-client.crt"].severity is alerting.Severity.CRITICAL
    assert "expired 2.0 hours ago" in by_cert["etcd/peer-0.crt"].summary
    assert "expires in 20.0 days" in by_cert["apiserver.crt"].summary
    assert {kind for _, kind, _ in sent} == {"firing"}


def test_rotated_certificates_resolve_and_unreadable_ones_keep_their_alerts() -> None:
    soon = {"apiserver.crt": T0 + timedelta(days=2)}
    rotated = {"apiserver.crt": T0 + timedelta(days=365)}

    states, _ = run([(0, [observe(certificates=soon)])])
    kept, sent = run([(60, [observe(certificates=None)])], states=states)
    assert (only(kept).status, sent) == (Status.FIRING, [])

    resolved, sent = run([(120, [observe(certificates=rotated)])], states=kept)
    assert (only(resolved).status, sent) == (Status.RESOLVED, [(120, "resolved", "CertificateExpiringSoon")])


def test_overrides_keep_the_other_defaults_of_a_rule() -> None:
    config = alerting.AlertRulesConfig.from_overrides(
        {"certificate_expiring_soon": {"warning_days": 60}, "repeat_interval_seconds": None}
    )
    assert config.certificate_expiring_soon.warning_days == 60
    assert config.certificate_expiring_soon.critical_days == CONFIG.certificate_expiring_soon.critical_days
    assert config.capacity_high == CONFIG.capacity_high
    assert config.repeat_interval_seconds is None
    with pytest.raises(ValueError, match="warning_days"):
        alerting.AlertRulesConfig.from_overrides({"certificate_expiring_soon": {"warning_days": -1}})
    with pytest.raises(ValueError, match="Extra inputs"):
        alerting.AlertRulesConfig.from_overrides({"capacity_high": {"treshold": 0.5}})
