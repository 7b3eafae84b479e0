"""Supported Kubernetes versions and the exact dependency versions pinned to each (pure).

Owns the answer to "which etcd, kwok, staging modules and Go settings go with
Kubernetes X?". Nothing here does I/O; ``download`` and ``gobuild`` turn a
:class:`ReleasePins` into URLs and Go modules. Supported: 1.35.4 and 1.36.3,
installed side by side (one cache directory each) so 1.35 → 1.36 upgrades are real.

Hard-won facts behind the table (checked against the Go module proxy):

- ``k8s.io/kubernetes`` points its staging modules (``k8s.io/api``, …) at
  ``./staging``, so a wrapper module must replace each with ``v0.<minor>.<patch>``.
  The authoritative list is the release's own go.mod; ``staging_modules`` below
  is what each release's go.mod lists (31 for 1.35.4, 33 for 1.36.3, which adds
  ``k8s.io/cri-streaming`` and ``k8s.io/streaming``) and is used for display and
  as a cross-check. The ``go``/``godebug`` lines are copied from it too:
  1.35.4 says ``go 1.25.0`` / ``godebug default=go1.25``, 1.36.3 ``go 1.26.0`` /
  ``godebug default=go1.26``.
- kwok tags pin one Kubernetes minor (``kwok_kubernetes``): v0.8.0 builds against
  k8s.io v0.36 (its go.mod requires v0.36.1 and ``go 1.26.0``), v0.7.0 against
  v0.33. No kwok tag targets k8s.io v0.35, and v0.8.0 does not compile against
  k8s.io v0.35, so for 1.35.4 ``gobuild`` builds kwok v0.8.0 in its own wrapper
  module with kwok's own k8s.io versions; that kwok runs fine against a 1.35 API
  server.
- etcd: kubeadm's ``DefaultEtcdVersion`` is 3.6.6 for 1.35.4 and 3.6.8 for
  1.36.3; both use 3.6.16 (a later 3.6 patch, served by the proxy), so one etcd
  build serves both. ``etcdctl`` and ``etcdutl`` (snapshots and restores) come
  from the same etcd release, so they always match the server's data format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pilothouse import errors
from pilothouse.vocabulary import CACHED_COMPONENTS, Component

#: Built and installed alongside the cached components; only benchmarks use it.
KWOKCTL = "kwokctl"
#: Binaries of the etcd release (same version): the server and its snapshot tools.
ETCD_MODULE_BINARIES: tuple[str, ...] = (Component.ETCD, Component.ETCDCTL, Component.ETCDUTL)

_VERSION_RE = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@dataclass(frozen=True)
class ReleasePins:
    """Everything needed to fetch or build the binaries for one Kubernetes release."""

    kubernetes: str
    staging: str
    etcd: str
    kwok: str
    kwok_kubernetes: str  # the Kubernetes minor ("1.36") whose k8s.io modules the kwok tag builds against
    go_directive: str
    godebug: str
    staging_modules: tuple[str, ...]

    @property
    def tag(self) -> str:
        """The release tag, ``v1.36.3``; also the name of its cache directory."""
        return f"v{self.kubernetes}"

    @property
    def major(self) -> str:
        return self.kubernetes.split(".")[0]

    @property
    def minor(self) -> str:
        return self.kubernetes.split(".")[1]

    @property
    def kubernetes_minor(self) -> str:
        """``"1.36"`` for 1.36.3; compared with :attr:`kwok_kubernetes`."""
        return f"{self.major}.{self.minor}"

    def version_of(self, binary: str) -> str:
        """The upstream version a binary reports, without a leading ``v``."""
        if binary in ETCD_MODULE_BINARIES:
            return self.etcd
        if binary in (Component.KWOK, KWOKCTL):
            return self.kwok
        return self.kubernetes

    def as_dict(self) -> dict[str, str | list[str]]:
        return {
            "kubernetes": self.kubernetes,
            "staging": self.staging,
            "etcd": self.etcd,
            "kwok": self.kwok,
            "kwok_kubernetes": self.kwok_kubernetes,
            "go_directive": self.go_directive,
            "godebug": self.godebug,
            "staging_modules": list(self.staging_modules),
        }


_STAGING_1_35 = (
    "k8s.io/api",
    "k8s.io/apiextensions-apiserver",
    "k8s.io/apimachinery",
    "k8s.io/apiserver",
    "k8s.io/cli-runtime",
    "k8s.io/client-go",
    "k8s.io/cloud-provider",
    "k8s.io/cluster-bootstrap",
    "k8s.io/code-generator",
    "k8s.io/component-base",
    "k8s.io/component-helpers",
    "k8s.io/controller-manager",
    "k8s.io/cri-api",
    "k8s.io/cri-client",
    "k8s.io/csi-translation-lib",
    "k8s.io/dynamic-resource-allocation",
    "k8s.io/endpointslice",
    "k8s.io/externaljwt",
    "k8s.io/kms",
    "k8s.io/kube-aggregator",
    "k8s.io/kube-controller-manager",
    "k8s.io/kube-proxy",
    "k8s.io/kube-scheduler",
    "k8s.io/kubectl",
    "k8s.io/kubelet",
    "k8s.io/metrics",
    "k8s.io/mount-utils",
    "k8s.io/pod-security-admission",
    "k8s.io/sample-apiserver",
    "k8s.io/sample-cli-plugin",
    "k8s.io/sample-controller",
)

_STAGING_1_36 = (
    "k8s.io/api",
    "k8s.io/apiextensions-apiserver",
    "k8s.io/apimachinery",
    "k8s.io/apiserver",
    "k8s.io/cli-runtime",
    "k8s.io/client-go",
    "k8s.io/cloud-provider",
    "k8s.io/cluster-bootstrap",
    "k8s.io/code-generator",
    "k8s.io/component-base",
    "k8s.io/component-helpers",
    "k8s.io/controller-manager",
    "k8s.io/cri-api",
    "k8s.io/cri-client",
    "k8s.io/cri-streaming",
    "k8s.io/csi-translation-lib",
    "k8s.io/dynamic-resource-allocation",
    "k8s.io/endpointslice",
    "k8s.io/externaljwt",
    "k8s.io/kms",
    "k8s.io/kube-aggregator",
    "k8s.io/kube-controller-manager",
    "k8s.io/kube-proxy",
    "k8s.io/kube-scheduler",
    "k8s.io/kubectl",
    "k8s.io/kubelet",
    "k8s.io/metrics",
    "k8s.io/mount-utils",
    "k8s.io/pod-security-admission",
    "k8s.io/sample-apiserver",
    "k8s.io/sample-cli-plugin",
    "k8s.io/sample-controller",
    "k8s.io/streaming",
)

SUPPORTED: dict[str, ReleasePins] = {
    "1.35.4": ReleasePins(
        kubernetes="1.35.4",
        staging="v0.35.4",
        etcd="3.6.16",
        kwok="0.8.0",
        kwok_kubernetes="1.36",  # ≠ 1.35: gobuild builds kwok in its own wrapper module
        go_directive="1.25.0",
        godebug="default=go1.25",
        staging_modules=_STAGING_1_35,
    ),
    "1.36.3": ReleasePins(
        kubernetes="1.36.3",
        staging="v0.36.3",
        etcd="3.6.16",
        kwok="0.8.0",
        kwok_kubernetes="1.36",
        go_directive="1.26.0",
        godebug="default=go1.26",
        staging_modules=_STAGING_1_36,
    ),
}


def normalise_version(version: str) -> str:
    """``"v1.36.3"`` or ``"1.36.3"`` → ``"1.36.3"``; anything else is ``InvalidInput``."""
    match = _VERSION_RE.match(version.strip())
    if match is None:
        raise errors.InvalidInput(
            f"malformed Kubernetes version {version!r}: expected MAJOR.MINOR.PATCH such as 1.36.3",
            hint=f"supported versions: {', '.join(supported_versions())}",
            version=version,
        )
    return ".".join(match.groups())


def version_key(version: str) -> tuple[int, ...]:
    """Sort key for normalised versions (numeric, so 1.9.0 < 1.10.0)."""
    return tuple(int(part) for part in normalise_version(version).split("."))


def supported_versions() -> list[str]:
    return sorted(SUPPORTED, key=lambda v: tuple(int(p) for p in v.split(".")))


def pins_for(version: str) -> ReleasePins:
    """The pins for a supported version; ``InvalidInput`` naming the supported ones otherwise."""
    normalised = normalise_version(version)
    try:
        return SUPPORTED[normalised]
    except KeyError:
        raise errors.InvalidInput(
            f"Kubernetes {normalised} is not supported by this Pilothouse",
            hint=f"supported versions: {', '.join(supported_versions())}",
            version=normalised,
        ) from None


def binary_names(*, with_kwokctl: bool = True) -> tuple[str, ...]:
    """File names an install produces, in a stable order."""
    names = tuple(str(c) for c in CACHED_COMPONENTS)
    return (*names, KWOKCTL) if with_kwokctl else names
