"""Which API versions a cluster's stored objects and Helm releases were written with.

The API server converts every object to the version a client asks for, so a
live object never shows the version it was created with. Two records do:

- ``kubectl.kubernetes.io/last-applied-configuration``: ``kubectl apply``
  stores the manifest it applied, with its ``apiVersion`` and ``kind``. Every
  listable resource found by discovery (``/api``, ``/apis``, each group's
  preferred version first) is listed as ``PartialObjectMetadataList``
  (metadata only, 250 per page, ``limit``/``continue``), so the annotation is
  read without the objects' specs or a Secret's data. Only the annotation's
  ``apiVersion`` and ``kind`` are kept; the rest (which, for a Secret applied
  with kubectl, includes its data) is dropped at once.
- Helm releases: Helm 3 stores each revision in a Secret of type
  ``helm.sh/release.v1`` (``.data.release``: base64 of gzip of the release
  JSON; its ``manifest`` is multi-document YAML). The Secrets are listed by
  field selector, metadata only, to find each release's newest revision (the
  one ``helm upgrade`` compares against; older revisions are history), and
  only those are read whole and decoded. PyYAML's ``safe_load_all`` parses
  the manifests and hooks.

``scan`` returns plain records (``ApiUsageScan``); the caller decides which
(group, version, kind) matter through ``keep`` (``fleet.upgrades`` keeps the
deprecated and removed ones, ``fleet.api_lifecycle``), so a cluster of
thousands of objects yields a handful of records. The whole scan has a time
budget: when it runs out, what was read so far comes back with
``complete=False``. A resource type or release that cannot be read is noted
in ``skipped`` and the scan goes on; failing discovery raises the translated
error (``kube.client.translate``). httpx (lightkube's transport) does the
HTTP; the parsing helpers are pure and tested on plain data.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx2
import yaml

from pilothouse import errors
from pilothouse.kube import client as kube_client
from pilothouse.kube import objects
from pilothouse.kube.credentials import ClusterCredentials

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
HELM_RELEASE_TYPE = "helm.sh/release.v1"
PAGE = 250
HELM_PAGE = 500
#: A decoded Helm release larger than this is not read (Secrets hold at most 1 MiB compressed).
MAX_RELEASE_BYTES = 64 * 1024 * 1024
METADATA_ONLY = objects.METADATA_ONLY
_HELM_SECRET_NAME = re.compile(r"^sh\.helm\.release\.v1\.(.+)\.v(\d+)$")
_GZIP_MAGIC = b"\x1f\x8b"

#: Decides whether a use of (group, version, kind) is worth a record; all uses are counted anyway.
Keep = Callable[[str, str, str], bool]


def keep_all(group: str, version: str, kind: str) -> bool:
    return True


class Origin(StrEnum):
    LAST_APPLIED = "last-applied-configuration"
    HELM_RELEASE = "helm-release"


@dataclass(frozen=True)
class ApiUsage:
    """One object or release that uses ``api_version``/``kind``."""

    api_version: str
    kind: str
    origin: Origin
    #: "last-applied-configuration of ConfigMap default/web", "Helm release default/web (revision 3)"
    source: str

    @property
    def group(self) -> str:
        return split_api_version(self.api_version)[0]

    @property
    def version(self) -> str:
        return split_api_version(self.api_version)[1]


@dataclass(frozen=True)
class HelmRelease:
    """The API types one Helm release revision's manifest and hooks use, in order, each once."""

    namespace: str
    name: str
    revision: int
    status: str
    types: tuple[tuple[str, str], ...]  # (apiVersion, kind) of the manifest's documents
    hook_types: tuple[tuple[str, str], ...]
    malformed: int = 0  # documents that were not YAML mappings with apiVersion and kind

    @property
    def source(self) -> str:
        return f"Helm release {self.namespace}/{self.name} (revision {self.revision})"


