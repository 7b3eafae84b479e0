"""Alerts end to end: kill a real API server, the alert fires within 15 s, reaches every
channel (webhook, Slack-compatible, e-mail, a real Alertmanager) and resolves after restart."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from pilothouse.api.app import create_app
from pilothouse.binaries.cache import BinaryCache
from pilothouse.fleet import alerting, health, notify, requests
from pilothouse.fleet.alerts import Alerts
from pilothouse.platform import Platform
from pilothouse.providers.local.provider import LocalRuntime
from tests.integration.api_server import serving
from tests.integration.test_notify import (  # real receivers, shared with the channel tests
    Mailbox,
    Received,
    alertmanager,  # noqa: F401
    alertmanager_alerts,
    http_receiver,  # noqa: F401
    smtp_server,  # noqa: F401
)

pytestmark = [pytest.mark.own_cluster, pytest.mark.slow]
NAME = "alerted"


def _unreachable(evaluation: alerting.Evaluation, status: alerting.AlertStatus) -> list[alerting.AlertState]:
    return [
        s
        for s in evaluation.states.values()
        if s.rule is alerting.Rule.CLUSTER_UNREACHABLE
        and s.labels.get("cluster") == NAME
        and s.status is status
    ]


async def test_cluster_unreachable_fires_reaches_every_channel_and_resolves(
    platform: Platform,
    installed_binaries: BinaryCache,
    http_receiver: tuple[str, Received],  # noqa: F811
    smtp_server: tuple[int, Mailbox],  # noqa: F811
    alertmanager: str,  # noqa: F811
) -> None:
    url, received = http_receiver
    smtp_port, mailbox = smtp_server
    channels = notify.NotificationConfig.model_validate(
        {
            "channels": [
                {"type": "webhook", "name": "hook", "url": f"{url}/hook"},
                {"type": "slack", "name": "chat", "url": f"{url}/slack"},
                {"type": "alertmanager", "name": "am", "url": alertmanager},
                {
                    "type": "email",
                    "name": "mail",
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "sender": "pilothouse@example.test",
                    "recipients": ["oncall@example.test"],
                },
            ]
        }
    ).channels
    alerts = Alerts(
        platform.clusters,
        platform.health,
        platform.inventory,
        platform.alerts.store,
        rules=alerting.AlertRulesConfig(),
        channels=channels,
    )
    record = await platform.clusters.create_local(
        requests.parse(requests.CreateLocalCluster, name=NAME, nodes=1)
    )
    try:
        ours = [record]
        health.record_results(
            platform.health.store, await health.probe_fleet(platform.clusters, records=ours)
        )
        platform.health.latest.update(
            {h.cluster: h for h in await health.probe_fleet(platform.clusters, records=ours)}
        )
        assert _unreachable(await alerts.evaluate_once(), alerting.AlertStatus.FIRING) == []

        platform.clusters.local.kill(LocalRuntime.from_dict(record.runtime), "kube-apiserver-0")
        killed = time.monotonic()
        fired: list[alerting.AlertState] = []
        while not fired:
            assert time.monotonic() - killed < 15, "ClusterUnreachable did not fire within 15 s"
            platform.health.latest.update(
                {h.cluster: h for h in await health.probe_fleet(platform.clusters, records=ours)}
            )
            fired = _unreachable(await alerts.evaluate_once(), alerting.AlertStatus.FIRING)
            if not fired:
                await asyncio.sleep(1)
        await alerts.drain()

        paths = [path for _at, path, _body in received.requests]
        assert "/hook" in paths
        assert "/slack" in paths
        assert len(mailbox.messages) == 1
        assert b"ClusterUnreachable" in mailbox.messages[0][2]
        in_am = [a for a in alertmanager_alerts(alertmanager) if a["labels"].get("cluster") == NAME]
        assert in_am
        assert in_am[0]["labels"]["alertname"] == "ClusterUnreachable"
        stored = platform.alerts.store.deliveries(fingerprint=fired[0].fingerprint)
        assert {d.channel for d in stored if d.ok} == {"hook", "chat", "am", "mail"}

        # Listed and acknowledged through the API like an operator would.
        token, _ = platform.tokens.issue("alerts-operator", ("operator",))
        with serving(create_app(platform, reconcile=False)) as api:
            async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}) as http:
                listed = (await http.get(f"/api/v1/alerts?cluster={NAME}")).json()
                acked = await http.post(f"/api/v1/alerts/{fired[0].fingerprint}/ack")
            assert [a["rule"] for a in listed] == ["ClusterUnreachable"]
            assert acked.status_code == 200, acked.text
            assert acked.json()["acked_by"] == "token:alerts-operator"

        await platform.clusters.start(NAME)
        resolved: list[alerting.AlertState] = []
        deadline = time.monotonic() + 30
        while not resolved:
            assert time.monotonic() < deadline, "the alert never resolved"
            platform.health.latest.update(
                {h.cluster: h for h in await health.probe_fleet(platform.clusters, records=ours)}
            )
            resolved = _unreachable(await alerts.evaluate_once(), alerting.AlertStatus.RESOLVED)
            await asyncio.sleep(0.5)
        await alerts.drain()
        kinds = [body.get("status") for _at, path, body in received.requests if path == "/hook"]
        assert kinds[-1] == "resolved"
        assert len(mailbox.messages) == 2
    finally:
        await platform.clusters.delete(NAME)
