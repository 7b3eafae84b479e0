"""Every object a cluster's API serves, reduced to identity: resource, namespace/name, uid, resourceVersion.

Used by DR drills (``fleet.dr_drill``) to compare a restored cluster with its
source object by object. Discovery (``/api``, ``/apis``) finds every
listable resource in each group's preferred version; each is listed as
``PartialObjectMetadataList`` (metadata only, so 20,000 objects are a few
megabytes), 500 per page. ``resource_version`` with ``exact=True`` lists the
cluster as it was at that etcd revision (``resourceVersionMatch=Exact``):
the source of a drill is listed exactly as its snapshot holds it. httpx (the
client lightkube is built on) does the HTTP; TLS and errors go through
``kube.client``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2

from pilothouse import errors
from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials

PAGE = 500
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
#: Served but not stored in etcd (computed per request), or the same objects under a second name.
SKIPPED = {("", "componentstatuses"), ("events.k8s.io", "events")}


@dataclass(frozen=True)
class ApiResource:
    group: str  # "" for the core group
    version: str
    name: str  # plural resource name
    kind: str
    namespaced: bool

    @property
    def qualified(self) -> str:
        """``configmaps``, ``deployments.apps``: how kubectl names a resource."""
        return f"{self.name}.{self.group}" if self.group else self.name

    def path(self) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/{self.name}"


@dataclass(frozen=True)
class ListedObject:
    resource: str  # ApiResource.qualified
    namespace: str
    name: str
    uid: str
    resource_version: str


@dataclass(frozen=True)
class Listing:
    objects: list[ListedObject]
    resources: list[ApiResource]


async def _get(http: httpx2.AsyncClient, creds: ClusterCredentials, path: str, **params: Any) -> Any:
    response = await http.get(creds.server + path, params={k: v for k, v in params.items() if v})
    if response.status_code == 410:
        raise errors.Conflict(
            f"{creds.server} no longer has the objects as of revision {params.get('resourceVersion')}: "
            "etcd compacted it",
            hint="run the drill again: the listing must follow the snapshot within minutes",
        )
    if response.status_code != 200:
        raise errors.ClusterUnreachable(
            f"{creds.server}{path} answered {response.status_code}: {response.text[:256]}",
            hint="check the API server's health and logs",
        )
    return response.json()


async def served_resources(http: httpx2.AsyncClient, creds: ClusterCredentials) -> list[ApiResource]:
    """Every listable, stored resource in each group's preferred version."""
    versions = [("", str(v)) for v in (await _get(http, creds, "/api"))["versions"]]
    groups = (await _get(http, creds, "/apis"))["groups"]
    versions += [(g["name"], g["preferredVersion"]["version"]) for g in groups]
    lists = await asyncio.gather(
        *(_get(http, creds, f"/apis/{g}/{v}" if g else f"/api/{v}") for g, v in versions)
    )
    found = []
    for (group, version), body in zip(versions, lists, strict=True):
        for item in body.get("resources", []):
            name = str(item["name"])
            if "/" in name or "list" not in item.get("verbs", []) or (group, name) in SKIPPED:
                continue
            found.append(ApiResource(group, version, name, str(item["kind"]), bool(item["namespaced"])))
    return sorted(found, key=lambda r: (r.group, r.name))


async def _list_resource(
    http: httpx2.AsyncClient,
    creds: ClusterCredentials,
    resource: ApiResource,
    resource_version: str | None,
    exact: bool,
) -> list[ListedObject]:
    objects = []
    params: dict[str, Any] = {"limit": PAGE}
    if resource_version is not None:
        params["resourceVersion"] = resource_version
        params["resourceVersionMatch"] = "Exact" if exact else "NotOlderThan"
    while True:
        body = await _get(http, creds, resource.path(), **params)
        for item in body.get("items") or []:
            meta = item.get("metadata", {})
            objects.append(
                ListedObject(
                    resource=resource.qualified,
                    namespace=str(meta.get("namespace", "")),
                    name=str(meta.get("name", "")),
                    uid=str(meta.get("uid", "")),
                    resource_version=str(meta.get("resourceVersion", "")),
                )
            )
        token = body.get("metadata", {}).get("continue")
        if not token:
            return objects
        params = {"limit": PAGE, "continue": token}  # a continue token carries the revision


def _headers(creds: ClusterCredentials) -> dict[str, str]:
    headers = {"Accept": METADATA_ONLY}
    if creds.token:
        headers["Authorization"] = f"Bearer {creds.token}"
    return headers


async def list_objects(
    creds: ClusterCredentials,
    *,
    resource_version: str | None = None,
    exact: bool = False,
    concurrency: int = 8,
    timeout: float = 60.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> Listing:
    """Every stored object the cluster serves (see the module docstring)."""
    try:
        async with httpx2.AsyncClient(
            verify=kube_client.ssl_context_for(creds),
            timeout=timeout,
            trust_env=False,
            headers=_headers(creds),
        ) as http:
            resources = await served_resources(http, creds)
            gate = asyncio.Semaphore(concurrency)
            done = 0

            async def one(resource: ApiResource) -> list[ListedObject]:
                nonlocal done
                async with gate:
                    listed = await _list_resource(http, creds, resource, resource_version, exact)
                done += 1
                if on_progress is not None:
                    on_progress(done, len(resources))
                return listed

            batches = await asyncio.gather(*(one(r) for r in resources))
    except Exception as exc:
        raise kube_client.translate(exc, creds) from None
    return Listing(objects=[o for batch in batches for o in batch], resources=resources)
