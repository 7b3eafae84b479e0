"""The processes of a local cluster, planned as plain data.

``plan_processes`` turns a cluster spec, its port plan, file layout and
binary paths into the exact command lines to run, in start order, with the
health endpoint that says each is ready. Nothing here touches the system, so
the plan is tested on plain data and explains itself (``pilothouse cluster
show`` prints it). The flags follow the upstream components' documented
options for a kubeadm-like control plane; kwok's own dry-run test data was
the reference for the kwok controller.

HA clusters bind control-plane member ``i`` to loopback address
``127.0.0.<i+1>`` with the same API port on each, as if each member were its
own host. The API servers do not maintain the ``kubernetes`` Service's
endpoints (``--endpoint-reconciler-type=none``): the API rejects loopback
addresses as endpoints, and no simulated pod dials that Service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from pilothouse.providers.local.layout import ClusterLayout
from pilothouse.vocabulary import KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE, Component

SERVICE_CIDR = "10.96.0.0/12"
SERVICE_CLUSTER_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
#: How long kube-apiserver spends closing open watches after SIGTERM (under the supervisor's
#: 10 s grace before SIGKILL).
WATCH_DRAIN_SECONDS = 5


def member_host(member: int, control_planes: int) -> str:
    """Loopback address of control-plane member ``member``."""
    return "127.0.0.1" if control_planes == 1 else f"127.0.0.{member + 1}"


class StartWave(IntEnum):
    """Processes start wave by wave; a wave starts when the previous one is ready."""

    ETCD = 0
    APISERVER = 1
    LOAD_BALANCER = 2
    CONTROLLERS = 3


@dataclass(frozen=True)
class PortPlan:
    """Every port a local cluster listens on (all on loopback)."""

    apiserver: int  # same port on each member's loopback address
    etcd_client: tuple[int, ...]
    etcd_peer: tuple[int, ...]
    etcd_metrics: tuple[int, ...]
    controller_manager: tuple[int, ...]
    scheduler: tuple[int, ...]
    kwok: int
    load_balancer: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "apiserver": self.apiserver,
            "etcd_client": list(self.etcd_client),
            "etcd_peer": list(self.etcd_peer),
            "etcd_metrics": list(self.etcd_metrics),
            "controller_manager": list(self.controller_manager),
            "scheduler": list(self.scheduler),
            "kwok": self.kwok,
            "load_balancer": self.load_balancer,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PortPlan:
        def ints(key: str) -> tuple[int, ...]:
            value = data[key]
            assert isinstance(value, list)
            return tuple(int(v) for v in value)

        lb = data.get("load_balancer")
        return cls(
            apiserver=int(str(data["apiserver"])),
            etcd_client=ints("etcd_client"),
            etcd_peer=ints("etcd_peer"),
            etcd_metrics=ints("etcd_metrics"),
            controller_manager=ints("controller_manager"),
            scheduler=ints("scheduler"),
            kwok=int(str(data["kwok"])),
            load_balancer=int(str(lb)) if lb is not None else None,
        )

    def all_ports(self) -> list[tuple[str, int]]:
        """(host, port) pairs the cluster listens on."""
        members = len(self.etcd_client)
        cps = len(self.controller_manager)
        pairs: list[tuple[str, int]] = []
        for i in range(cps):
            host = member_host(i, cps)
            pairs += [(host, self.apiserver), (host, self.controller_manager[i]), (host, self.scheduler[i])]
        for i in range(members):
            pairs += [
                ("127.0.0.1", p) for p in (self.etcd_client[i], self.etcd_peer[i], self.etcd_metrics[i])
            ]
        pairs.append(("127.0.0.1", self.kwok))
        if self.load_balancer is not None:
            pairs.append(("127.0.0.1", self.load_balancer))
        return pairs


@dataclass(frozen=True)
class LocalClusterSpec:
    """What the user asked for."""

    name: str
    kubernetes_version: str
    control_planes: int
    nodes: int

    @property
    def ha(self) -> bool:
        return self.control_planes > 1


@dataclass(frozen=True)
class ReadinessProbe:
    """An HTTP(S) endpoint that answers 200 once the process serves."""

    url: str
    ca_file: Path | None = None  # None: TLS not verified (self-signed serving cert) or plain HTTP


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a local cluster."""

    name: str
    component: Component
    argv: tuple[str, ...]
    wave: StartWave
    probe: ReadinessProbe
    member: int = 0
    listens: tuple[tuple[str, int], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def api_server_url(spec: LocalClusterSpec, ports: PortPlan) -> str:
    """The address clients use: the load balancer for HA, else the single API server."""
    if ports.load_balancer is not None:
        return f"https://127.0.0.1:{ports.load_balancer}"
    return f"https://127.0.0.1:{ports.apiserver}"


def _etcd(spec: LocalClusterSpec, ports: PortPlan, layout: ClusterLayout, etcd: Path, i: int) -> ProcessSpec:
    pki = layout.pki / "etcd"
    peers = ",".join(f"etcd-{j}=https://127.0.0.1:{ports.etcd_peer[j]}" for j in range(len(ports.etcd_peer)))
    client = f"https://127.0.0.1:{ports.etcd_client[i]}"
    argv = (
        str(etcd),
        f"--name=etcd-{i}",
        f"--data-dir={layout.etcd_data(i)}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls=https://127.0.0.1:{ports.etcd_peer[i]}",
        f"--initial-advertise-peer-urls=https://127.0.0.1:{ports.etcd_peer[i]}",
        f"--listen-metrics-urls=http://127.0.0.1:{ports.etcd_metrics[i]}",
        f"--initial-cluster={peers}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token=pilothouse-{spec.name}",
        "--client-cert-auth=true",
        f"--trusted-ca-file={pki / 'ca.crt'}",
        f"--cert-file={pki / f'member-{i}.crt'}",
        f"--key-file={pki / f'member-{i}.key'}",
        "--peer-client-cert-auth=true",
        f"--peer-trusted-ca-file={pki / 'ca.crt'}",
        f"--peer-cert-file={pki / f'member-{i}.crt'}",
        f"--peer-key-file={pki / f'member-{i}.key'}",
        "--snapshot-count=10000",
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=1h",
        "--quota-backend-bytes=4294967296",
        "--log-level=warn",
    )
    return ProcessSpec(
        name=f"etcd-{i}",
        component=Component.ETCD,
        argv=argv,
        wave=StartWave.ETCD,
        member=i,
        listens=tuple(
            ("127.0.0.1", p) for p in (ports.etcd_client[i], ports.etcd_peer[i], ports.etcd_metrics[i])
        ),
        probe=ReadinessProbe(f"http://127.0.0.1:{ports.etcd_metrics[i]}/health"),
    )


def _apiserver(ports: PortPlan, layout: ClusterLayout, binary: Path, i: int, cps: int) -> ProcessSpec:
    pki = layout.pki
    host = member_host(i, cps)
    etcd_servers = ",".join(f"https://127.0.0.1:{p}" for p in ports.etcd_client)
    argv = (
        str(binary),
        f"--advertise-address={host}",
        f"--bind-address={host}",
        f"--secure-port={ports.apiserver}",
        f"--etcd-servers={etcd_servers}",
        f"--etcd-cafile={pki / 'etcd' / 'ca.crt'}",
        f"--etcd-certfile={pki / 'etcd' / 'apiserver-client.crt'}",
        f"--etcd-keyfile={pki / 'etcd' / 'apiserver-client.key'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.logs / f'audit-{i}.log'}",
        "--audit-log-maxsize=100",
        "--audit-log-maxbackup=5",
        "--audit-log-maxage=7",
        f"--encryption-provider-config={layout.encryption_config}",
        "--endpoint-reconciler-type=none",
        "--shutdown-delay-duration=0s",
        # Close open watches (rate-limited) on SIGTERM instead of waiting for them: otherwise the
        # server outlives the supervisor's 10 s grace and is killed. Clients re-watch elsewhere.
        f"--shutdown-watch-termination-grace-period={WATCH_DRAIN_SECONDS}s",
        "--v=1",
    )
    return ProcessSpec(
        name=f"kube-apiserver-{i}",
        component=Component.KUBE_APISERVER,
        argv=argv,
        wave=StartWave.APISERVER,
        member=i,
        listens=((host, ports.apiserver),),
        probe=ReadinessProbe(f"https://{host}:{ports.apiserver}/readyz", ca_file=pki / "ca.crt"),
    )


def _controller(
    component: Component,
    ports: tuple[int, ...],
    layout: ClusterLayout,
    binary: Path,
    i: int,
    cps: int,
    extra: tuple[str, ...],
) -> ProcessSpec:
    user = "controller-manager" if component is Component.KUBE_CONTROLLER_MANAGER else "scheduler"
    kubeconfig = layout.kubeconfig(f"{user}-{i}")
    host = member_host(i, cps)
    argv = (
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={host}",
        f"--secure-port={ports[i]}",
        f"--leader-elect={'true' if cps > 1 else 'false'}",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        "--v=1",
        *extra,
    )
    return ProcessSpec(
        name=f"{component.value}-{i}",
        component=component,
        argv=argv,
        wave=StartWave.CONTROLLERS,
        member=i,
        listens=((host, ports[i]),),
        probe=ReadinessProbe(f"https://{host}:{ports[i]}/healthz"),
    )


def plan_processes(
    spec: LocalClusterSpec,
    ports: PortPlan,
    layout: ClusterLayout,
    binaries: Mapping[Component, Path],
    *,
    haproxy: str = "haproxy",
) -> list[ProcessSpec]:
    """Every process of the cluster, in start order."""
    cps = spec.control_planes
    members = len(ports.etcd_client)
    pki = layout.pki
    plan = [_etcd(spec, ports, layout, binaries[Component.ETCD], i) for i in range(members)]
    plan += [_apiserver(ports, layout, binaries[Component.KUBE_APISERVER], i, cps) for i in range(cps)]
    if ports.load_balancer is not None:
        plan.append(
            ProcessSpec(
                name="haproxy",
                component=Component.HAPROXY,
                argv=(haproxy, "-db", "-f", str(layout.haproxy_config)),
                wave=StartWave.LOAD_BALANCER,
                listens=(("127.0.0.1", ports.load_balancer),),
                probe=ReadinessProbe(
                    f"https://127.0.0.1:{ports.load_balancer}/readyz", ca_file=pki / "ca.crt"
                ),
            )
        )
    kcm_extra = (
        f"--cluster-name={spec.name}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--use-service-account-credentials=true",
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
    )
    for i in range(cps):
        plan.append(
            _controller(
                Component.KUBE_CONTROLLER_MANAGER,
                ports.controller_manager,
                layout,
                binaries[Component.KUBE_CONTROLLER_MANAGER],
                i,
                cps,
                kcm_extra,
            )
        )
        plan.append(
            _controller(
                Component.KUBE_SCHEDULER,
                ports.scheduler,
                layout,
                binaries[Component.KUBE_SCHEDULER],
                i,
                cps,
                (),
            )
        )
    plan.append(
        ProcessSpec(
            name="kwok",
            component=Component.KWOK,
            argv=(
                str(binaries[Component.KWOK]),
                f"--kubeconfig={layout.kubeconfig('kwok')}",
                f"--config={layout.kwok_config}",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}",
                f"--server-address=127.0.0.1:{ports.kwok}",
                f"--node-port={ports.kwok}",
                "--node-ip=127.0.0.1",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
            ),
            wave=StartWave.CONTROLLERS,
            listens=(("127.0.0.1", ports.kwok),),
            probe=ReadinessProbe(f"http://127.0.0.1:{ports.kwok}/healthz"),
        )
    )
    return sorted(plan, key=lambda p: p.wave)
