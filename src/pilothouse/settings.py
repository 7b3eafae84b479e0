"""Pilothouse settings: environment variables, an optional YAML file, defaults.

pydantic-settings does the loading. Precedence, highest first: explicit
arguments, ``PILOTHOUSE_*`` environment variables, the YAML file named by
``PILOTHOUSE_CONFIG`` (default ``<config dir>/config.yaml``), then defaults.
Directories default to the user's XDG directories (platformdirs).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

APP_NAME = "pilothouse"
DEFAULT_KUBERNETES_VERSION = "1.36.3"


def default_config_file() -> Path:
    explicit = os.environ.get("PILOTHOUSE_CONFIG")
    if explicit:
        return Path(explicit)
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.yaml"


class Settings(BaseSettings):
    """Everything a Pilothouse process can be configured with."""

    model_config = SettingsConfigDict(env_prefix="PILOTHOUSE_", extra="forbid")

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    cache_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)))
    config_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_config_dir(APP_NAME)))
    database_url: str = ""
    secret_key_file: Path | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8787, ge=0, le=65535)
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    release_base_url: str = "https://dl.k8s.io/release"
    etcd_release_base_url: str = "https://github.com/etcd-io/etcd/releases/download"
    kwok_release_base_url: str = "https://github.com/kubernetes-sigs/kwok/releases/download"
    #: Name of a checksum file published beside kwok's binaries (kwok publishes none today).
    kwok_checksum_file: str | None = None
    haproxy_binary: str = "haproxy"
    reconcile_interval_seconds: float = Field(default=10.0, gt=0)
    health_interval_seconds: float = Field(default=10.0, gt=0)
    health_timeout_seconds: float = Field(default=2.0, gt=0)
    #: Availability objective of every cluster (error budget = 1 - slo over 30 days).
    slo: float = Field(default=0.999, gt=0, lt=1)
    alerts_interval_seconds: float = Field(default=5.0, gt=0)
    #: Overrides of the built-in alert rules (see ``fleet.alerting.AlertRulesConfig``).
    alert_rules: dict[str, Any] = Field(default_factory=dict)
    #: Notification channels: webhook, slack, alertmanager, email (see ``fleet.notify``).
    notification_channels: list[dict[str, Any]] = Field(default_factory=list)
    log_level: str = "INFO"
    #: Control-plane process logs of local clusters rotate past this size, keeping this many copies.
    component_log_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    component_log_keep: int = Field(default=3, ge=1, le=100)
    #: Kubernetes Events are kept in the store this long (by their last timestamp) ...
    event_retention_days: float = Field(default=7.0, gt=0)
    #: ... and at most this many per cluster, the newest.
    event_max_per_cluster: int = Field(default=50_000, ge=1)
    #: How often the watched clusters' new and changed Events are written to the store.
    events_flush_interval_seconds: float = Field(default=5.0, gt=0)

    #: Where etcd snapshots are kept: ``local`` (``backup_dir``) or ``s3`` (an S3-compatible store).
    backup_storage: Literal["local", "s3"] = "local"
    #: The local backup directory (default ``<data_dir>/backups``).
    backup_dir: Path | None = None
    #: S3-compatible store for backups; credentials come from boto3's chain (AWS_* variables, ~/.aws).
    backup_s3_endpoint_url: str | None = None
    backup_s3_bucket: str = ""
    backup_s3_prefix: str = "pilothouse"
    backup_s3_region: str | None = None
    #: Scheduled etcd snapshots: ``{name, cron, clusters, keep_last, max_age_hours}`` each
    #: (see ``fleet.backup_plan.BackupSchedule``).
    backup_schedules: list[dict[str, Any]] = Field(default_factory=list)

    #: Identity and access (``identity/``): how long a signed-in session lasts ...
    session_ttl_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    #: Ended (expired or signed-out) sessions stay listed this long, then are deleted.
    session_history_days: float = Field(default=30.0, ge=0)
    #: ... how long an API token lives unless issued with another lifetime (0: never expires) ...
    token_default_ttl_days: float = Field(default=90.0, ge=0)
    #: ... login throttling: failures that cost nothing, then a delay doubling from 1 s up to
    #: ``login_max_delay_seconds``, and a lock-out of ``login_lockout_minutes`` after
    #: ``login_lockout_failures`` failures (per user and per client address) ...
    login_free_failures: int = Field(default=3, ge=0)
    login_max_delay_seconds: float = Field(default=60.0, ge=0)
    login_lockout_failures: int = Field(default=10, ge=1)
    login_lockout_minutes: float = Field(default=15.0, gt=0)
    #: ... and the issuer name authenticator apps show next to a Pilothouse TOTP entry.
    mfa_issuer: str = Field(default="Pilothouse", min_length=1, max_length=64)
    #: Request bodies larger than this are refused (413) before they are read.
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    #: Single sign-on through an OpenID Connect provider (``identity.oidc``); off while the issuer is
    #: empty. HTTPS, or HTTP on a loopback address only.
    sso_issuer_url: str = ""
    sso_client_id: str = ""
    #: A secret: set it through PILOTHOUSE_SSO_CLIENT_SECRET; never logged or shown. Unset: a public client.
    sso_client_secret: SecretStr | None = None
    #: Where the provider sends the browser back (the API's callback); a CLI login uses its own loopback URI.
    sso_redirect_uri: str = ""
    sso_scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile", "groups"])
    #: Claims → teams: ``{groups_claim, rules: [{claim, match, teams}], default_teams, refuse_unmatched}``
    #: (see ``identity.oidc_claims.TeamMapping``).
    sso_team_mapping: dict[str, Any] = Field(default_factory=dict)
    #: ID-token ``amr`` values (RFC 8176) that count as the provider vouching for a second factor,
    #: so that members of MFA-requiring teams can sign in through SSO; ``acr`` levels likewise (also
    #: requested from the provider). See ``identity.oidc_claims.MfaEvidence``.
    sso_mfa_amr: list[str] = Field(default_factory=lambda: ["mfa", "otp", "hwk"])
    sso_mfa_acr: list[str] = Field(default_factory=list)
    #: A login must come back from the provider within this time; ID tokens get this much clock skew.
    sso_login_ttl_seconds: float = Field(default=600.0, gt=0)
    sso_clock_skew_seconds: float = Field(default=60.0, ge=0)
    #: CA bundle trusted for an HTTPS issuer with a private CA (default: the system's).
    sso_ca_file: Path | None = None

    @field_validator("api_host")
    @classmethod
    def _loopback_default_is_explicit(cls, value: str) -> str:
        if not value:
            raise ValueError("api_host must not be empty")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=default_config_file())
        return (init_settings, env_settings, yaml_source)

    @cached_property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'pilothouse.db'}"

    @cached_property
    def effective_secret_key_file(self) -> Path:
        return self.secret_key_file or self.config_dir / "secret.key"

    @property
    def clusters_dir(self) -> Path:
        """Where local clusters keep their PKI, etcd data, logs and pid files."""
        return self.data_dir / "clusters"

    @property
    def effective_backup_dir(self) -> Path:
        """Local etcd snapshots, one directory per cluster."""
        return self.backup_dir or self.data_dir / "backups"

    @property
    def binaries_dir(self) -> Path:
        """Kubernetes binaries, one directory per version (``<cache>/binaries/v1.36.3``)."""
        return self.cache_dir / "binaries"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


def load_settings(**overrides: Any) -> Settings:
    """Load settings; raise ``InvalidInput`` with the offending field on a bad value."""
    from pydantic import ValidationError

    from pilothouse import errors

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise errors.InvalidInput(
            f"invalid Pilothouse settings: {problems}",
            hint=f"fix the PILOTHOUSE_* environment variables or {default_config_file()}",
        ) from None
