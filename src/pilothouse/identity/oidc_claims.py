"""The pure half of OpenID Connect single sign-on: what a login carries, what its answers mean.

Owns, with no I/O (``identity.oidc`` sends the requests and calls these):

- **login bookkeeping**: a new login's ``state``, ``nonce`` and PKCE ``code_verifier``
  (:func:`plan_login`) and the :class:`PendingLogin` kept until the callback, keyed by
  the SHA-256 of the state (the state itself is never stored);
- **the requests**: the authorisation URL and the token request, built by authlib's
  RFC 6749 / RFC 7636 helpers (``prepare_grant_uri``, ``prepare_token_request``,
  ``create_s256_code_challenge``, ``ClientAuth``);
- **the answers**: provider metadata (authlib's ``OpenIDProviderMetadata`` validates it),
  the token response, the ID token (joserfc, authlib's JOSE library, checks the
  signature against the provider's key set; authlib's ``CodeIDToken`` checks ``iss``,
  ``aud``, ``exp``, ``nonce``, ``azp`` and ``at_hash``), and claims → Pilothouse teams
  (:class:`TeamMapping`), giving an :class:`SsoIdentity`.

Every refusal of a login is an :class:`SsoRefused` (401) whose message names the check
that failed; a provider that is misconfigured or answers nonsense is an
:class:`SsoProviderError` (502). Messages and ``repr``s never carry a token, code,
verifier, nonce, state or the client secret.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from authlib.common.security import is_secure_transport
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, Field

from pilothouse import errors

DISCOVERY_PATH = "/.well-known/openid-configuration"
#: Asymmetric signatures only: ``none`` and HMAC (keyed with the client secret) are refused.
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
STATE_BYTES = 32
NONCE_BYTES = 32
#: ``token_urlsafe(48)`` is 64 characters, inside RFC 7636's 43-128.
VERIFIER_BYTES = 48
_MAX_PROVIDER_TEXT = 256


# --- errors ---------------------------------------------------------------------------------


class SsoRefused(errors.Unauthenticated):
    """A login that must not succeed: bad state, nonce, signature, audience, issuer, expiry..."""

    code = "sso_refused"


class UnknownSigningKey(SsoRefused):
    """The ID token names a key the provider's key set (as fetched) does not have."""

    code = "sso_unknown_signing_key"


class SsoProviderError(errors.PilothouseError):
    """The provider is unreachable, misconfigured, or refuses Pilothouse's client."""

    code = "sso_provider_error"
    http_status = 502


class SsoNotConfigured(errors.PilothouseError):
    code = "sso_not_configured"
    http_status = 404


# --- login bookkeeping ----------------------------------------------------------------------


@dataclass(frozen=True)
class PendingLogin:
    """What the callback needs from the start of a login; kept by a ``PendingLoginStore``.

    ``nonce`` and ``code_verifier`` are secrets until the login completes: a store that
    writes them to a database should encrypt them. The state is stored only as a digest.
    """

    state_digest: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    created_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True)
class PlannedLogin:
    """A new login: the raw ``state`` goes to the browser, ``pending`` to the store."""

    state: str = field(repr=False)
    pending: PendingLogin


@dataclass(frozen=True)
class LoginStart:
    """What the browser side needs: the URL to open, and the state the callback carries back."""

    authorization_url: str = field(repr=False)
    state: str = field(repr=False)
    expires_at: datetime


def digest_state(state: str) -> str:
    """The key a pending login is stored under (hex SHA-256; the state has 256 bits of entropy)."""
    return hashlib.sha256(state.encode()).hexdigest()


def plan_login(
    *,
    redirect_uri: str,
    now: datetime,
    ttl: timedelta,
    random_token: Callable[[int], str] = secrets.token_urlsafe,
) -> PlannedLogin:
    """Fresh ``state``, ``nonce`` and PKCE verifier for one login, valid for ``ttl``."""
    state = random_token(STATE_BYTES)
    return PlannedLogin(
        state=state,
        pending=PendingLogin(
            state_digest=digest_state(state),
            nonce=random_token(NONCE_BYTES),
            code_verifier=random_token(VERIFIER_BYTES),
            redirect_uri=redirect_uri,
            created_at=now,
            expires_at=now + ttl,
        ),
    )


