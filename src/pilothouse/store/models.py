"""Tables of the Pilothouse store (SQLAlchemy 2 declarative mapping).

Schema changes go through Alembic revisions in ``migrations/versions``; a test
checks that the models and the migrations agree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always stores and returns aware UTC datetimes.

    SQLite has no time zone type: SQLAlchemy writes an aware datetime's wall
    clock and drops its offset, and reads naive datetimes back. Without this,
    a ``+05:00`` expiry was stored five hours late and records read from
    SQLite were naive while PostgreSQL's were aware. A naive value is taken
    to be UTC. The column type (and so the migrations) is unchanged.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _as_utc(value)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class ClusterRow(Base):
    """A cluster Pilothouse manages: its spec (what was asked) and status (what is)."""

    __tablename__ = "clusters"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True, index=True)
    provider: Mapped[str] = mapped_column(String(32))
    desired_state: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    kubernetes_version: Mapped[str] = mapped_column(String(32), default="")
    server_url: Mapped[str] = mapped_column(String(255), default="")
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    runtime: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Who may operate on the cluster right now (one Pilothouse process at a time), and until when.
    lease_holder: Mapped[str | None] = mapped_column(String(160), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SecretRow(Base):
    """An encrypted secret (kubeconfig, key) owned by a cluster or by the platform."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("owner", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(96), index=True)
    name: Mapped[str] = mapped_column(String(96))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiTokenRow(Base):
    """A bearer token for the REST API; only its SHA-256 digest is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    roles: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    #: ``[{"role", "cluster", "namespace"}]``: the roles and the scopes they hold at (None: ``roles``
    #: at the platform scope, as tokens issued before scopes were).
    grants: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, default=None)
    #: The user the token acts for (its grants then only narrow the user's own); None: a service token.
    owner_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )


class HealthSampleRow(Base):
    """One health probe of a cluster: was its client endpoint ready at ``at``, and how fast.

    The primary key (cluster_id, at) is the index every query uses: one cluster's
    samples in time order. Deleting the cluster deletes its samples.
    """

    __tablename__ = "health_samples"

    cluster_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(primary_key=True)
    up: Mapped[bool]
    latency_ms: Mapped[float | None] = mapped_column(default=None)


class HealthRollupRow(Base):
    """Older samples of a cluster folded into a bucket of ``seconds`` starting at ``start``.

    ``observed_seconds`` is the time the samples covered (a silence longer than the
    maximum gap is not observed); ``up_seconds`` the part of it the cluster was up.
    """

    __tablename__ = "health_rollups"

    cluster_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True
    )
    start: Mapped[datetime] = mapped_column(primary_key=True)
    seconds: Mapped[int]
    up_seconds: Mapped[float]
    observed_seconds: Mapped[float]
    samples: Mapped[int]
    latency_ms_sum: Mapped[float]
    latency_samples: Mapped[int]


# ----- alerts (fleet/alerting.py, fleet/notify.py) -----------------------------------------------


class AlertRow(Base):
    """The current state of one alert (one rule and label set), keyed by its fingerprint.

    Not tied to a cluster row: the alerts of a deleted cluster resolve and expire on their own.
    """

    __tablename__ = "alerts"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    fired_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    acked_by: Mapped[str | None] = mapped_column(String(160), default=None)
    acked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_notified_at: Mapped[datetime | None] = mapped_column(default=None)
    notified: Mapped[str | None] = mapped_column(String(16), default=None)
    silenced_by: Mapped[str | None] = mapped_column(String(32), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SilenceRow(Base):
    """Label matchers (``[{"name", "value", "op"}]``) whose alerts are not notified in [starts_at, ends_at)."""

    __tablename__ = "alert_silences"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    matchers: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime] = mapped_column(index=True)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertDeliveryRow(Base):
    """One attempt to deliver one notice of one alert to one channel (the delivery log)."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(96))
    attempt: Mapped[int]
    ok: Mapped[bool]
    error: Mapped[str | None] = mapped_column(Text, default=None)
    at: Mapped[datetime] = mapped_column(index=True)


# ----- durable operations (fleet/operations.py) --------------------------------------------------


