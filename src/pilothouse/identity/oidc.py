"""Single sign-on through an external OpenID Connect provider: the half that does I/O.

Owns talking to the provider — discovery (``/.well-known/openid-configuration``), its key
set (JWKS; fetched again when a token names a key not yet seen), the token request — and
the store of pending logins that the callback reads. httpx does the HTTP;
``identity.oidc_claims`` (authlib for the OAuth 2.0 / OpenID Connect protocol, joserfc for
signatures) builds every request and checks every answer, without I/O.

The login is the authorisation code flow with PKCE (S256) and a nonce::

    start = client.begin_login(redirect_uri=...)        # PendingLogin stored under sha256(state)
    # the browser opens start.authorization_url, logs in, returns to the redirect URI with ?code&state
    identity = client.complete_login(oidc_claims.parse_callback(query))   # -> SsoIdentity

``complete_login`` takes the pending login out of the store before anything else, so a
replayed or forged callback finds nothing; then it redeems the code with the login's
verifier and verifies the ID token (signature, ``iss``, ``aud``, ``exp``, ``nonce``).
Pending logins sit behind :class:`PendingLoginStore` so that the callback may land on any
Pilothouse process: :class:`StoredPendingLogins` keeps them in the database (``store.sso``,
nonce and verifier sealed), :class:`InMemoryPendingLogins` serves a single process.
:func:`sign_in` turns the :class:`~pilothouse.identity.oidc_claims.SsoIdentity` into a
user, team memberships and a session (``Accounts.sign_in_external``); the API's callback
(``api/sso.py``) and ``pilothouse login --sso`` (``cli/login.py``) both end there. The client
secret is held as ``SecretStr`` and only ever written into the token request.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import structlog
from pydantic import SecretStr, ValidationError

from pilothouse import errors
from pilothouse.identity import accounts, oidc_claims
from pilothouse.settings import Settings
from pilothouse.store import sso as sso_store

log = structlog.get_logger(__name__)

#: The discovery document is read again after this long (providers rarely change it).
METADATA_TTL = timedelta(hours=1)
#: A token naming an unknown key makes the client fetch the key set again, at most this often.
JWKS_REFETCH_INTERVAL = timedelta(seconds=30)
HTTP_TIMEOUT_SECONDS = 10.0


class PendingLoginStore(Protocol):
    """Pending logins by state digest, shared by every process that may receive the callback.

    ``take`` must be atomic (one ``DELETE … RETURNING`` in SQL): of two callbacks with the
    same state, one gets the login and the other ``None``.
    """

    def save(self, login: oidc_claims.PendingLogin) -> None: ...

    def take(self, state_digest: str) -> oidc_claims.PendingLogin | None:
        """Remove and return the login stored under ``state_digest``; ``None`` if there is none."""
        ...

    def delete_expired(self, now: datetime) -> int: ...


class InMemoryPendingLogins:
    """A :class:`PendingLoginStore` for one process (the CLI, tests, a single-replica server)."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._logins: dict[str, oidc_claims.PendingLogin] = {}
        self._max_entries = max_entries

    def save(self, login: oidc_claims.PendingLogin) -> None:
        with self._lock:
            if len(self._logins) >= self._max_entries:
                self._delete_expired_locked(login.created_at)
            while len(self._logins) >= self._max_entries:  # still full: the oldest go first
                del self._logins[next(iter(self._logins))]
            self._logins[login.state_digest] = login

    def take(self, state_digest: str) -> oidc_claims.PendingLogin | None:
        with self._lock:
            return self._logins.pop(state_digest, None)

    def delete_expired(self, now: datetime) -> int:
        with self._lock:
            return self._delete_expired_locked(now)

    def count(self) -> int:
        """How many logins are pending (a method, not ``__len__``: an empty store is still a store)."""
        return len(self._logins)

    def _delete_expired_locked(self, now: datetime) -> int:
        expired = [key for key, login in self._logins.items() if login.is_expired(now)]
        for key in expired:
            del self._logins[key]
        return len(expired)


class StoredPendingLogins:
    """A :class:`PendingLoginStore` in the database, shared by every process on it (``store.sso``)."""

    def __init__(self, table: sso_store.PendingLoginTable) -> None:
        self._table = table

    def save(self, login: oidc_claims.PendingLogin) -> None:
        self._table.save(
            sso_store.PendingLoginRecord(
                state_digest=login.state_digest,
                nonce=login.nonce,
                code_verifier=login.code_verifier,
                redirect_uri=login.redirect_uri,
                created_at=login.created_at,
                expires_at=login.expires_at,
            )
        )

    def take(self, state_digest: str) -> oidc_claims.PendingLogin | None:
        found = self._table.take(state_digest)
        if found is None:
            return None
        return oidc_claims.PendingLogin(
            state_digest=found.state_digest,
            nonce=found.nonce,
            code_verifier=found.code_verifier,
            redirect_uri=found.redirect_uri,
            created_at=found.created_at,
            expires_at=found.expires_at,
        )

    def delete_expired(self, now: datetime) -> int:
        return self._table.delete_expired(now)

    def count(self) -> int:
        return self._table.count()