def is_loopback_redirect(uri: str) -> bool:
    """``http://127.0.0.1:<port>/…``, ``http://[::1]:<port>/…`` or ``http://localhost:<port>/…`` (RFC 8252 §7.3)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "http" or not parts.hostname or port is None or parts.fragment:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def choose_redirect_uri(requested: str | None, configured: str) -> str:
    """The configured redirect URI, or a loopback one (a CLI's receiver); anything else is refused."""
    if not requested or requested == configured:
        if not configured:
            raise errors.InvalidInput(
                "no redirect URI for the single sign-on login",
                hint="set sso_redirect_uri (PILOTHOUSE_SSO_REDIRECT_URI), or log in from the CLI",
            )
        return configured
    if is_loopback_redirect(requested):
        return requested
    raise errors.InvalidInput(
        "the redirect URI must be the configured sso_redirect_uri or a loopback address "
        "(http://127.0.0.1:<port>/...)",
        hint="the provider would refuse any other, and Pilothouse sends codes nowhere else",
    )


# --- callback -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackParams:
    """The query of the provider's redirect back to the redirect URI."""

    state: str = field(repr=False)
    code: str = field(default="", repr=False)
    error: str = ""
    error_description: str = ""


def parse_callback(query: Mapping[str, str]) -> CallbackParams:
    """Read ``code``/``state`` (or ``error``) from the redirect's query; refuse anything else."""
    state = query.get("state", "")
    if not state:
        raise SsoRefused(
            "the single sign-on callback carries no state",
            hint="open the login URL Pilothouse gave you, not the provider's page directly",
        )
    error = query.get("error", "")
    code = query.get("code", "")
    if not error and not code:
        raise SsoRefused("the single sign-on callback carries neither a code nor an error")
    return CallbackParams(
        state=state,
        code=code,
        error=_clip(error),
        error_description=_clip(query.get("error_description", "")),
    )


def check_pending_login(
    pending: PendingLogin | None, params: CallbackParams, *, now: datetime
) -> PendingLogin:
    """The pending login the callback belongs to, or a refusal saying why there is none."""
    if pending is None:
        raise SsoRefused(
            "unknown or already used login state: this callback does not belong to a login "
            "started here, or it was replayed",
            hint="start the login again",
        )
    if pending.is_expired(now):
        raise SsoRefused(
            f"the login expired at {pending.expires_at.isoformat(timespec='seconds')}",
            hint="start the login again and finish it sooner",
        )
    if params.error:
        detail = f": {params.error_description}" if params.error_description else ""
        raise SsoRefused(f"the identity provider refused the login ({params.error}{detail})")
    return pending


# --- provider metadata ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    signing_algorithms: tuple[str, ...]
    token_auth_methods: tuple[str, ...]


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + DISCOVERY_PATH


def check_issuer_url(issuer: str) -> str:
    """The issuer, if it is HTTPS (or HTTP on a loopback address, for development and tests)."""
    try:
        parts = urlsplit(issuer)
    except ValueError:
        parts = None
    if (
        parts is None
        or not parts.hostname
        or parts.query
        or parts.fragment
        or not is_secure_transport(issuer)
    ):
        raise errors.InvalidInput(
            f"sso_issuer_url {issuer!r} is not an https:// URL without query or fragment",
            hint="plain http is accepted only on a loopback address",
        )
    return issuer


def read_provider_metadata(document: object, *, expected_issuer: str) -> ProviderMetadata:
    """Validate a discovery document (OpenID Connect Discovery 1.0 §4.3) and keep what logins use."""
    if not isinstance(document, dict):
        raise SsoProviderError("the provider's discovery document is not a JSON object")
    metadata = OpenIDProviderMetadata(document)
    try:
        metadata.validate()
    except ValueError as exc:
        raise SsoProviderError(
            f"the provider's discovery document is invalid: {_clip(str(exc))}",
            hint=f"check {discovery_url(expected_issuer)}",
        ) from None
    if document["issuer"] != expected_issuer:
        raise SsoProviderError(
            f"the discovery document names the issuer {_clip(str(document['issuer']))!r}, "
            f"not the configured {expected_issuer!r}",
            hint="set sso_issuer_url to exactly the provider's issuer (trailing slash included)",
        )
    for key in ("authorization_endpoint", "jwks_uri"):
        if not isinstance(document.get(key), str):
            raise SsoProviderError(f"the provider's discovery document has no {key}")
    challenge_methods = document.get("code_challenge_methods_supported")
    if challenge_methods is not None and "S256" not in challenge_methods:
        raise SsoProviderError(
            "the provider does not support PKCE with S256 (code_challenge_methods_supported)"
        )
    advertised = document.get("id_token_signing_alg_values_supported") or ()
    algorithms = tuple(a for a in advertised if a in SIGNING_ALGORITHMS)
    if not algorithms:
        raise SsoProviderError(
            "the provider signs ID tokens with none of " + ", ".join(SIGNING_ALGORITHMS),
            hint="configure the provider to sign ID tokens with RS256 or ES256",
        )
    return ProviderMetadata(
        issuer=document["issuer"],
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        jwks_uri=document["jwks_uri"],
        signing_algorithms=algorithms,
        token_auth_methods=tuple(
            document.get("token_endpoint_auth_methods_supported") or ("client_secret_basic",)
        ),
    )


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    url: str
    headers: dict[str, str] = field(repr=False)  # may hold the client's Basic credentials
    body: str = field(repr=False)


def build_authorization_url(
    provider: ProviderMetadata,
    *,
    client_id: str,
    scopes: Sequence[str],
    planned: PlannedLogin,
    acr_values: Sequence[str] = (),
) -> str:
    """The provider's authorisation URL for this login: code flow, ``state``, ``nonce``, PKCE S256;
    ``acr_values`` (when given) asks the provider for one of those authentication levels."""
    extra = {"acr_values": " ".join(acr_values)} if acr_values else {}
    uri: str = prepare_grant_uri(
        provider.authorization_endpoint,
        client_id,
        "code",
        redirect_uri=planned.pending.redirect_uri,
        scope=list(scopes),
        state=planned.state,
        nonce=planned.pending.nonce,
        code_challenge=create_s256_code_challenge(planned.pending.code_verifier),
        code_challenge_method="S256",
        **extra,
    )
    return uri


def choose_client_auth_method(provider: ProviderMetadata, *, has_secret: bool) -> str:
    if not has_secret:
        return "none"  # a public client: PKCE alone binds the code to this login
    if "client_secret_basic" in provider.token_auth_methods:
        return "client_secret_basic"
    if "client_secret_post" in provider.token_auth_methods:
        return "client_secret_post"
    raise SsoProviderError(
        "the provider's token endpoint accepts neither client_secret_basic nor client_secret_post",
        hint="register Pilothouse as a client that authenticates with its secret, or as a public client",
    )


def build_token_request(
    provider: ProviderMetadata,
    *,
    client_id: str,
    client_secret: str | None,
    code: str,
    pending: PendingLogin,
) -> TokenRequest:
    """The token request redeeming ``code`` with the login's PKCE verifier and redirect URI."""
    body = prepare_token_request(
        "authorization_code",
        redirect_uri=pending.redirect_uri,
        code=code,
        code_verifier=pending.code_verifier,
    )
    headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
    method = choose_client_auth_method(provider, has_secret=client_secret is not None)
    url, headers, body = ClientAuth(client_id, client_secret, method).prepare(
        "POST", provider.token_endpoint, headers, body
    )
    return TokenRequest(url=url, headers=dict(headers), body=body)


# --- answers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenResponse:
    id_token: str = field(repr=False)
    access_token: str = field(repr=False)


def read_token_response(status: int, document: object) -> TokenResponse:
    """The tokens from the token endpoint's answer; its OAuth errors as Pilothouse errors."""
    if not isinstance(document, dict):
        raise SsoProviderError(f"the provider's token endpoint answered HTTP {status} without a JSON object")
    error = document.get("error")
    if error or status >= 400:
        code = _clip(str(error or f"HTTP {status}"))
        description = document.get("error_description")
        detail = f": {_clip(str(description))}" if description else ""
        if code == "invalid_client" or status == 401:
            raise SsoProviderError(
                f"the identity provider refused Pilothouse's client credentials ({code}{detail})",
                hint="check sso_client_id and sso_client_secret against the client registered at the provider",
            )
        if code == "invalid_grant":
            raise SsoRefused(
                f"the identity provider refused the authorisation code ({code}{detail}): it was "
                "already used, has expired, or was issued for another redirect URI or PKCE verifier",
                hint="start the login again",
            )
        raise SsoProviderError(f"the identity provider's token endpoint refused the request ({code}{detail})")
    id_token = document.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise SsoProviderError(
            "the provider's token response has no id_token",
            hint="include the `openid` scope in sso_scopes",
        )
    access_token = document.get("access_token")
    return TokenResponse(
        id_token=id_token, access_token=access_token if isinstance(access_token, str) else ""
    )


def verify_id_token(
    id_token: str,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    client_id: str,
    nonce: str,
    now: datetime,
    clock_skew: timedelta,
    algorithms: Sequence[str] = SIGNING_ALGORITHMS,
    access_token: str = "",
) -> dict[str, Any]:
    """The ID token's claims, once its signature, issuer, audience, expiry and nonce check out.

    Raises :class:`UnknownSigningKey` when the token names a key absent from ``jwks``
    (the caller fetches the key set again once), :class:`SsoRefused` for every other failure.
    """
    try:
        keys = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
    except (jose_errors.JoseError, ValueError, TypeError, KeyError):
        raise SsoProviderError("the provider's key set (jwks_uri) is not a valid JWK set") from None
    allowed = [a for a in algorithms if a in SIGNING_ALGORITHMS]
    try:
        token = jwt.decode(id_token, keys, algorithms=allowed)
    except jose_errors.InvalidKeyIdError:
        raise UnknownSigningKey(
            "the ID token is signed with a key the identity provider does not publish",
            hint="if the provider just rotated its keys, log in again",
        ) from None
    except jose_errors.BadSignatureError:
        raise SsoRefused(
            "the ID token's signature does not verify against the identity provider's keys: "
            "it was tampered with or forged"
        ) from None
    except (jose_errors.UnsupportedAlgorithmError, jose_errors.MissingAlgorithmError):
        raise SsoRefused(
            f"the ID token is not signed with an accepted algorithm ({', '.join(allowed)})"
        ) from None
    except (jose_errors.JoseError, ValueError, TypeError):
        raise SsoRefused("the ID token is malformed") from None

    claims = CodeIDToken(
        token.claims,
        token.header,
        {"iss": {"essential": True, "value": issuer}, "aud": {"essential": True, "value": client_id}},
        {"nonce": nonce, "client_id": client_id, "access_token": access_token or None},
    )
    try:
        claims.validate(now=int(now.timestamp()), leeway=int(clock_skew.total_seconds()))
    except jose_errors.ExpiredTokenError:
        raise SsoRefused(
            f"the ID token expired at {_timestamp(claims.get('exp'))} "
            f"(now {now.isoformat(timespec='seconds')}, clock skew allowed {int(clock_skew.total_seconds())} s)",
            hint="start the login again; if this repeats, check the clocks of Pilothouse and the provider",
        ) from None
    except jose_errors.MissingClaimError as exc:
        raise SsoRefused(f"the ID token lacks the required claim {exc.claim!r}") from None
    except jose_errors.InvalidClaimError as exc:
        raise SsoRefused(
            _invalid_claim_message(exc.claim, claims, issuer=issuer, client_id=client_id)
        ) from None
    except jose_errors.JoseError as exc:
        raise SsoRefused(f"the ID token was refused ({exc.error})") from None
    return dict(claims)


def _invalid_claim_message(claim: str, claims: Mapping[str, Any], *, issuer: str, client_id: str) -> str:
    if claim == "iss":
        return f"the ID token was issued by {_clip(str(claims.get('iss')))!r}, not by the configured issuer {issuer!r}"
    if claim == "aud":
        return f"the ID token is meant for {_clip(str(claims.get('aud')))!r}, not for this client ({client_id!r})"
    if claim == "nonce":
        return "the ID token's nonce does not match this login: the token was replayed or belongs to another login"
    if claim == "azp":
        return "the ID token's authorised party (azp) is not this client"
    if claim == "at_hash":
        return "the ID token does not belong to the access token issued with it (at_hash mismatch)"
    if claim in ("nbf", "iat"):
        return f"the ID token is not valid yet ({claim} is in the future beyond the allowed clock skew)"
    return f"the ID token's claim {claim!r} is invalid"


# --- claims → teams -------------------------------------------------------------------------


class TeamRule(BaseModel):
    """Grant ``teams`` to a user one of whose ``claim`` values matches ``match``.

    ``match`` is a case-sensitive shell pattern (``platform-admins``, ``dev-*``,
    ``*@example.com``); ``{value}`` in a team name is replaced by the matching value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str = "groups"
    match: str = Field(min_length=1)
    teams: tuple[str, ...] = Field(min_length=1)


class TeamMapping(BaseModel):
    """How an SSO user's claims become Pilothouse team memberships (setting ``sso_team_mapping``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The claim carrying the user's groups at the provider (``SsoIdentity.groups``).
    groups_claim: str = "groups"
    rules: tuple[TeamRule, ...] = ()
    #: The default rule: teams for a user no rule matched.
    default_teams: tuple[str, ...] = ()
    #: Refuse the login of a user no rule matched (instead of ``default_teams``).
    refuse_unmatched: bool = False


class MfaEvidence(BaseModel):
    """Which ID-token claims count as the provider vouching for a second factor (settings
    ``sso_mfa_amr`` and ``sso_mfa_acr``); such a sign-in satisfies a team's MFA requirement.

    ``amr`` values are RFC 8176 method references (any one listed suffices); ``acr`` values
    are provider-specific levels (Keycloak's ``2``, an ``…/mfa`` URI), also requested from the
    provider with ``acr_values``. Both empty: a single sign-on never counts as MFA.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    amr: tuple[str, ...] = ("mfa", "otp", "hwk")
    acr: tuple[str, ...] = ()


def vouches_second_factor(claims: Mapping[str, Any], evidence: MfaEvidence) -> bool:
    """Whether verified claims show a second factor, as ``evidence`` defines it."""
    methods = set(claim_values(claims, "amr"))
    levels = set(claim_values(claims, "acr"))
    return bool(methods & set(evidence.amr)) or bool(levels & set(evidence.acr))


@dataclass(frozen=True)
class SsoIdentity:
    """Who logged in, as the provider vouches (``issuer`` + ``subject`` is the stable key)."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    groups: tuple[str, ...]
    teams: tuple[str, ...]
    #: The provider vouched for a second factor (``vouches_second_factor``).
    mfa: bool = False


def claim_values(claims: Mapping[str, Any], claim: str) -> tuple[str, ...]:
    """A claim's values as strings: a string, a number or a list of them; ``a.b`` reaches into objects
    (Keycloak's ``realm_access.roles``) when no claim has the dotted name itself."""
    value: Any = claims.get(claim)
    if value is None and "." in claim:
        value = claims
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(
        str(v)
        for v in items
        if isinstance(v, str) or (isinstance(v, int | float) and not isinstance(v, bool))
    )


def compute_teams(claims: Mapping[str, Any], mapping: TeamMapping) -> tuple[str, ...] | None:
    """The teams the rules grant (sorted, unique); ``None`` when no rule matched."""
    teams: set[str] = set()
    matched = False
    for rule in mapping.rules:
        for value in claim_values(claims, rule.claim):
            if fnmatch.fnmatchcase(value, rule.match):
                matched = True
                teams.update(t.replace("{value}", value) for t in rule.teams)
    return tuple(sorted(teams)) if matched else None


def compute_identity(
    claims: Mapping[str, Any], mapping: TeamMapping, evidence: MfaEvidence | None = None
) -> SsoIdentity:
    """The identity of verified ID-token claims, with teams by ``mapping`` and, by ``evidence``,
    whether a second factor was used (never, without ``evidence``)."""
    teams = compute_teams(claims, mapping)
    if teams is None:
        if mapping.refuse_unmatched:
            raise SsoRefused(
                "no team mapping rule matches this user's claims, and unmatched users may not log in",
                hint="ask a platform admin to map one of your groups to a team (sso_team_mapping)",
            )
        teams = tuple(sorted(set(mapping.default_teams)))
    email = claims.get("email")
    name = claims.get("name") or claims.get("preferred_username")
    return SsoIdentity(
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        email=email if isinstance(email, str) and email else None,
        email_verified=claims.get("email_verified") is True,
        name=name if isinstance(name, str) else None,
        groups=claim_values(claims, mapping.groups_claim),
        teams=teams,
        mfa=evidence is not None and vouches_second_factor(claims, evidence),
    )


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_PROVIDER_TEXT else text[:_MAX_PROVIDER_TEXT] + "…"


def _timestamp(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    return "an unknown time"
