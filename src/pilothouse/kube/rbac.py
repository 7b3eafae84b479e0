"""A cluster's RBAC objects and API discovery: reading, server-side applying, deleting.

lightkube does the work: ``read_rbac`` lists ClusterRoles, Roles and their
bindings (optionally only those with a label), ``apply_manifests`` applies
plain manifests with server-side apply (field manager ``pilothouse``,
``force``: Pilothouse owns the fields it sets on its own objects),
``delete_objects`` deletes (a missing object is fine). ``resolve_resource``
asks the API server's discovery documents what ``pods``, ``po``,
``deployments.apps`` or ``pods/log`` means there (httpx, as ``kube.objects``
does). Callers (``identity.rbac_sync``, ``identity.cluster_access``) pass
manifests as dicts and get dicts back: the planning and the RBAC evaluation
stay pure and free of lightkube types. Failures are translated by
``kube.client.translate``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient, codecs
from lightkube.core.resource import GlobalResource, NamespacedResource
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding, Role, RoleBinding

from pilothouse import errors
from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials

KINDS: dict[str, type[GlobalResource] | type[NamespacedResource]] = {
    "ClusterRole": ClusterRole,
    "ClusterRoleBinding": ClusterRoleBinding,
    "Role": Role,
    "RoleBinding": RoleBinding,
}


@dataclass(frozen=True)
class RbacObjects:
    """RBAC objects of one cluster, as plain dicts."""

    cluster_roles: list[dict[str, Any]]
    cluster_role_bindings: list[dict[str, Any]]
    roles: list[dict[str, Any]]
    role_bindings: list[dict[str, Any]]
    namespaces: list[str]


async def _listed(
    client: AsyncClient, kind: type[Any], labels: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    selector: dict[str, Any] | None = dict(labels) if labels else None
    found = []
    async for obj in client.list(
        kind, namespace=ALL_NS if kind in (Role, RoleBinding) else None, labels=selector
    ):
        data = obj.to_dict()
        data.setdefault("kind", kind.__name__)
        found.append(data)
    return found


async def read_rbac(
    creds: ClusterCredentials, *, labels: Mapping[str, str] | None = None, include_roles: bool = True
) -> RbacObjects:
    """The cluster's ClusterRoles, ClusterRoleBindings, (Roles) and RoleBindings, and its namespaces."""
    try:
        async with kube_client.open_client(creds) as client:
            kinds: list[type[Any]] = [ClusterRole, ClusterRoleBinding, RoleBinding]
            if include_roles:
                kinds.append(Role)
            lists = await asyncio.gather(*(_listed(client, kind, labels) for kind in kinds))
            namespaces = [
                ns.metadata.name async for ns in client.list(Namespace) if ns.metadata and ns.metadata.name
            ]
    except Exception as exc:
        raise kube_client.translate(exc, creds) from None
    return RbacObjects(
        cluster_roles=lists[0],
        cluster_role_bindings=lists[1],
        role_bindings=lists[2],
        roles=lists[3] if include_roles else [],
        namespaces=sorted(namespaces),
    )


async def apply_manifests(creds: ClusterCredentials, manifests: Iterable[Mapping[str, Any]]) -> int:
    """Server-side apply each manifest (in order); return how many."""
    objects = [codecs.from_dict(dict(m)) for m in manifests]
    try:
        async with kube_client.open_client(creds) as client:
            for obj in objects:
                await client.apply(obj, force=True)
    except Exception as exc:
        raise kube_client.translate(exc, creds) from None
    return len(objects)


async def delete_objects(creds: ClusterCredentials, refs: Iterable[tuple[str, str, str]]) -> int:
    """Delete RBAC objects given as (kind, namespace or "", name); return how many were there."""
    deleted = 0
    try:
        async with kube_client.open_client(creds) as client:
            for kind, namespace, name in refs:
                try:
                    resource: Any = KINDS[kind]
                    await client.delete(resource, name, namespace=namespace or None)
                    deleted += 1
                except ApiError as exc:
                    if exc.status.code != 404:
                        raise
    except Exception as exc:
        raise kube_client.translate(exc, creds) from None
    return deleted


# ----- discovery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedResource:
    group: str  # "" for the core group
    version: str
    resource: str  # plural name
    subresource: str
    namespaced: bool


async def _discovery(http: httpx2.AsyncClient, creds: ClusterCredentials, path: str) -> Any:
    response = await http.get(creds.server + path)
    if response.status_code == 401:
        raise errors.Unauthenticated(
            f"the cluster at {creds.server} rejected Pilothouse's credentials (401)",
            hint="the stored credentials are expired or revoked; re-import the cluster",
        )
    if response.status_code != 200:
        raise errors.ClusterUnreachable(
            f"{creds.server}{path} answered {response.status_code}", hint="check the API server's health"
        )
    return response.json()


def _names(item: Mapping[str, Any]) -> set[str]:
    return {
        str(item.get("name", "")),
        str(item.get("singularName", "") or ""),
        str(item.get("kind", "")).lower(),
        *(str(s) for s in item.get("shortNames") or ()),
    } - {""}


async def resolve_resource(creds: ClusterCredentials, text: str) -> ServedResource:
    """What ``text`` names on this cluster: ``pods``, ``pod``, ``po``, ``deployments.apps``, ``pods/log``.

    Like kubectl, a name without a group prefers the core group, then the first
    group (in discovery order) that serves it. ``InvalidInput`` if none does.
    """
    name_text, _, subresource = text.strip().lower().partition("/")
    name, _, group_hint = name_text.partition(".")
    try:
        async with httpx2.AsyncClient(
            verify=kube_client.ssl_context_for(creds),
            timeout=10.0,
            trust_env=False,
            headers={"Authorization": f"Bearer {creds.token}"} if creds.token else {},
        ) as http:
            versions: list[tuple[str, str]] = []
            if not group_hint:
                versions.append(("", "v1"))
            for group in (await _discovery(http, creds, "/apis")).get("groups") or ():
                if not group_hint or group.get("name") == group_hint:
                    versions.append((str(group["name"]), str(group["preferredVersion"]["version"])))
            documents = await asyncio.gather(
                *(_discovery(http, creds, f"/apis/{g}/{v}" if g else f"/api/{v}") for g, v in versions)
            )
    except errors.PilothouseError:
        raise
    except Exception as exc:
        raise kube_client.translate(exc, creds) from None
    for (group, version), document in zip(versions, documents, strict=True):
        items = document.get("resources") or ()
        for item in items:
            if "/" in str(item.get("name", "")) or name not in _names(item):
                continue
            plural = str(item["name"])
            if subresource and not any(i.get("name") == f"{plural}/{subresource}" for i in items):
                raise errors.InvalidInput(
                    f"{plural} has no subresource {subresource!r} on this cluster",
                    hint="e.g. pods/log, pods/exec, deployments.apps/scale",
                )
            return ServedResource(group, version, plural, subresource, bool(item.get("namespaced")))
    raise errors.InvalidInput(
        f"the cluster at {creds.server} serves no resource named {text!r}",
        hint="use a resource's plural name, e.g. pods, deployments.apps, nodes (see `kubectl api-resources`)",
    )
