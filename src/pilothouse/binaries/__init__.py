"""Kubernetes binaries for local clusters: a version-keyed cache and two ways to fill it.

Owns the binaries Pilothouse runs for its ``local`` provider (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok and, for benchmarks, kwokctl), stored
under ``Settings().binaries_dir / "v1.36.3"`` with a ``manifest.json``. The local
provider asks :class:`cache.BinaryCache` for paths (``require``); the CLI
(``pilothouse binaries …``) calls :func:`installer.install`.

Modules, from pure to effectful:

- ``catalog``: supported versions and their pinned dependency versions (pure).
- ``manifest``: the ``manifest.json`` record (pure data, JSON in and out).
- ``cache``: the on-disk layout, atomic installs, checksum verification.
- ``download``: official release downloads (httpx), checked against published digests.
- ``gobuild``: ``--from-source`` builds with the Go toolchain from wrapper modules.
- ``probe``: runs each binary's ``--version`` and checks what it reports.
- ``installer``: ties the above together; the only entry point that installs.
"""
