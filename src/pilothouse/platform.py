"""Wiring: one ``Platform`` holds the settings, the store and the services.

The CLI and the API server both start from ``Platform.open(settings)``: it
opens (and migrates) the database, loads the secret key and builds the
services, so every entry point sees the same state the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pilothouse.fleet.changes import ChangeFeed
from pilothouse.fleet.inventory import FleetInventory
from pilothouse.fleet.monitoring import HealthMonitor
from pilothouse.fleet.registry import ClusterRegistry
from pilothouse.identity.policy import Role
from pilothouse.settings import Settings
from pilothouse.store.db import Database
from pilothouse.store.health import HealthStore
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

    @classmethod
    def open(cls, settings: Settings) -> Platform:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = Database(settings.effective_database_url)
        db.migrate()
        box = SecretBox.from_file(settings.effective_secret_key_file)
        clusters = ClusterRegistry(settings, db, box)
        return cls(
            settings=settings,
            db=db,
            box=box,
            clusters=clusters,
            tokens=TokenStore(db),
            health=HealthMonitor(
                clusters, HealthStore(db), slo=settings.slo, timeout=settings.health_timeout_seconds
            ),
            inventory=FleetInventory(clusters.credentials),
            changes=ChangeFeed(),
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
        self.db.dispose()
