"""REST routes of cluster access: short-lived kubeconfigs and who-can (``identity.cluster_access``).

``POST /api/v1/clusters/{name}/kubeconfig`` returns a kubeconfig for the
authenticated user, carrying only their roles on that cluster and valid for
at most an hour (``ttl_seconds``). The gate is ``clusters:read`` held
anywhere (a user bound in one namespace qualifies); the service then refuses
(403) a caller holding no role on this cluster, 404s an unknown cluster
first, and refuses imported clusters (409). The admin kubeconfig stays at
``GET …/kubeconfig`` behind ``clusters:credentials``.

``GET /api/v1/access/who-can?verb=&resource=&cluster=&namespace=`` needs
``roles:read`` at the scope asked about (the platform when no cluster is
named) and answers per cluster, from the cluster's RBAC and Pilothouse's
roles.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from pilothouse.api.auth import CurrentPrincipal, anywhere, get_platform, guarded
from pilothouse.identity.cluster_access import MAX_TTL, MIN_TTL, WhoCanAnswer, who_can_scope
from pilothouse.identity.policy import Permission
from pilothouse.platform import Platform

router = APIRouter(tags=["access"])
PlatformDep = Annotated[Platform, Depends(get_platform)]


class KubeconfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_seconds: int | None = Field(
        default=None,
        ge=int(MIN_TTL.total_seconds()),
        le=int(MAX_TTL.total_seconds()),
        description="Lifetime of the credentials; default and maximum 3600.",
    )


class KubeconfigOut(BaseModel):
    cluster: str
    user: str = Field(description="The Kubernetes user name (the certificate's CN).")
    groups: list[str] = Field(description="The Kubernetes groups: one per role held on the cluster.")
    expires_at: datetime
    kubeconfig: str = Field(description="YAML, with the private key inlined: keep it secret.")


class HolderOut(BaseModel):
    kind: str = Field(description="User, Group, ServiceAccount; user or team for Pilothouse subjects.")
    name: str
    namespace: str | None = Field(description="None: in every namespace (cluster-wide).")
    via: str
    source: str = Field(description="cluster (its own RBAC) or pilothouse (Pilothouse's roles).")
    only_names: list[str]
    members: list[str]


class WhoCanOut(BaseModel):
    cluster: str
    resource: str
    namespaced: bool
    error: str | None
    subjects: list[HolderOut]

    @classmethod
    def of(cls, answer: WhoCanAnswer) -> WhoCanOut:
        return cls(
            cluster=answer.cluster,
            resource=answer.resource,
            namespaced=answer.namespaced,
            error=answer.error,
            subjects=[
                HolderOut(
                    kind=h.kind,
                    name=h.name,
                    namespace=h.namespace,
                    via=h.via,
                    source=h.source,
                    only_names=list(h.only_names),
                    members=list(h.members),
                )
                for h in answer.holders
            ],
        )


@router.post(
    "/api/v1/clusters/{name}/kubeconfig",
    response_model=KubeconfigOut,
    **guarded(Permission.CLUSTERS_READ, scope=anywhere),
)
async def issue_kubeconfig(
    name: str, principal: CurrentPrincipal, platform: PlatformDep, body: KubeconfigIn | None = None
) -> KubeconfigOut:
    """Short-lived credentials for the caller on this cluster (their own roles only)."""
    ttl = timedelta(seconds=body.ttl_seconds) if body and body.ttl_seconds else None
    issued = await platform.cluster_access.issue_kubeconfig(principal, name, ttl=ttl)
    return KubeconfigOut(
        cluster=issued.cluster,
        user=issued.user,
        groups=list(issued.groups),
        expires_at=issued.not_after,
        kubeconfig=issued.kubeconfig,
    )


@router.get("/api/v1/access/who-can", response_model=list[WhoCanOut], **guarded(Permission.ROLES_READ))
async def who_can(
    platform: PlatformDep,
    verb: Annotated[str, Query(min_length=1, max_length=32, description="get, list, create, delete, …")],
    resource: Annotated[str, Query(min_length=1, max_length=256, description="pods, deployments.apps, …")],
    cluster: Annotated[str | None, Query(max_length=63, description="Only this cluster.")] = None,
    namespace: Annotated[str | None, Query(max_length=63, description="Only in this namespace.")] = None,
) -> list[Any]:
    """Who can VERB RESOURCE, per cluster: the cluster's own RBAC and Pilothouse's roles."""
    who_can_scope(cluster, namespace)  # validates the names (the guard checked roles:read there)
    answers = await platform.cluster_access.who_can(verb, resource, cluster=cluster, namespace=namespace)
    return [WhoCanOut.of(a) for a in answers]
