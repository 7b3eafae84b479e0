"""The local cluster's process plan, on plain data."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilothouse.providers.local import haproxy, topology
from pilothouse.providers.local.layout import ClusterLayout
from pilothouse.vocabulary import CACHED_COMPONENTS, Component

BINARIES = {c: Path(f"/bin/{c.value}") for c in CACHED_COMPONENTS}


def ports_for(cps: int) -> topology.PortPlan:
    base = iter(range(20000, 20100))
    return topology.PortPlan(
        apiserver=next(base),
        etcd_client=tuple(next(base) for _ in range(cps)),
        etcd_peer=tuple(next(base) for _ in range(cps)),
        etcd_metrics=tuple(next(base) for _ in range(cps)),
        controller_manager=tuple(next(base) for _ in range(cps)),
        scheduler=tuple(next(base) for _ in range(cps)),
        kwok=next(base),
        load_balancer=next(base) if cps > 1 else None,
    )


def plan(cps: int) -> list[topology.ProcessSpec]:
    spec = topology.LocalClusterSpec(name="c", kubernetes_version="1.36.3", control_planes=cps, nodes=5)
    return topology.plan_processes(spec, ports_for(cps), ClusterLayout(Path("/data/c")), BINARIES)


def flag(process: topology.ProcessSpec, name: str) -> str:
    values = [a.split("=", 1)[1] for a in process.argv if a.startswith(f"--{name}=")]
    assert len(values) == 1, (process.name, name, values)
    return values[0]


@pytest.mark.parametrize(("cps", "expected"), [(1, 5), (3, 3 + 3 + 1 + 3 + 3 + 1)])
def test_process_count_and_waves_in_order(cps: int, expected: int) -> None:
    processes = plan(cps)
    assert len(processes) == expected
    waves = [p.wave for p in processes]
    assert waves == sorted(waves)
    assert processes[0].component is Component.ETCD
    assert processes[-1].wave is topology.StartWave.CONTROLLERS
    assert len({p.name for p in processes}) == len(processes)


def test_ha_etcd_members_know_each_other_and_apiservers_use_all_members() -> None:
    processes = plan(3)
    etcd = [p for p in processes if p.component is Component.ETCD]
    clusters = {flag(p, "initial-cluster") for p in etcd}
    assert len(clusters) == 1
    assert clusters.pop().count("etcd-") == 3
    for api in (p for p in processes if p.component is Component.KUBE_APISERVER):
        assert flag(api, "etcd-servers").count("https://") == 3
        assert flag(api, "authorization-mode") == "Node,RBAC"
        assert flag(api, "audit-policy-file").endswith("audit-policy.yaml")
        assert flag(api, "encryption-provider-config").endswith("encryption-config.yaml")


def test_ha_members_bind_distinct_loopback_addresses_on_one_port() -> None:
    apiservers = [p for p in plan(3) if p.component is Component.KUBE_APISERVER]
    assert {flag(p, "bind-address") for p in apiservers} == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
    assert len({flag(p, "secure-port") for p in apiservers}) == 1
    controllers = [p for p in plan(3) if p.component is Component.KUBE_CONTROLLER_MANAGER]
    assert {flag(p, "leader-elect") for p in controllers} == {"true"}
    assert {flag(p, "leader-elect") for p in plan(1) if p.component is Component.KUBE_SCHEDULER} == {"false"}


@pytest.mark.parametrize("cps", [1, 3])
def test_every_listening_address_is_loopback_and_unique(cps: int) -> None:
    pairs = [pair for p in plan(cps) for pair in p.listens]
    assert len(pairs) == len(set(pairs))
    assert all(host.startswith("127.") for host, _port in pairs)
    assert set(pairs) == set(ports_for(cps).all_ports())


def test_api_server_url_goes_through_the_load_balancer_when_ha() -> None:
    spec1 = topology.LocalClusterSpec(name="a", kubernetes_version="1.36.3", control_planes=1, nodes=0)
    spec3 = topology.LocalClusterSpec(name="a", kubernetes_version="1.36.3", control_planes=3, nodes=0)
    assert topology.api_server_url(spec1, ports_for(1)) == f"https://127.0.0.1:{ports_for(1).apiserver}"
    assert topology.api_server_url(spec3, ports_for(3)) == f"https://127.0.0.1:{ports_for(3).load_balancer}"


def test_port_plan_round_trips() -> None:
    original = ports_for(3)
    assert topology.PortPlan.from_dict(original.to_dict()) == original


def test_haproxy_config_checks_readyz_on_every_backend() -> None:
    text = haproxy.render_config(
        cluster="c",
        listen_port=6443,
        backends=[("127.0.0.1", 7000), ("127.0.0.2", 7000)],
        admin_socket=Path("/s"),
    )
    assert "bind 127.0.0.1:6443" in text
    assert text.count(" check check-ssl verify none") == 2
    assert "server apiserver-1 127.0.0.2:7000" in text
    assert "uri /readyz" in text
    assert "mode tcp" in text
