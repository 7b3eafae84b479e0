"""Operations, upgrade plans and certificates through the REST API, on the shared cluster."""

from __future__ import annotations

import httpx

from pilothouse.api.app import create_app
from pilothouse.platform import Platform
from pilothouse.store.clusters import ClusterRecord
from tests.conftest import SHARED_CLUSTER
from tests.integration.api_server import serving


async def test_plans_certificates_and_refusals_through_the_api(
    platform: Platform, shared_cluster: ClusterRecord
) -> None:
    operator, _ = platform.tokens.issue("ops-operator", ("operator",))
    viewer, _ = platform.tokens.issue("ops-viewer", ("viewer",))
    before = platform.operations.store.list(cluster=SHARED_CLUSTER)
    with serving(create_app(platform, reconcile=False)) as api:
        async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {operator}"}) as http:
            plan = await http.get(f"/api/v1/clusters/{SHARED_CLUSTER}/upgrade-plan", params={"to": "1.35.4"})
            certificates = await http.get(f"/api/v1/clusters/{SHARED_CLUSTER}/certificates")
            refused = await http.post(f"/api/v1/clusters/{SHARED_CLUSTER}/upgrades", json={"to": "1.35.4"})
            malformed = await http.post(f"/api/v1/clusters/{SHARED_CLUSTER}/upgrades", json={"to": "latest"})
            unknown = await http.post("/api/v1/operations/no-such-operation/pause")
            listed = await http.get("/api/v1/operations", params={"cluster": SHARED_CLUSTER})
        async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {viewer}"}) as http:
            forbidden = await http.post(f"/api/v1/clusters/{SHARED_CLUSTER}/certificates/rotate")

    assert plan.status_code == 200, plan.text
    body = plan.json()
    assert body["allowed"] is False
    assert [b["code"] for b in body["blockers"]] == ["version-not-newer"]
    assert body["steps"][0]["name"] == "preflight"

    assert certificates.status_code == 200
    paths = {c["path"]: c for c in certificates.json()}
    assert paths["ca.crt"]["is_ca"] is True
    assert 360 < paths["apiserver.crt"]["days_left"] <= 366

    assert refused.status_code == 409
    assert "is not newer" in refused.json()["message"]
    assert malformed.status_code in (400, 422)
    assert "malformed target version" in malformed.json()["message"]
    assert unknown.status_code == 404
    assert listed.status_code == 200
    assert forbidden.status_code == 403
    assert platform.operations.store.list(cluster=SHARED_CLUSTER) == before  # nothing was recorded
