"""Rendered control-plane configuration files."""

from __future__ import annotations

import base64

import pytest
import yaml

from pilothouse.providers.local import config_files


def test_audit_policy_never_records_secret_bodies() -> None:
    policy = yaml.safe_load(config_files.render_audit_policy())
    assert policy["kind"] == "Policy"
    secret_rule = next(
        r for r in policy["rules"] if any("secrets" in g.get("resources", []) for g in r.get("resources", []))
    )
    assert secret_rule["level"] == "Metadata"
    index = policy["rules"].index(secret_rule)
    assert all(r["level"] != "RequestResponse" for r in policy["rules"][:index])


def test_encryption_config_uses_the_key() -> None:
    key = bytes(range(32))
    config = yaml.safe_load(config_files.render_encryption_config(key))
    provider = config["resources"][0]["providers"][0]["secretbox"]["keys"][0]
    assert base64.b64decode(provider["secret"]) == key
    with pytest.raises(ValueError, match="32-byte"):
        config_files.render_encryption_config(b"short")


def test_kwok_stages_cover_nodes_and_pod_lifecycle() -> None:
    documents = list(yaml.safe_load_all(config_files.kwok_stages()))
    stages = [d for d in documents if d["kind"] == "Stage"]
    kinds = [(s["kind"], s["spec"]["resourceRef"]["kind"]) for s in stages]
    assert ("Stage", "Node") in kinds
    assert ("Stage", "Pod") in kinds
    assert any(s["spec"]["next"].get("delete") for s in stages), "a stage completes pod deletion"
    (configuration,) = [d for d in documents if d["kind"] == "KwokConfiguration"]
    assert configuration["options"]["podPlayStageParallelism"] > 4  # wider than kwok's default
