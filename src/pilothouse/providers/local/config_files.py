"""Configuration files of a local cluster's control plane, rendered as text.

Pure renderers for the audit policy, the encryption-at-rest configuration of
Secrets in etcd, and the kwok stages; ``write_file`` writes one atomically
with the given mode. Audit and encryption settings follow the Kubernetes
``audit.k8s.io/v1`` and ``apiserver.config.k8s.io/v1`` formats.
"""

from __future__ import annotations

import base64
from importlib import resources

import yaml

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version", "/metrics"]},
        {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "None", "resources": [{"group": "", "resources": ["events"]}]},
        {
            "level": "None",
            "verbs": ["patch", "update"],
            "resources": [{"group": "", "resources": ["nodes/status"]}],
        },
        # never record bodies of objects that hold credentials
        {
            "level": "Metadata",
            "resources": [
                {"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
                {"group": "authentication.k8s.io", "resources": ["tokenreviews"]},
            ],
        },
        {"level": "Metadata", "verbs": ["get", "list", "watch"]},
        {"level": "Request", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "Metadata"},
    ],
}


def render_audit_policy() -> str:
    return yaml.safe_dump(AUDIT_POLICY, sort_keys=False)


def render_encryption_config(key: bytes) -> str:
    """Secrets encrypted in etcd with ``secretbox`` (XSalsa20-Poly1305) under ``key`` (32 bytes)."""
    if len(key) != 32:
        raise ValueError("secretbox needs a 32-byte key")
    config = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [
                    {"secretbox": {"keys": [{"name": "key1", "secret": base64.b64encode(key).decode()}]}},
                    {"identity": {}},
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def kwok_stages() -> str:
    """Pilothouse's kwok lifecycle stages (package data ``kwok-stages.yaml``)."""
    return resources.files(__package__).joinpath("kwok-stages.yaml").read_text()