def user_name_for(identity: oidc_claims.SsoIdentity) -> str:
    """The Pilothouse user name a first sign-in creates: the email, else the display name, else
    ``sso-<digest of issuer and subject>``. Only a first sign-in uses it: afterwards the user is
    found by issuer and subject, and a name held by another account is refused, never taken over.
    """
    for candidate in (identity.email, identity.name):
        if candidate:
            try:
                return accounts.check_user_name(candidate)
            except errors.InvalidInput:
                continue
    return "sso-" + hashlib.sha256(f"{identity.issuer}|{identity.subject}".encode()).hexdigest()[:16]


def sign_in(
    users: accounts.Accounts, identity: oidc_claims.SsoIdentity, *, client: str
) -> accounts.IssuedSession:
    """Open a session for a provider-vouched identity, with its mapped teams (``sign_in_external``)."""
    return users.sign_in_external(
        user_name_for(identity),
        source=f"oidc:{identity.issuer}",
        subject=identity.subject,
        teams=identity.teams,
        email=identity.email or "",
        display_name=identity.name or "",
        client=client,
        mfa_satisfied=identity.mfa,
    )


@dataclass(frozen=True)
class SsoConfig:
    """The provider and the client Pilothouse is registered as there."""

    issuer_url: str
    client_id: str
    client_secret: SecretStr | None = field(repr=False)
    redirect_uri: str = ""
    scopes: tuple[str, ...] = ("openid", "email", "profile", "groups")
    team_mapping: oidc_claims.TeamMapping = field(default_factory=oidc_claims.TeamMapping)
    mfa_evidence: oidc_claims.MfaEvidence = field(default_factory=oidc_claims.MfaEvidence)
    login_ttl: timedelta = timedelta(minutes=10)
    clock_skew: timedelta = timedelta(seconds=60)
    ca_file: Path | None = None


