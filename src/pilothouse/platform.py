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
from pilothouse.fleet import alerting, backups, certificates, dr_drill, notify, rollouts, upgrades
from pilothouse.fleet.alerts import Alerts
from pilothouse.fleet.changes import ChangeFeed
from pilothouse.fleet.event_log import EventLog
from pilothouse.fleet.inventory import FleetInventory
from pilothouse.fleet.monitoring import HealthMonitor
from pilothouse.fleet.operations import OperationRunner
from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.identity import oidc
from pilothouse.identity.accounts import Accounts
from pilothouse.identity.cluster_access import ClusterAccess
from pilothouse.identity.policy import Role
from pilothouse.identity.rbac_sync import RbacSync
from pilothouse.identity.throttle import ThrottlePolicy
from pilothouse.settings import Settings
from pilothouse.store.alerts import AlertStore
from pilothouse.store.backups import BackupStore
from pilothouse.store.db import Database
from pilothouse.store.events import EventStore
from pilothouse.store.health import HealthStore
from pilothouse.store.identity import IdentityStore
from pilothouse.store.leadership import Leadership
from pilothouse.store.operations import OperationStore
from pilothouse.store.secrets import SecretBox
from pilothouse.store.sso import PendingLoginTable
from pilothouse.store.tokens import TokenStore

BOOTSTRAP_TOKEN_NAME = "bootstrap-admin"  # noqa: S105 - a token's name


@dataclass
class Platform:
    settings: Settings
    db: Database
    box: SecretBox
    clusters: ClusterRegistry
    tokens: TokenStore
    identity: Accounts
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
    backups: backups.Backups
    drills: dr_drill.DrDrills
    #: The OpenID Connect relying party; None while single sign-on is not configured (``sso_issuer_url``).
    sso: oidc.OidcClient | None
    #: Pilothouse's roles as RBAC in each local cluster (``identity.rbac_sync``).
    rbac_sync: RbacSync
    #: Short-lived kubeconfigs and who-can (``identity.cluster_access``).
    cluster_access: ClusterAccess

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
        backup_service = backups.Backups.from_settings(
            settings, clusters, BackupStore(db, box), operation_store
        )
        drills = dr_drill.DrDrills(clusters, backup_service, operation_store, settings.data_dir / "drills")
        runner = OperationRunner(
            operation_store,
            clusters.leases,
            {
                upgrades.KIND: upgrades.ControlPlaneUpgrade(clusters),
                certificates.KIND: certificates.CertificateRotation(clusters),
                rollouts.KIND: rollouts.NodeRollout(clusters, operation_store),
                backups.RESTORE_KIND: backups.RestoreDriver(backup_service),
                dr_drill.KIND: dr_drill.DrillDriver(drills),
            },
        )
        tokens = TokenStore(db)
        identity = _accounts(settings, IdentityStore(db, box), tokens)
        rbac_sync = RbacSync(clusters, identity, clock=identity.clock)
        return cls(
            settings=settings,
            db=db,
            box=box,
            clusters=clusters,
            tokens=tokens,
            identity=identity,
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
            backups=backup_service,
            drills=drills,
            sso=_sso_client(settings, db, box),
            rbac_sync=rbac_sync,
            cluster_access=ClusterAccess(clusters, identity, rbac_sync),
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
        if self.sso is not None:
            self.sso.close()
        self.db.dispose()


def _sso_client(settings: Settings, db: Database, box: SecretBox) -> oidc.OidcClient | None:
    """The SSO client when an issuer is configured, its pending logins in the store (any replica
    may receive the callback); a misconfiguration fails here, at start, not at the first login."""
    if not settings.sso_issuer_url:
        return None
    config = oidc.sso_config_from_settings(settings)
    return oidc.OidcClient(config, oidc.StoredPendingLogins(PendingLoginTable(db, box)))


def _accounts(settings: Settings, store: IdentityStore, tokens: TokenStore) -> Accounts:
    """Users, teams, bindings, sessions and tokens, with the settings' lifetimes and login throttling."""
    throttle = ThrottlePolicy(
        free_failures=settings.login_free_failures,
        max_delay=timedelta(seconds=settings.login_max_delay_seconds),
        lockout_failures=settings.login_lockout_failures,
        lockout=timedelta(minutes=settings.login_lockout_minutes),
        window=timedelta(minutes=max(settings.login_lockout_minutes, 15)),
    )
    return Accounts(
        store,
        tokens,
        clock=lambda: datetime.now(UTC),
        throttle=throttle,
        session_ttl=timedelta(hours=settings.session_ttl_hours),
        token_ttl=timedelta(days=settings.token_default_ttl_days)
        if settings.token_default_ttl_days
        else None,
        mfa_issuer=settings.mfa_issuer,
        session_history=timedelta(days=settings.session_history_days),
    )


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
