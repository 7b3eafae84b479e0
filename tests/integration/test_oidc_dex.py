"""Single sign-on end to end against a real OpenID Connect provider (Dex), and the attacks it refuses.

Every login here is real: Pilothouse's ``OidcClient`` discovers Dex, builds the
authorisation URL (state, nonce, PKCE S256), a scripted browser submits Dex's password
form, Dex redirects to Pilothouse's loopback receiver, and the callback redeems the code
and verifies the ID token against Dex's published keys. Tampering happens where an
attacker would do it: in the callback's parameters, in the pending-login store, or on
the wire between Pilothouse and Dex (an httpx transport that rewrites the token response).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from pilothouse.cli import sso
from pilothouse.identity import oidc, oidc_claims
from pilothouse.settings import Settings
from tests.integration.dex import DexClient, DexServer, DexUser, browser_login, dex_binary, free_port, run_dex

ALICE = DexUser(
    email="alice@example.com",
    name="Alice Admin",
    user_id="7d1c5a52-alice",
    groups=("platform-admins", "dev-payments"),
)
BOB = DexUser(email="bob@example.com", name="Bob Builder", user_id="0b7e1f3c-bob")
CLIENT_ID = "pilothouse"
CLIENT_SECRET = secrets.token_urlsafe(24)
OTHER_CLIENT_ID = "other-app"
OTHER_CLIENT_SECRET = secrets.token_urlsafe(24)
CLI_CLIENT_ID = "pilothouse-cli"
MAPPING = oidc_claims.TeamMapping(
    rules=(
        oidc_claims.TeamRule(match="platform-admins", teams=("platform",)),
        oidc_claims.TeamRule(match="dev-*", teams=("{value}",)),
    ),
    default_teams=("everyone",),
)


@pytest.fixture(scope="module")
def receiver_port() -> int:
    """The loopback port of the redirect URI registered for the confidential clients."""
    return free_port()


@pytest.fixture(scope="module")
def dex(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, receiver_port: int
) -> Iterator[DexServer]:
    redirect = (f"http://127.0.0.1:{receiver_port}{sso.CALLBACK_PATH}",)
    clients = [
        DexClient(CLIENT_ID, CLIENT_SECRET, redirect),
        DexClient(OTHER_CLIENT_ID, OTHER_CLIENT_SECRET, redirect),
        DexClient(CLI_CLIENT_ID, None),  # public: any loopback port, PKCE only
    ]
    with run_dex(
        dex_binary(settings.cache_dir),
        tmp_path_factory.mktemp("dex"),
        port=free_port(),
        clients=clients,
        users=[ALICE, BOB],
    ) as server:
        yield server


def make_client(
    dex: DexServer,
    receiver_port: int,
    *,
    client_id: str = CLIENT_ID,
    secret: str | None = CLIENT_SECRET,
    issuer: str | None = None,
    transport: httpx.BaseTransport | None = None,
    pending: oidc.PendingLoginStore | None = None,
) -> oidc.OidcClient:
    config = oidc.SsoConfig(
        issuer_url=issuer or dex.issuer,
        client_id=client_id,
        client_secret=SecretStr(secret) if secret is not None else None,
        redirect_uri=f"http://127.0.0.1:{receiver_port}{sso.CALLBACK_PATH}",
        team_mapping=MAPPING,
    )
    store = pending if pending is not None else oidc.InMemoryPendingLogins()
    return oidc.OidcClient(config, store, transport=transport)


@pytest.fixture
def pending() -> oidc.InMemoryPendingLogins:
    return oidc.InMemoryPendingLogins()


@pytest.fixture
def client(
    dex: DexServer, receiver_port: int, pending: oidc.InMemoryPendingLogins
) -> Iterator[oidc.OidcClient]:
    with make_client(dex, receiver_port, pending=pending) as client:
        yield client


def log_in(
    client: oidc.OidcClient, receiver_port: int, user: DexUser = ALICE
) -> tuple[oidc_claims.LoginStart, oidc_claims.CallbackParams]:
    """A real browser login up to the redirect: the login's start and the callback's parameters."""
    with sso.LoopbackReceiver(port=receiver_port) as receiver:
        start = client.begin_login(redirect_uri=receiver.redirect_uri)
        page = browser_login(start.authorization_url, email=user.email)
        assert page.status_code == 200, page.text
        assert "Login received" in page.text
        return start, receiver.wait(timeout=10)


def pending_of(store: oidc.InMemoryPendingLogins, start: oidc_claims.LoginStart) -> oidc_claims.PendingLogin:
    login = store.take(oidc_claims.digest_state(start.state))
    assert login is not None
    return login


# ----- the login -----------------------------------------------------------------------------


def test_login_end_to_end_maps_groups_to_teams(
    client: oidc.OidcClient,
    dex: DexServer,
    receiver_port: int,
    pending: oidc.InMemoryPendingLogins,
    capfd: pytest.CaptureFixture[str],
) -> None:
    start, params = log_in(client, receiver_port)
    assert pending.count() == 1
    assert params.state == start.state
    assert params.code
    assert not params.error
    assert "code_challenge_method=S256" in start.authorization_url
    assert "nonce=" in start.authorization_url

    identity = client.complete_login(params)

    assert identity.issuer == dex.issuer
    assert identity.subject  # Dex's opaque subject: user id and connector
    assert identity.email == ALICE.email
    assert identity.email_verified
    assert identity.name == ALICE.name
    assert identity.groups == ALICE.groups
    assert identity.teams == ("dev-payments", "platform")
    assert pending.count() == 0  # the pending login was used up
    out, err = capfd.readouterr()
    for secret in (CLIENT_SECRET, params.code, params.state):
        assert secret not in out + err


def test_user_no_rule_matches_gets_the_default_team(client: oidc.OidcClient, receiver_port: int) -> None:
    _, params = log_in(client, receiver_port, BOB)
    identity = client.complete_login(params)
    assert identity.email == BOB.email
    assert identity.groups == ()
    assert identity.teams == ("everyone",)


def test_cli_loopback_login_as_public_client_on_a_random_port(dex: DexServer, receiver_port: int) -> None:
    """The CLI's flow: a receiver on a port nobody registered, a public client, PKCE alone."""
    with make_client(dex, receiver_port, client_id=CLI_CLIENT_ID, secret=None) as client:
        announced: list[str] = []
        params = sso.receive_browser_login(
            lambda redirect_uri: client.begin_login(redirect_uri=redirect_uri).authorization_url,
            open_browser=lambda url: browser_login(url, email=ALICE.email),
            announce=announced.append,
            timeout=10,
        )
        identity = client.complete_login(params)
    assert f":{receiver_port}/" not in announced[0]  # a port of its own
    assert identity.email == ALICE.email
    assert identity.teams == ("dev-payments", "platform")