def sso_config_from_settings(settings: Settings) -> SsoConfig:
    """The SSO configuration in ``settings``; ``SsoNotConfigured`` when no issuer is set."""
    if not settings.sso_issuer_url:
        raise oidc_claims.SsoNotConfigured(
            "single sign-on is not configured",
            hint="set sso_issuer_url, sso_client_id and sso_client_secret (PILOTHOUSE_SSO_*)",
        )
    if not settings.sso_client_id:
        raise errors.InvalidInput(
            "sso_issuer_url is set but sso_client_id is empty", hint="set sso_client_id"
        )
    if "openid" not in settings.sso_scopes:
        raise errors.InvalidInput("sso_scopes must include `openid`", hint=f"now: {settings.sso_scopes}")
    try:
        mapping = oidc_claims.TeamMapping.model_validate(settings.sso_team_mapping)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise errors.InvalidInput(f"invalid sso_team_mapping: {problems}") from None
    evidence = oidc_claims.MfaEvidence(amr=tuple(settings.sso_mfa_amr), acr=tuple(settings.sso_mfa_acr))
    return SsoConfig(
        issuer_url=oidc_claims.check_issuer_url(settings.sso_issuer_url),
        client_id=settings.sso_client_id,
        client_secret=settings.sso_client_secret,
        redirect_uri=settings.sso_redirect_uri,
        scopes=tuple(settings.sso_scopes),
        team_mapping=mapping,
        mfa_evidence=evidence,
        login_ttl=timedelta(seconds=settings.sso_login_ttl_seconds),
        clock_skew=timedelta(seconds=settings.sso_clock_skew_seconds),
        ca_file=settings.sso_ca_file,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OidcClient:
    """Pilothouse as an OpenID Connect relying party. Thread-safe; one per process is enough.

    ``transport`` replaces httpx's network transport (tests put a tampering proxy there).
    """

    def __init__(
        self,
        config: SsoConfig,
        pending: PendingLoginStore,
        *,
        clock: Callable[[], datetime] = _utcnow,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._config = config
        self._pending = pending
        self._clock = clock
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(config.ca_file)) if config.ca_file else True
        )
        self._http = httpx.Client(
            timeout=HTTP_TIMEOUT_SECONDS, verify=verify, transport=transport, follow_redirects=False
        )
        self._lock = threading.Lock()
        self._provider: tuple[float, oidc_claims.ProviderMetadata] | None = None
        self._jwks: tuple[float, dict[str, Any]] | None = None

    @property
    def config(self) -> SsoConfig:
        return self._config

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OidcClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the login ---

    def begin_login(self, *, redirect_uri: str | None = None) -> oidc_claims.LoginStart:
        """Store a new pending login; the URL to send the browser to, and its state.

        ``redirect_uri`` is the configured one by default; a CLI passes its loopback receiver's.
        """
        target = oidc_claims.choose_redirect_uri(redirect_uri, self._config.redirect_uri)
        provider = self.provider()
        planned = oidc_claims.plan_login(redirect_uri=target, now=self._clock(), ttl=self._config.login_ttl)
        url = oidc_claims.build_authorization_url(
            provider,
            client_id=self._config.client_id,
            scopes=self._config.scopes,
            planned=planned,
            acr_values=self._config.mfa_evidence.acr,
        )
        self._pending.save(planned.pending)
        return oidc_claims.LoginStart(
            authorization_url=url, state=planned.state, expires_at=planned.pending.expires_at
        )

    def complete_login(self, params: oidc_claims.CallbackParams) -> oidc_claims.SsoIdentity:
        """Finish the login the callback belongs to: the provider-vouched identity with its teams.

        Raises ``SsoRefused`` (unknown, replayed or expired state; the provider's refusal; a
        bad ID token; an unmapped user when mapping refuses those) or ``SsoProviderError``.
        """
        now = self._clock()
        try:
            pending = oidc_claims.check_pending_login(
                self._pending.take(oidc_claims.digest_state(params.state)), params, now=now
            )
            tokens = self.exchange_code(pending, params.code)
            claims = self.verify_id_token(tokens, nonce=pending.nonce, now=now)
            identity = oidc_claims.compute_identity(
                claims, self._config.team_mapping, self._config.mfa_evidence
            )
        except (oidc_claims.SsoRefused, oidc_claims.SsoProviderError) as exc:
            log.warning(
                "sso login refused", issuer=self._config.issuer_url, code=exc.code, reason=exc.message
            )
            raise
        log.info(
            "sso login",
            issuer=identity.issuer,
            subject=identity.subject,
            teams=list(identity.teams),
            mfa=identity.mfa,
        )
        return identity

    def exchange_code(self, pending: oidc_claims.PendingLogin, code: str) -> oidc_claims.TokenResponse:
        """Redeem the authorisation code (with the login's PKCE verifier) at the token endpoint."""
        secret = self._config.client_secret
        request = oidc_claims.build_token_request(
            self.provider(),
            client_id=self._config.client_id,
            client_secret=secret.get_secret_value() if secret is not None else None,
            code=code,
            pending=pending,
        )
        response = self._send("POST", request.url, headers=request.headers, content=request.body)
        return oidc_claims.read_token_response(response.status_code, _json_or_none(response))

    def verify_id_token(
        self, tokens: oidc_claims.TokenResponse, *, nonce: str, now: datetime
    ) -> dict[str, Any]:
        """The ID token's verified claims; the key set is fetched again once for an unknown key."""
        provider = self.provider()

        def verify(jwks: dict[str, Any]) -> dict[str, Any]:
            return oidc_claims.verify_id_token(
                tokens.id_token,
                jwks=jwks,
                issuer=provider.issuer,
                client_id=self._config.client_id,
                nonce=nonce,
                now=now,
                clock_skew=self._config.clock_skew,
                algorithms=provider.signing_algorithms,
                access_token=tokens.access_token,
            )

        try:
            return verify(self._key_set(refresh=False))
        except oidc_claims.UnknownSigningKey:
            return verify(self._key_set(refresh=True))

    # --- provider documents ---

    def provider(self) -> oidc_claims.ProviderMetadata:
        """The provider's metadata from discovery, cached for ``METADATA_TTL``."""
        with self._lock:
            cached = self._provider
        if cached is not None and time.monotonic() - cached[0] < METADATA_TTL.total_seconds():
            return cached[1]
        url = oidc_claims.discovery_url(self._config.issuer_url)
        response = self._send("GET", url)
        if response.status_code != 200:
            raise oidc_claims.SsoProviderError(
                f"the identity provider's discovery document {url} answered HTTP {response.status_code}",
                hint="check sso_issuer_url",
            )
        metadata = oidc_claims.read_provider_metadata(
            _json_or_none(response), expected_issuer=self._config.issuer_url
        )
        with self._lock:
            self._provider = (time.monotonic(), metadata)
        return metadata

    def _key_set(self, *, refresh: bool) -> dict[str, Any]:
        with self._lock:
            cached = self._jwks
        if cached is not None and (
            not refresh or time.monotonic() - cached[0] < JWKS_REFETCH_INTERVAL.total_seconds()
        ):
            return cached[1]
        url = self.provider().jwks_uri
        response = self._send("GET", url)
        document = _json_or_none(response)
        if (
            response.status_code != 200
            or not isinstance(document, dict)
            or not isinstance(document.get("keys"), list)
        ):
            raise oidc_claims.SsoProviderError(
                f"the identity provider's key set {url} answered HTTP {response.status_code} without a JWK set"
            )
        with self._lock:
            self._jwks = (time.monotonic(), document)
        return document

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise oidc_claims.SsoProviderError(
                f"the identity provider did not answer {method} {url}: {type(exc).__name__}",
                hint="check that it is running and reachable from Pilothouse, and sso_ca_file for a private CA",
            ) from exc


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
