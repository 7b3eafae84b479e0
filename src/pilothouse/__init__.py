"""Pilothouse: a self-hosted managed-Kubernetes control plane.

The package is layered (checked by import-linter, see ``.importlinter``):
``cli``/``api`` → ``fleet``/``reconcile`` → ``providers`` → ``kube``/``store`` →
the leaf modules ``errors``, ``vocabulary`` and ``settings``.
"""

__version__ = "0.1.0"