# ----- state, nonce and code: the callback -----------------------------------------------------


def test_wrong_state_is_refused_and_burns_nothing(client: oidc.OidcClient, receiver_port: int) -> None:
    _, params = log_in(client, receiver_port)
    forged = dataclasses.replace(params, state=secrets.token_urlsafe(32))
    with pytest.raises(oidc_claims.SsoRefused, match="unknown or already used login state"):
        client.complete_login(forged)
    assert client.complete_login(params).email == ALICE.email


def test_replayed_callback_is_refused(client: oidc.OidcClient, receiver_port: int) -> None:
    _, params = log_in(client, receiver_port)
    client.complete_login(params)
    with pytest.raises(oidc_claims.SsoRefused, match="unknown or already used login state") as refused:
        client.complete_login(params)
    assert refused.value.http_status == 401


def test_code_injected_into_another_login_is_refused_by_pkce(
    client: oidc.OidcClient, receiver_port: int
) -> None:
    """A stolen code replayed with the attacker's own login: the PKCE verifier does not match."""
    _, stolen = log_in(client, receiver_port)
    attacker = client.begin_login()
    injected = oidc_claims.CallbackParams(state=attacker.state, code=stolen.code)
    with pytest.raises(oidc_claims.SsoRefused, match="refused the authorisation code"):
        client.complete_login(injected)


def test_nonce_mismatch_is_refused(
    client: oidc.OidcClient, receiver_port: int, pending: oidc.InMemoryPendingLogins
) -> None:
    start, params = log_in(client, receiver_port)
    login = pending_of(pending, start)
    pending.save(dataclasses.replace(login, nonce=secrets.token_urlsafe(32)))
    with pytest.raises(oidc_claims.SsoRefused, match="nonce does not match"):
        client.complete_login(params)


# ----- the ID token on the wire ----------------------------------------------------------------


