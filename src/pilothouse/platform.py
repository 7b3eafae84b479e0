"""Wiring: one ``Platform`` holds the settings, the store and the services.

The CLI and the API server both start from ``Platform.open(settings)``: it
opens (and migrates) the database, loads the secret key and builds the
services, so every entry point sees the same state the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from pilothouse import errors
from pilothouse.fleet import alerting, certificates, notify, rollouts, upgrades
from pilothouse.fleet.alerts import Alerts
from pilothouse.fleet.changes import ChangeFeed
from pilothouse.fleet.event_log import EventLog
from pilothouse.fleet.inventory import FleetInventory
from pilothouse.fleet.monitoring import HealthMonitor
from pilothouse.fleet.operations import OperationRunner
from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.identity.policy import Role
from pilothouse.settings import Settings
from pilothouse.store.alerts import AlertStore
from pilothouse.store.db import Database
from pilothouse.store.events import EventStore
from pilothouse.store.health import HealthStore
from pilothouse.store.leadership import Leadership
from pilothouse.store.operations import OperationStore
from pilothouse.store.secrets import SecretBox
from pilothouse.store.tokens import TokenStore

BOOTSTRAP_TOKEN_NAME = "bootstrap-admin"  # noqa: S105 - a token's name


@dataclass
class Platform:
    settings: Settings
    db: Database
    box: SecretBox
    clusters: ClusterRegistry
    tokens: TokenStore
    health: HealthMonitor
    inventory: FleetInventory
    changes: ChangeFeed
    alerts: Alerts
    events: EventLog
    operations: OperationRunner
    leadership: Leadership
    upgrades: upgrades.Upgrades
    rollouts: rollouts.Rollouts
    certificates: certificates.Certificates

    @classmethod
    def open(cls, settings: Settings) -> Platform:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = Database(settings.effective_database_url)
        db.migrate()
        box = SecretBox.from_file(settings.effective_secret_key_file)
        clusters = ClusterRegistry(settings, db, box)
        monitor = HealthMonitor(
            clusters, HealthStore(db), slo=settings.slo, timeout=settings.health_timeout_seconds
        )
        inventory = FleetInventory(clusters.credentials)
        rules, channels = _alerting_config(settings)
        operation_store = OperationStore(db)
        runner = OperationRunner(
            operation_store,
            clusters.leases,
            {
                upgrades.KIND: upgrades.ControlPlaneUpgrade(clusters),
                certificates.KIND: certificates.CertificateRotation(clusters),
                rollouts.KIND: rollouts.NodeRollout(clusters, operation_store),
            },
        )
        return cls(
            settings=settings,
            db=db,
            box=box,
            clusters=clusters,
            tokens=TokenStore(db),
            health=monitor,
            inventory=inventory,
            changes=ChangeFeed(),
            alerts=Alerts(clusters, monitor, inventory, AlertStore(db), rules=rules, channels=channels),
            events=EventLog(
                inventory,
                EventStore(db),
                retention=timedelta(days=settings.event_retention_days),
                max_per_cluster=settings.event_max_per_cluster,
            ),
            operations=runner,
            leadership=Leadership(db),
            upgrades=upgrades.Upgrades(clusters, inventory, operation_store),
            rollouts=rollouts.Rollouts(clusters, operation_store, runner),
            certificates=certificates.Certificates(clusters, operation_store),
        )

    def ensure_bootstrap_token(self) -> str | None:
        """Issue the bootstrap admin token if no token exists yet; return it (shown once) or None."""
        if self.tokens.count() > 0:
            return None
        token, _info = self.tokens.issue(BOOTSTRAP_TOKEN_NAME, (Role.PLATFORM_ADMIN.value,))
        return token

    def now(self) -> datetime:
        return datetime.now(UTC)

    def close(self) -> None:
        self.leadership.release()
        self.db.dispose()


def _alerting_config(settings: Settings) -> tuple[alerting.AlertRulesConfig, tuple[notify.AnyChannel, ...]]:
    """Validate the alert rule overrides and notification channels of the settings."""
    try:
        rules = alerting.AlertRulesConfig.from_overrides(settings.alert_rules)
        channels = notify.NotificationConfig.model_validate(
            {"channels": settings.notification_channels}
        ).channels
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise errors.InvalidInput(
            f"invalid alerting settings: {problems}",
            hint="fix alert_rules / notification_channels in the Pilothouse config file",
        ) from None
    return rules, tuple(channels)
