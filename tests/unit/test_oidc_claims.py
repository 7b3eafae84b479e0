"""The pure half of single sign-on: login bookkeeping, requests, provider answers, claims → teams."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from pilothouse import errors
from pilothouse.identity import oidc_claims

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ISSUER = "https://idp.example.com"
CLIENT_ID = "pilothouse"
NONCE = "n-0S6_WzA2Mj"
REDIRECT = "https://pilothouse.example.com/api/v1/auth/sso/callback"
KEY = RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig"})
JWKS: dict[str, Any] = dict(KeySet([KEY]).as_dict())
SKEW = timedelta(seconds=60)

PROVIDER = oidc_claims.ProviderMetadata(
    issuer=ISSUER,
    authorization_endpoint=f"{ISSUER}/auth",
    token_endpoint=f"{ISSUER}/token",
    jwks_uri=f"{ISSUER}/keys",
    signing_algorithms=("RS256",),
    token_auth_methods=("client_secret_basic", "client_secret_post"),
)


def counter_tokens() -> Any:
    count = iter(range(100))
    return lambda nbytes: f"token{next(count)}-{nbytes}"


def planned(**overrides: Any) -> oidc_claims.PlannedLogin:
    return oidc_claims.plan_login(redirect_uri=REDIRECT, now=NOW, ttl=timedelta(minutes=10), **overrides)


# ----- login bookkeeping ---------------------------------------------------------------------


def test_plan_login_makes_fresh_secrets_and_stores_only_a_digest_of_the_state() -> None:
    one, two = planned(), planned()
    assert len({one.state, two.state, one.pending.nonce, two.pending.nonce}) == 4
    assert 43 <= len(one.pending.code_verifier) <= 128  # RFC 7636 §4.1
    assert one.pending.state_digest == oidc_claims.digest_state(one.state) != one.state
    assert one.pending.expires_at == NOW + timedelta(minutes=10)
    assert not one.pending.is_expired(NOW + timedelta(minutes=9))
    assert one.pending.is_expired(NOW + timedelta(minutes=10))
    for secret in (one.state, one.pending.nonce, one.pending.code_verifier):
        assert secret not in repr(one)


def test_plan_login_uses_the_token_source() -> None:
    login = planned(random_token=counter_tokens())
    assert (login.state, login.pending.nonce, login.pending.code_verifier) == (
        "token0-32",
        "token1-32",
        "token2-48",
    )


@pytest.mark.parametrize(
    ("uri", "loopback"),
    [
        ("http://127.0.0.1:53124/callback", True),
        ("http://[::1]:8000/cb", True),
        ("http://localhost:8000/cb", True),
        ("http://127.0.0.1/callback", False),  # no port: not a CLI receiver
        ("https://127.0.0.1:8000/cb", False),
        ("http://10.0.0.1:8000/cb", False),
        ("http://127.0.0.1.evil.example:8000/cb", False),
        ("http://127.0.0.1:8000/cb#frag", False),
        ("http://127.0.0.1:99999/cb", False),
    ],
)
def test_is_loopback_redirect(uri: str, loopback: bool) -> None:
    assert oidc_claims.is_loopback_redirect(uri) is loopback


def test_choose_redirect_uri() -> None:
    assert oidc_claims.choose_redirect_uri(None, REDIRECT) == REDIRECT
    assert oidc_claims.choose_redirect_uri(REDIRECT, REDIRECT) == REDIRECT
    assert oidc_claims.choose_redirect_uri("http://127.0.0.1:5000/callback", REDIRECT).endswith(
        ":5000/callback"
    )
    with pytest.raises(errors.InvalidInput, match="configured sso_redirect_uri or a loopback"):
        oidc_claims.choose_redirect_uri("https://evil.example/steal", REDIRECT)
    with pytest.raises(errors.InvalidInput, match="no redirect URI"):
        oidc_claims.choose_redirect_uri(None, "")


# ----- callback ------------------------------------------------------------------------------


def test_parse_callback() -> None:
    params = oidc_claims.parse_callback({"code": "c0de", "state": "st4te", "session_state": "x"})
    assert (params.code, params.state, params.error) == ("c0de", "st4te", "")
    assert "c0de" not in repr(params)
    assert "st4te" not in repr(params)
    denied = oidc_claims.parse_callback(
        {"state": "s", "error": "access_denied", "error_description": "x" * 1000}
    )
    assert denied.error == "access_denied"
    assert len(denied.error_description) < 300
    with pytest.raises(oidc_claims.SsoRefused, match="carries no state"):
        oidc_claims.parse_callback({"code": "c"})
    with pytest.raises(oidc_claims.SsoRefused, match="neither a code nor an error"):
        oidc_claims.parse_callback({"state": "s"})


def test_check_pending_login() -> None:
    login = planned().pending
    ok = oidc_claims.CallbackParams(state="s", code="c")
    assert oidc_claims.check_pending_login(login, ok, now=NOW) is login
    with pytest.raises(oidc_claims.SsoRefused, match="unknown or already used") as refused:
        oidc_claims.check_pending_login(None, ok, now=NOW)
    assert refused.value.http_status == 401
    assert refused.value.code == "sso_refused"
    with pytest.raises(oidc_claims.SsoRefused, match="the login expired at 2026-11-01T12:10:00"):
        oidc_claims.check_pending_login(login, ok, now=NOW + timedelta(hours=1))
    denied = oidc_claims.CallbackParams(state="s", error="access_denied", error_description="user said no")
    with pytest.raises(oidc_claims.SsoRefused, match=r"refused the login \(access_denied: user said no\)"):
        oidc_claims.check_pending_login(login, denied, now=NOW)


# ----- provider metadata ---------------------------------------------------------------------


def discovery(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/keys",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }
    document.update(overrides)
    return {k: v for k, v in document.items() if v is not None}


def test_read_provider_metadata() -> None:
    assert oidc_claims.read_provider_metadata(discovery(), expected_issuer=ISSUER) == PROVIDER
    assert oidc_claims.discovery_url(ISSUER + "/") == f"{ISSUER}/.well-known/openid-configuration"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (["not", "an", "object"], "not a JSON object"),
        (discovery(issuer="https://other.example.com"), "names the issuer 'https://other.example.com'"),
        (discovery(issuer=ISSUER + "/"), "names the issuer"),
        (discovery(token_endpoint="http://idp.example.com/token"), "token_endpoint"),
        (discovery(code_challenge_methods_supported=["plain"]), "PKCE with S256"),
        (discovery(id_token_signing_alg_values_supported=["HS256", "none"]), "RS256"),
        (discovery(jwks_uri=None), "jwks_uri"),
    ],
)
def test_read_provider_metadata_refuses(document: object, message: str) -> None:
    with pytest.raises(oidc_claims.SsoProviderError, match=message) as failed:
        oidc_claims.read_provider_metadata(document, expected_issuer=ISSUER)
    assert failed.value.http_status == 502


@pytest.mark.parametrize(
    ("issuer", "ok"),
    [
        ("https://idp.example.com", True),
        ("https://idp.example.com/realms/main", True),
        ("http://127.0.0.1:5556/dex", True),
        ("http://idp.example.com", False),
        ("https://idp.example.com?x=1", False),
        ("idp.example.com", False),
    ],
)
def test_check_issuer_url(issuer: str, ok: bool) -> None:
    if ok:
        assert oidc_claims.check_issuer_url(issuer) == issuer
    else:
        with pytest.raises(errors.InvalidInput, match="sso_issuer_url"):
            oidc_claims.check_issuer_url(issuer)


# ----- requests ------------------------------------------------------------------------------


def test_authorization_url_carries_state_nonce_and_s256_challenge() -> None:
    login = planned()
    url = oidc_claims.build_authorization_url(
        PROVIDER, client_id=CLIENT_ID, scopes=("openid", "email", "groups"), planned=login
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == PROVIDER.authorization_endpoint
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(login.pending.code_verifier.encode()).digest()
    ).rstrip(b"=")
    assert query == {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid email groups",
        "state": login.state,
        "nonce": login.pending.nonce,
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    assert login.pending.code_verifier not in url


def test_authorization_url_asks_for_the_trusted_acr_levels() -> None:
    url = oidc_claims.build_authorization_url(
        PROVIDER, client_id=CLIENT_ID, scopes=("openid",), planned=planned(), acr_values=("2", "urn:x:mfa")
    )
    assert parse_qs(urlsplit(url).query)["acr_values"] == ["2 urn:x:mfa"]


def test_token_request_with_a_secret_uses_basic_auth() -> None:
    login = planned().pending
    request = oidc_claims.build_token_request(
        PROVIDER, client_id=CLIENT_ID, client_secret="s3cret", code="c0de", pending=login
    )
    assert request.url == PROVIDER.token_endpoint
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"pilothouse:s3cret").decode()
    assert parse_qs(request.body) == {
        "grant_type": ["authorization_code"],
        "redirect_uri": [REDIRECT],
        "code": ["c0de"],
        "code_verifier": [login.code_verifier],
    }
    assert "s3cret" not in repr(request)
    assert "Basic" not in repr(request)


def test_token_request_of_a_public_client_sends_only_its_id() -> None:
    request = oidc_claims.build_token_request(
        PROVIDER, client_id=CLIENT_ID, client_secret=None, code="c0de", pending=planned().pending
    )
    assert "Authorization" not in request.headers
    assert parse_qs(request.body)["client_id"] == [CLIENT_ID]


def test_client_auth_method_follows_the_provider() -> None:
    post_only = oidc_claims.ProviderMetadata(
        **{**PROVIDER.__dict__, "token_auth_methods": ("client_secret_post",)}
    )
    assert oidc_claims.choose_client_auth_method(post_only, has_secret=True) == "client_secret_post"
    jwt_only = oidc_claims.ProviderMetadata(
        **{**PROVIDER.__dict__, "token_auth_methods": ("private_key_jwt",)}
    )
    with pytest.raises(
        oidc_claims.SsoProviderError, match="neither client_secret_basic nor client_secret_post"
    ):
        oidc_claims.choose_client_auth_method(jwt_only, has_secret=True)


# ----- token response ------------------------------------------------------------------------


def test_read_token_response() -> None:
    tokens = oidc_claims.read_token_response(
        200, {"id_token": "a.b.c", "access_token": "at", "token_type": "bearer"}
    )
    assert (tokens.id_token, tokens.access_token) == ("a.b.c", "at")
    assert "a.b.c" not in repr(tokens)


@pytest.mark.parametrize(
    ("status", "document", "error", "message"),
    [
        (
            401,
            {"error": "invalid_client"},
            oidc_claims.SsoProviderError,
            "refused Pilothouse's client credentials",
        ),
        (400, {"error": "invalid_grant"}, oidc_claims.SsoRefused, "refused the authorisation code"),
        (400, {"error": "invalid_request", "error_description": "bad"}, oidc_claims.SsoProviderError, "bad"),
        (502, None, oidc_claims.SsoProviderError, "HTTP 502 without a JSON object"),
        (200, {"access_token": "at"}, oidc_claims.SsoProviderError, "no id_token"),
    ],
)
def test_read_token_response_errors(
    status: int, document: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        oidc_claims.read_token_response(status, document)


# ----- the ID token --------------------------------------------------------------------------


def id_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": CLIENT_ID,
        "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "iat": int(NOW.timestamp()),
        "nonce": NONCE,
        "email": "alice@example.com",
        "email_verified": True,
        "groups": ["platform-admins"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict[str, Any], *, key: Any = KEY, header: dict[str, Any] | None = None) -> str:
    return jwt.encode(header or {"alg": "RS256", "kid": "key-1"}, claims, key)


def verify(token: str, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "jwks": JWKS,
        "issuer": ISSUER,
        "client_id": CLIENT_ID,
        "nonce": NONCE,
        "now": NOW,
        "clock_skew": SKEW,
    }
    arguments.update(overrides)
    return oidc_claims.verify_id_token(token, **arguments)


def test_a_valid_id_token_verifies() -> None:
    claims = verify(sign(id_claims()))
    assert claims["sub"] == "user-1"
    assert claims["groups"] == ["platform-admins"]
    assert verify(sign(id_claims(aud=[CLIENT_ID])))["aud"] == [CLIENT_ID]
    access = "access-token-value"
    assert verify(sign(id_claims(at_hash=create_half_hash(access, "RS256").decode())), access_token=access)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("token", "overrides", "message"),
    [
        (lambda: sign(id_claims(iss="https://evil.example")), {}, "issued by 'https://evil.example'"),
        (lambda: sign(id_claims(aud="other-app")), {}, "meant for 'other-app', not for this client"),
        (lambda: sign(id_claims(aud=["other-app", "third"])), {}, "meant for"),
        (lambda: sign(id_claims(nonce="replayed")), {}, "nonce does not match"),
        (lambda: sign(id_claims(nonce=None)), {}, "lacks the required claim 'nonce'"),
        (lambda: sign(id_claims(sub=None)), {}, "lacks the required claim 'sub'"),
        (lambda: sign(id_claims()), {"now": NOW + timedelta(minutes=7)}, "expired at 2026-11-01T12:05:00"),
        (
            lambda: sign(id_claims(at_hash="AAAAAAAAAAAAAAAAAAAAAA")),
            {"access_token": "x"},
            "at_hash mismatch",
        ),
        (lambda: sign(id_claims(aud=[CLIENT_ID, "b"], azp="b")), {}, "authorised party"),
        (
            lambda: sign(id_claims(), key=RSAKey.generate_key(2048, parameters={"kid": "key-1"})),
            {},
            "signature",
        ),
        (lambda: sign(id_claims()) + "x", {}, "signature does not verify|malformed"),
        (lambda: "not-a-jwt", {}, "malformed"),
        (
            lambda: sign(
                id_claims(), key=OctKey.import_key("a" * 32), header={"alg": "HS256", "kid": "key-1"}
            ),
            {},
            "not signed with an accepted algorithm",
        ),
        (lambda: f"{_b64({'alg': 'none'})}.{_b64(id_claims())}.", {}, "accepted algorithm|malformed"),
    ],
    ids=[
        "issuer",
        "audience",
        "audience-list",
        "nonce",
        "no-nonce",
        "no-subject",
        "expired",
        "at-hash",
        "azp",
        "other-key",
        "bad-signature",
        "garbage",
        "hs256",
        "alg-none",
    ],
)
def test_id_token_refusals(token: Any, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(oidc_claims.SsoRefused, match=message) as refused:
        verify(token(), **overrides)
    assert refused.value.http_status == 401


def test_expiry_respects_the_clock_skew() -> None:
    token = sign(id_claims())
    assert verify(token, now=NOW + timedelta(minutes=5, seconds=59))
    with pytest.raises(oidc_claims.SsoRefused, match="expired"):
        verify(token, now=NOW + timedelta(minutes=6))


def test_unknown_key_id_asks_for_the_key_set_again() -> None:
    token = sign(id_claims(), header={"alg": "RS256", "kid": "rotated-key"})
    with pytest.raises(oidc_claims.UnknownSigningKey):
        verify(token)


def test_an_invalid_key_set_is_a_provider_error() -> None:
    with pytest.raises(oidc_claims.SsoProviderError, match="not a valid JWK set"):
        verify(sign(id_claims()), jwks={"keys": [{"kty": "RSA"}]})


# ----- claims → teams ------------------------------------------------------------------------


MAPPING = oidc_claims.TeamMapping.model_validate(
    {
        "rules": [
            {"match": "platform-admins", "teams": ["platform"]},
            {"match": "dev-*", "teams": ["{value}", "developers"]},
            {"claim": "email", "match": "*@contractor.example", "teams": ["contractors"]},
            {"claim": "realm_access.roles", "match": "auditor", "teams": ["audit"]},
        ],
        "default_teams": ["everyone"],
    }
)


@pytest.mark.parametrize(
    ("claims", "teams"),
    [
        ({"groups": ["platform-admins"]}, ("platform",)),
        ({"groups": ["dev-payments", "dev-search"]}, ("dev-payments", "dev-search", "developers")),
        ({"groups": "dev-web"}, ("dev-web", "developers")),  # a single string
        ({"groups": ["Platform-Admins"]}, ("everyone",)),  # case-sensitive
        ({"email": "eve@contractor.example"}, ("contractors",)),
        ({"realm_access": {"roles": ["auditor"]}}, ("audit",)),
        ({"groups": [{"name": "dev-x"}, 7, True]}, ("everyone",)),  # objects and odd values never match
        ({}, ("everyone",)),
    ],
)
def test_compute_identity_teams(claims: dict[str, Any], teams: tuple[str, ...]) -> None:
    identity = oidc_claims.compute_identity({"iss": ISSUER, "sub": "u", **claims}, MAPPING)
    assert identity.teams == teams


def test_compute_identity_fields() -> None:
    identity = oidc_claims.compute_identity(
        {
            "iss": ISSUER,
            "sub": "u-1",
            "email": "alice@example.com",
            "email_verified": True,
            "preferred_username": "alice",
            "groups": ["dev-a"],
        },
        MAPPING,
    )
    assert identity == oidc_claims.SsoIdentity(
        issuer=ISSUER,
        subject="u-1",
        email="alice@example.com",
        email_verified=True,
        name="alice",
        groups=("dev-a",),
        teams=("dev-a", "developers"),
    )
    unverified = oidc_claims.compute_identity({"iss": ISSUER, "sub": "u", "email_verified": "true"}, MAPPING)
    assert unverified.email is None
    assert unverified.email_verified is False


@pytest.mark.parametrize(
    ("claims", "evidence", "vouched"),
    [
        ({"amr": ["pwd", "mfa"]}, oidc_claims.MfaEvidence(), True),  # Entra ID, Okta
        ({"amr": ["pwd", "otp"]}, oidc_claims.MfaEvidence(), True),
        ({"amr": ["hwk"]}, oidc_claims.MfaEvidence(), True),  # a security key
        ({"amr": ["pwd"]}, oidc_claims.MfaEvidence(), False),
        ({"amr": "mfa"}, oidc_claims.MfaEvidence(), True),  # a lone string
        ({"amr": ["MFA"]}, oidc_claims.MfaEvidence(), False),  # RFC 8176 values are case-sensitive
        ({"amr": [{"mfa": True}]}, oidc_claims.MfaEvidence(), False),
        ({}, oidc_claims.MfaEvidence(), False),  # Dex: no amr at all
        ({"acr": "2"}, oidc_claims.MfaEvidence(), False),  # acr trusted only when configured
        ({"acr": "2"}, oidc_claims.MfaEvidence(acr=("2",)), True),  # Keycloak level of assurance
        ({"acr": "1"}, oidc_claims.MfaEvidence(acr=("2",)), False),
        ({"amr": ["pwd", "mfa"]}, oidc_claims.MfaEvidence(amr=(), acr=()), False),  # SSO never counts
        ({"amr": ["pwd", "sms"]}, oidc_claims.MfaEvidence(amr=("sms",)), True),
    ],
)
def test_second_factor_evidence(
    claims: dict[str, Any], evidence: oidc_claims.MfaEvidence, vouched: bool
) -> None:
    assert oidc_claims.vouches_second_factor(claims, evidence) is vouched
    identity = oidc_claims.compute_identity({"iss": ISSUER, "sub": "u", **claims}, MAPPING, evidence)
    assert identity.mfa is vouched
    assert oidc_claims.compute_identity({"iss": ISSUER, "sub": "u", **claims}, MAPPING).mfa is False


def test_a_dotted_claim_name_wins_over_the_path() -> None:
    claims = {"https://example.com/groups": ["a"], "https://example": {"com/groups": ["b"]}}
    assert oidc_claims.claim_values(claims, "https://example.com/groups") == ("a",)


def test_refuse_unmatched() -> None:
    strict = MAPPING.model_copy(update={"refuse_unmatched": True})
    assert oidc_claims.compute_identity({"iss": ISSUER, "sub": "u", "groups": ["dev-a"]}, strict).teams
    with pytest.raises(oidc_claims.SsoRefused, match="no team mapping rule matches"):
        oidc_claims.compute_identity({"iss": ISSUER, "sub": "u", "groups": ["sales"]}, strict)


def test_team_mapping_is_validated() -> None:
    with pytest.raises(ValueError, match="teams"):
        oidc_claims.TeamMapping.model_validate({"rules": [{"match": "x", "teams": []}]})
    with pytest.raises(ValueError, match="extra"):
        oidc_claims.TeamMapping.model_validate({"rules": [], "typo": 1})