class TamperingTransport(httpx.HTTPTransport):
    """Passes requests to Dex and rewrites the ``id_token`` of token responses on the way back."""

    def __init__(self, tamper: Callable[[str], str]) -> None:
        super().__init__()
        self._tamper = tamper

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not request.url.path.endswith("/token"):
            return response
        document = json.loads(response.read())
        document["id_token"] = self._tamper(document["id_token"])
        return httpx.Response(response.status_code, json=document)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def flip_signature_byte(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(_b64decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{_b64encode(bytes(raw))}"


def grant_platform_admins(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(_b64decode(payload))
    claims["groups"] = [*claims.get("groups", []), "platform-admins"]
    return f"{header}.{_b64encode(json.dumps(claims).encode())}.{signature}"


@pytest.mark.parametrize("tamper", [flip_signature_byte, grant_platform_admins], ids=["signature", "claims"])
def test_tampered_id_token_is_refused(
    dex: DexServer, receiver_port: int, tamper: Callable[[str], str]
) -> None:
    with make_client(dex, receiver_port, transport=TamperingTransport(tamper)) as client:
        _, params = log_in(client, receiver_port, BOB)
        with pytest.raises(oidc_claims.SsoRefused, match="signature does not verify"):
            client.complete_login(params)


def _real_tokens(
    client: oidc.OidcClient, receiver_port: int, pending: oidc.InMemoryPendingLogins
) -> tuple[oidc_claims.PendingLogin, oidc_claims.TokenResponse]:
    start, params = log_in(client, receiver_port)
    login = pending_of(pending, start)
    return login, client.exchange_code(login, params.code)


def test_token_issued_to_another_client_is_refused(
    dex: DexServer, client: oidc.OidcClient, receiver_port: int
) -> None:
    """Token substitution: a valid ID token Dex issued to another application."""
    other_pending = oidc.InMemoryPendingLogins()
    with make_client(
        dex, receiver_port, client_id=OTHER_CLIENT_ID, secret=OTHER_CLIENT_SECRET, pending=other_pending
    ) as other:
        login, tokens = _real_tokens(other, receiver_port, other_pending)
        assert (
            other.verify_id_token(tokens, nonce=login.nonce, now=datetime.now(UTC))["aud"] == OTHER_CLIENT_ID
        )
    with pytest.raises(oidc_claims.SsoRefused, match="meant for 'other-app', not for this client"):
        client.verify_id_token(tokens, nonce=login.nonce, now=datetime.now(UTC))


def test_token_from_another_issuer_is_refused(
    client: oidc.OidcClient, receiver_port: int, pending: oidc.InMemoryPendingLogins
) -> None:
    login, tokens = _real_tokens(client, receiver_port, pending)
    provider = client.provider()
    jwks = httpx.get(provider.jwks_uri).json()
    with pytest.raises(
        oidc_claims.SsoRefused, match=r"issued by 'http://127\.0\.0\.1:\d+/dex', not by the configured"
    ):
        oidc_claims.verify_id_token(
            tokens.id_token,
            jwks=jwks,
            issuer="https://idp.example.com",
            client_id=CLIENT_ID,
            nonce=login.nonce,
            now=datetime.now(UTC),
            clock_skew=timedelta(seconds=60),
        )


def test_discovery_naming_another_issuer_is_refused(dex: DexServer, receiver_port: int) -> None:
    with (
        make_client(dex, receiver_port, issuer=dex.issuer + "/") as client,
        pytest.raises(oidc_claims.SsoProviderError, match="names the issuer"),
    ):
        client.begin_login()


def test_expired_id_token_is_refused(
    client: oidc.OidcClient, receiver_port: int, pending: oidc.InMemoryPendingLogins
) -> None:
    login, tokens = _real_tokens(client, receiver_port, pending)
    exp = datetime.fromtimestamp(json.loads(_b64decode(tokens.id_token.split(".")[1]))["exp"], UTC)
    skew = client.config.clock_skew
    assert client.verify_id_token(tokens, nonce=login.nonce, now=exp + skew - timedelta(seconds=1))
    with pytest.raises(oidc_claims.SsoRefused, match="ID token expired at"):
        client.verify_id_token(tokens, nonce=login.nonce, now=exp + skew + timedelta(seconds=1))


# ----- Pilothouse's own client credentials -------------------------------------------------------


def test_wrong_client_secret_is_a_clear_provider_error(dex: DexServer, receiver_port: int) -> None:
    wrong = "not-" + CLIENT_SECRET
    with make_client(dex, receiver_port, secret=wrong) as client:
        _, params = log_in(client, receiver_port)
        with pytest.raises(
            oidc_claims.SsoProviderError, match="refused Pilothouse's client credentials"
        ) as failed:
            client.complete_login(params)
    assert "sso_client_secret" in failed.value.hint
    assert wrong not in str(failed.value)
    assert CLIENT_SECRET not in str(failed.value)
    assert failed.value.http_status == 502