class OperationRow(Base):
    """One long operation on one cluster (an upgrade, a rollout, a backup, a restore): its spec,
    its journal of steps and its phase. ``requested`` carries an operator's pause or abort
    to the process running it; ``generation`` grows with every write of the journal."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    phase: Mapped[str] = mapped_column(String(16), index=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    message: Mapped[str] = mapped_column(Text, default="")
    requested: Mapped[str | None] = mapped_column(String(16), default=None)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


# ----- etcd backups (store/backups.py, fleet/backups.py) -----------------------------------------


class BackupRow(Base):
    """One etcd snapshot of a local cluster: where it is, its size and sha256, the etcd revision
    it holds. Not tied to the cluster row: a cluster's backups outlive it. The cluster's
    encryption config (needed to read Secrets in the snapshot) is a sealed secret owned by
    ``backup:<id>``, never stored beside the snapshot file."""

    __tablename__ = "backups"
    __table_args__ = (Index("ix_backups_cluster_created", "cluster", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    cluster: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    schedule: Mapped[str | None] = mapped_column(String(64), default=None)
    scheduled_for: Mapped[datetime | None] = mapped_column(default=None)
    operation_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    storage: Mapped[str] = mapped_column(String(16))
    location: Mapped[str] = mapped_column(Text, default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    etcd_revision: Mapped[int] = mapped_column(BigInteger, default=0)
    total_keys: Mapped[int] = mapped_column(Integer, default=0)
    kubernetes_version: Mapped[str] = mapped_column(String(32), default="")
    etcd_version: Mapped[str] = mapped_column(String(32), default="")
    control_planes: Mapped[int] = mapped_column(Integer, default=1)
    message: Mapped[str] = mapped_column(Text, default="")
    #: The process writing it while ``status`` is running (lease holder syntax): a backup whose
    #: writer died is marked failed by the next pass.
    holder: Mapped[str | None] = mapped_column(String(160), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


# ----- Kubernetes Events (store/events.py) ------------------------------------------------------


class KubeEventRow(Base):
    """One Kubernetes Event of a cluster, as last seen: updates of the Event (its count and
    last timestamp growing) overwrite the row. Deleting the cluster deletes its events.

    The ``*_key`` columns hold case-folded copies of the fields searched case-insensitively,
    so SQL compares them exactly as Python's ``str.casefold`` does, on every backend.
    """

    __tablename__ = "kube_events"
    __table_args__ = (
        UniqueConstraint("cluster_id", "namespace", "name"),
        Index("ix_kube_events_cluster_last", "cluster_id", "last_timestamp"),
        Index("ix_kube_events_object", "cluster_id", "involved_kind_key", "involved_name"),
        Index("ix_kube_events_reason", "cluster_id", "reason_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster_id: Mapped[str] = mapped_column(String(32), ForeignKey("clusters.id", ondelete="CASCADE"))
    namespace: Mapped[str] = mapped_column(String(253))
    name: Mapped[str] = mapped_column(String(253))
    involved_kind: Mapped[str] = mapped_column(Text)
    involved_name: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    count: Mapped[int]
    last_timestamp: Mapped[datetime | None] = mapped_column(index=True)
    source: Mapped[str] = mapped_column(Text)
    #: When this Pilothouse last wrote the row; ages out events that carry no timestamp.
    saved_at: Mapped[datetime]
    involved_kind_key: Mapped[str] = mapped_column(Text)
    reason_key: Mapped[str] = mapped_column(Text)
    type_key: Mapped[str] = mapped_column(Text)
    message_key: Mapped[str] = mapped_column(Text)


# ----- identities (store/identity.py, identity/) --------------------------------------------------


class UserRow(Base):
    """A person who signs in. ``password_hash`` is an Argon2id hash (None: signs in through SSO
    only); ``totp_secret`` is sealed with the ``SecretBox`` (owner ``user:<id>``), active once
    ``totp_enabled_at`` is set; ``totp_last_step`` is the last accepted TOTP step (replays refused)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(160), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    #: ``local`` (created by an admin) or where SSO created it (``oidc:<issuer>``).
    source: Mapped[str] = mapped_column(String(255), default="local")
    #: For SSO users: ``<source>|<subject>``, the provider's stable key for the person; a sign-in
    #: finds its user by this, never by a name someone else may already hold.
    external_id: Mapped[str | None] = mapped_column(String(512), default=None, unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    password_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(default=None)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TeamRow(Base):
    """A group of users; roles bound to it reach every member. ``mfa_required``: members cannot
    sign in without a second factor."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    mfa_required: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamMemberRow(Base):
    __tablename__ = "team_members"

    team_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    #: ``local`` (added by an admin) or the SSO provider whose claims put the user there
    #: (``oidc:<issuer>``); a sign-in through that provider re-syncs only its own memberships.
    source: Mapped[str] = mapped_column(String(255), default="local")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoleBindingRow(Base):
    """A role given to one user or one team at a scope: the platform (no cluster), a cluster, or a
    namespace of a cluster. Bound to the subject's id, so a user or team removed and re-created
    under the same name does not inherit old bindings. ``key`` makes a binding unique."""

    __tablename__ = "role_bindings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )
    team_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("teams.id", ondelete="CASCADE"), default=None, index=True
    )
    role: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[str] = mapped_column(String(63), default="", index=True)
    namespace: Mapped[str] = mapped_column(String(63), default="")
    created_by: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SessionRow(Base):
    """A signed-in session: only the SHA-256 digest of its bearer token is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    #: How the user proved who they are: password, password+totp, password+recovery, oidc.
    method: Mapped[str] = mapped_column(String(32))
    client: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class RecoveryCodeRow(Base):
    """A single-use MFA recovery code: only its SHA-256 digest; ``used_at`` set when spent."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "digest"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginThrottleRow(Base):
    """Failed logins of one key (``user:NAME`` or ``client:ADDRESS``), for ``identity.throttle``."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(default=None)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)


class SsoPendingLoginRow(Base):
    """A single sign-on login between its start and the provider's callback (``store.sso``).

    Keyed by the SHA-256 of the login's ``state`` (the state itself is never stored); the
    ``nonce`` and PKCE ``code_verifier`` are sealed with the platform's ``SecretBox``.
    """

    __tablename__ = "sso_pending_logins"

    state_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    code_verifier: Mapped[bytes] = mapped_column(LargeBinary)
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