@dataclass
class ApiUsageScan:
    """What one scan found; ``uses`` holds only what ``keep`` kept, at most ``per_type`` per type."""

    uses: list[ApiUsage] = field(default_factory=list)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (apiVersion, kind) -> uses seen
    omitted: dict[tuple[str, str], int] = field(default_factory=dict)  # kept uses beyond per_type
    resource_types: int = 0  # resource types listed
    objects: int = 0  # objects whose metadata was read
    annotated: int = 0  # of those, with a last-applied-configuration
    malformed: int = 0  # annotations and release documents that could not be parsed
    helm_releases: int = 0  # releases whose newest revision was read
    skipped: list[str] = field(default_factory=list)  # what could not be read, and why
    complete: bool = True  # False when the time budget ran out


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` → ``("apps", "v1")``; ``v1`` → ``("", "v1")``."""
    group, _, version = api_version.strip().rpartition("/")
    return group, version


def _type_of(document: Any) -> tuple[str, str] | None:
    if not isinstance(document, Mapping):
        return None
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return None
    return api_version.strip(), kind.strip()


def parse_last_applied(text: str) -> tuple[str, str] | None:
    """The ``(apiVersion, kind)`` a last-applied-configuration was applied as; ``None`` when malformed."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return _type_of(document)


def manifest_types(manifest: str) -> tuple[list[tuple[str, str]], int]:
    """The ``(apiVersion, kind)`` of each document of a multi-document YAML manifest, each once,
    and how many non-empty documents were not parseable objects. ``kind: *List`` documents
    count with their items, as Helm applies them."""
    found: dict[tuple[str, str], None] = {}
    malformed = 0
    documents = yaml.safe_load_all(manifest)
    while True:
        try:
            document = next(documents)
        except StopIteration:
            break
        except yaml.YAMLError:
            malformed += 1  # the parser cannot resume after an error: the rest is lost too
            break
        if document is None:
            continue
        pending = [document]
        while pending:
            current = pending.pop(0)
            typed = _type_of(current)
            if typed is None:
                malformed += 1
                continue
            found.setdefault(typed)
            items = current.get("items")
            if typed[1].endswith("List") and isinstance(items, list):
                pending.extend(items)
    return list(found), malformed


def _decompress(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    out = inflater.decompress(data, MAX_RELEASE_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"the release is larger than {MAX_RELEASE_BYTES} bytes decompressed")
    if not inflater.eof:
        raise ValueError("truncated gzip data")
    return out


def decode_helm_release(data_release: str) -> dict[str, Any]:
    """The release JSON in a ``helm.sh/release.v1`` Secret's ``.data.release`` as the API returns it
    (base64 of Helm's own base64 of gzip of JSON; old Helm versions skipped the gzip).
    ``ValueError`` when it is not that."""
    try:
        helm_encoded = base64.b64decode(data_release, validate=True)
        raw = base64.b64decode(helm_encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = _decompress(raw)
        except zlib.error as exc:
            raise ValueError(f"not gzip: {exc}") from None
    try:
        release = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(release, dict):
        raise ValueError("not a release object")
    return release


def helm_release_types(release: Mapping[str, Any], *, namespace: str = "", name: str = "") -> HelmRelease:
    """The API types a decoded release uses; ``namespace``/``name`` fill in what the JSON lacks."""
    info = release.get("info") if isinstance(release.get("info"), Mapping) else {}
    manifest = release.get("manifest")
    types, malformed = manifest_types(manifest) if isinstance(manifest, str) else ([], 0)
    hook_types: dict[tuple[str, str], None] = {}
    for hook in release.get("hooks") or []:
        hook_manifest = hook.get("manifest") if isinstance(hook, Mapping) else None
        if isinstance(hook_manifest, str):
            found, bad = manifest_types(hook_manifest)
            hook_types.update(dict.fromkeys(found))
            malformed += bad
    revision = release.get("version")
    return HelmRelease(
        namespace=str(release.get("namespace") or namespace),
        name=str(release.get("name") or name),
        revision=revision if isinstance(revision, int) else 0,
        status=str(info.get("status", "")) if isinstance(info, Mapping) else "",
        types=tuple(types),
        hook_types=tuple(hook_types),
        malformed=malformed,
    )


@dataclass(frozen=True)
class HelmReleaseRef:
    """The Secret holding one release revision, from its metadata."""

    namespace: str
    secret: str
    release: str
    revision: int
    status: str


def helm_release_ref(metadata: Mapping[str, Any]) -> HelmReleaseRef | None:
    """Which release and revision a ``helm.sh/release.v1`` Secret holds: its labels
    (``name``, ``version``, ``status``), else its name ``sh.helm.release.v1.NAME.vN``."""
    labels = metadata.get("labels") or {}
    secret = str(metadata.get("name", ""))
    by_name = _HELM_SECRET_NAME.match(secret)
    release = str(labels.get("name") or (by_name[1] if by_name else ""))
    version = str(labels.get("version") or (by_name[2] if by_name else ""))
    if not release or not version.isdigit():
        return None
    return HelmReleaseRef(
        namespace=str(metadata.get("namespace", "")),
        secret=secret,
        release=release,
        revision=int(version),
        status=str(labels.get("status", "")),
    )


def newest_revisions(refs: Iterable[HelmReleaseRef]) -> list[HelmReleaseRef]:
    """Each release's newest revision, unless that revision records an uninstall (``--keep-history``)."""
    newest: dict[tuple[str, str], HelmReleaseRef] = {}
    for ref in refs:
        key = (ref.namespace, ref.release)
        if key not in newest or ref.revision > newest[key].revision:
            newest[key] = ref
    return sorted(
        (r for r in newest.values() if r.status != "uninstalled"), key=lambda r: (r.namespace, r.release)
    )


def listable_resources(discovered: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[objects.ApiResource]:
    """Each listable resource once, in the first version that serves it: ``discovered`` holds
    ``(group, version, APIResourceList)`` with each group's preferred version first."""
    found: dict[tuple[str, str], objects.ApiResource] = {}
    for group, version, body in discovered:
        for item in body.get("resources") or []:
            name = str(item.get("name", ""))
            if "/" in name or "list" not in (item.get("verbs") or []) or (group, name) in objects.SKIPPED:
                continue
            found.setdefault(
                (group, name),
                objects.ApiResource(
                    group, version, name, str(item.get("kind", "")), bool(item.get("namespaced"))
                ),
            )
    return sorted(found.values(), key=lambda r: (r.group, r.name))


def _object_name(metadata: Mapping[str, Any]) -> str:
    namespace, name = metadata.get("namespace"), str(metadata.get("name", ""))
    return f"{namespace}/{name}" if namespace else name


class _Collector:
    """The scan's results so far; kept apart from the tasks so a timeout loses nothing already read."""

    def __init__(self, keep: Keep, per_type: int) -> None:
        self.keep = keep
        self.per_type = per_type
        self.scan = ApiUsageScan()
        self._listed: dict[tuple[str, str], int] = {}

    def add(self, api_version: str, kind: str, origin: Origin, source: str) -> None:
        key = (api_version, kind)
        self.scan.counts[key] = self.scan.counts.get(key, 0) + 1
        group, version = split_api_version(api_version)
        if not self.keep(group, version, kind):
            return
        if self._listed.get(key, 0) >= self.per_type:
            self.scan.omitted[key] = self.scan.omitted.get(key, 0) + 1
            return
        self._listed[key] = self._listed.get(key, 0) + 1
        self.scan.uses.append(ApiUsage(api_version, kind, origin, source))

    def add_release(self, release: HelmRelease) -> None:
        self.scan.helm_releases += 1
        self.scan.malformed += release.malformed
        for api_version, kind in release.types:
            self.add(api_version, kind, Origin.HELM_RELEASE, release.source)
        hook_source = release.source[:-1] + ", hook)"
        for api_version, kind in release.hook_types:
            self.add(api_version, kind, Origin.HELM_RELEASE, hook_source)


def _status_error(creds: ClusterCredentials, path: str, response: httpx2.Response) -> errors.PilothouseError:
    status = response.status_code
    if status == 401:
        return errors.Unauthenticated(
            f"the cluster at {creds.server} rejected the credentials (401 Unauthorized)",
            hint="the token or certificate is expired, revoked or for another cluster; get fresh credentials",
        )
    if status == 403:
        return errors.Forbidden(
            f"the credentials may not read {path} at {creds.server} (403)",
            hint="scanning API usage needs list access to every resource (e.g. cluster-admin)",
        )
    return errors.ClusterUnreachable(
        f"{creds.server}{path} answered {status}: {response.text[:256]}",
        hint="check the API server's health and logs",
    )


async def _get(
    http: httpx2.AsyncClient,
    creds: ClusterCredentials,
    path: str,
    *,
    accept: str = "application/json",
    params: Mapping[str, str | int] | None = None,
) -> Any:
    response = await http.get(creds.server + path, params=dict(params or {}), headers={"Accept": accept})
    if response.status_code != 200:
        raise _status_error(creds, path, response)
    return response.json()


async def _discover(
    http: httpx2.AsyncClient, creds: ClusterCredentials, found: _Collector
) -> list[objects.ApiResource]:
    core = await _get(http, creds, "/api")
    groups = await _get(http, creds, "/apis")
    wanted: list[tuple[str, str]] = [("", str(v)) for v in core.get("versions") or []]
    for group in groups.get("groups") or []:
        preferred = (group.get("preferredVersion") or {}).get("version")
        versions = [str(v["version"]) for v in group.get("versions") or []]
        wanted += [(str(group["name"]), v) for v in sorted(versions, key=lambda v: v != preferred)]
    bodies = await asyncio.gather(
        *(_get(http, creds, f"/apis/{g}/{v}" if g else f"/api/{v}") for g, v in wanted),
        return_exceptions=True,
    )
    discovered: list[tuple[str, str, Mapping[str, Any]]] = []
    for (group, version), body in zip(wanted, bodies, strict=True):
        if isinstance(body, errors.PilothouseError):  # e.g. an aggregated API whose server is down
            found.scan.skipped.append(f"{group or 'core'}/{version}: {body.message}")
        elif isinstance(body, BaseException):
            raise body
        else:
            discovered.append((group, version, body))
    return listable_resources(discovered)


async def _scan_resource(
    http: httpx2.AsyncClient, creds: ClusterCredentials, resource: objects.ApiResource, found: _Collector
) -> None:
    params: dict[str, str | int] = {"limit": PAGE}
    while True:
        try:
            body = await _get(http, creds, resource.path(), accept=METADATA_ONLY, params=params)
        except errors.PilothouseError as exc:  # forbidden, gone (an expired continue token), unavailable
            found.scan.skipped.append(f"{resource.qualified}: {exc.message}")
            return
        for item in body.get("items") or []:
            metadata = item.get("metadata") or {}
            found.scan.objects += 1
            text = (metadata.get("annotations") or {}).get(LAST_APPLIED)
            if not text:
                continue
            found.scan.annotated += 1
            typed = parse_last_applied(text)
            if typed is None:
                found.scan.malformed += 1
                continue
            found.add(
                *typed, Origin.LAST_APPLIED, f"{LAST_APPLIED} of {resource.kind} {_object_name(metadata)}"
            )
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            found.scan.resource_types += 1
            return
        params = {"limit": PAGE, "continue": token}


async def _helm_refs(http: httpx2.AsyncClient, creds: ClusterCredentials) -> list[HelmReleaseRef]:
    refs: list[HelmReleaseRef] = []
    params: dict[str, str | int] = {"limit": HELM_PAGE, "fieldSelector": f"type={HELM_RELEASE_TYPE}"}
    while True:
        body = await _get(http, creds, "/api/v1/secrets", accept=METADATA_ONLY, params=params)
        for item in body.get("items") or []:
            ref = helm_release_ref(item.get("metadata") or {})
            if ref is not None:
                refs.append(ref)
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return refs
        params = {**params, "continue": token}


async def _scan_release(
    http: httpx2.AsyncClient, creds: ClusterCredentials, ref: HelmReleaseRef, found: _Collector
) -> None:
    label = f"Helm release {ref.namespace}/{ref.release} (revision {ref.revision})"
    try:
        secret = await _get(http, creds, f"/api/v1/namespaces/{ref.namespace}/secrets/{ref.secret}")
    except errors.PilothouseError as exc:  # deleted meanwhile (a newer revision pruned it), forbidden
        found.scan.skipped.append(f"{label}: {exc.message}")
        return
    try:
        release = decode_helm_release(str((secret.get("data") or {}).get("release", "")))
    except ValueError as exc:
        found.scan.malformed += 1
        found.scan.skipped.append(f"{label}: cannot decode: {exc}")
        return
    found.add_release(helm_release_types(release, namespace=ref.namespace, name=ref.release))


async def _scan_helm(
    http: httpx2.AsyncClient, creds: ClusterCredentials, found: _Collector, gate: asyncio.Semaphore
) -> None:
    try:
        async with gate:
            refs = newest_revisions(await _helm_refs(http, creds))
    except errors.PilothouseError as exc:
        found.scan.skipped.append(f"Helm releases: {exc.message}")
        return

    async def one(ref: HelmReleaseRef) -> None:
        async with gate:
            await _scan_release(http, creds, ref, found)

    async with asyncio.TaskGroup() as tasks:
        for ref in refs:
            tasks.create_task(one(ref))


async def scan(
    creds: ClusterCredentials,
    *,
    keep: Keep = keep_all,
    per_type: int = 20,
    timeout: float = 30.0,
    concurrency: int = 8,
) -> ApiUsageScan:
    """The API versions the cluster's last-applied configurations and Helm releases use
    (see the module docstring). Records at most ``per_type`` uses of each (apiVersion, kind)
    that ``keep`` accepts and counts the rest; stops after ``timeout`` seconds."""
    found = _Collector(keep, per_type)
    gate = asyncio.Semaphore(concurrency)

    async def annotations() -> None:
        resources = await _discover(http, creds, found)

        async def one(resource: objects.ApiResource) -> None:
            async with gate:
                await _scan_resource(http, creds, resource, found)

        async with asyncio.TaskGroup() as tasks:
            for resource in resources:
                tasks.create_task(one(resource))

    headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
    try:
        async with httpx2.AsyncClient(
            verify=kube_client.ssl_context_for(creds),
            timeout=min(timeout, 15.0),
            trust_env=False,
            headers=headers,
        ) as http:
            try:
                async with asyncio.timeout(timeout), asyncio.TaskGroup() as tasks:
                    tasks.create_task(annotations())
                    tasks.create_task(_scan_helm(http, creds, found, gate))
            except TimeoutError:
                found.scan.complete = False
    except Exception as exc:
        raise kube_client.translate(exc, creds) from None
    return found.scan
