"""Single sign-on plumbing that needs no provider: pending logins, settings, the loopback receiver.

Everything that talks to a provider is tested against real Dex in
``tests/integration/test_oidc_dex.py``.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from pilothouse import errors
from pilothouse.cli import sso
from pilothouse.identity import oidc, oidc_claims
from pilothouse.settings import Settings

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def login(
    state: str, *, created: datetime = NOW, ttl: timedelta = timedelta(minutes=10)
) -> oidc_claims.PendingLogin:
    return oidc_claims.PendingLogin(
        state_digest=oidc_claims.digest_state(state),
        nonce="n",
        code_verifier="v" * 64,
        redirect_uri="http://127.0.0.1:1/callback",
        created_at=created,
        expires_at=created + ttl,
    )


# ----- pending logins ------------------------------------------------------------------------


def test_pending_logins_are_taken_once() -> None:
    store = oidc.InMemoryPendingLogins()
    store.save(login("a"))
    assert store.take(oidc_claims.digest_state("b")) is None
    assert store.take(oidc_claims.digest_state("a")) == login("a")
    assert store.take(oidc_claims.digest_state("a")) is None


def test_pending_logins_take_is_atomic_across_threads() -> None:
    store = oidc.InMemoryPendingLogins()
    store.save(login("a"))
    winners: list[oidc_claims.PendingLogin] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        if (taken := store.take(oidc_claims.digest_state("a"))) is not None:
            winners.append(taken)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_pending_logins_expire_and_stay_bounded() -> None:
    store = oidc.InMemoryPendingLogins(max_entries=3)
    store.save(login("old", created=NOW - timedelta(hours=1)))
    store.save(login("b"))
    store.save(login("c"))
    store.save(login("d"))  # full: the expired one goes
    assert store.take(oidc_claims.digest_state("old")) is None
    store.save(login("e"))  # full, nothing expired: the oldest goes
    assert store.take(oidc_claims.digest_state("b")) is None
    assert store.count() == 3
    assert store.delete_expired(NOW + timedelta(hours=1)) == 3
    assert store.count() == 0


# ----- configuration -------------------------------------------------------------------------


def settings(**values: object) -> Settings:
    base: dict[str, object] = {
        "sso_issuer_url": "https://idp.example.com",
        "sso_client_id": "pilothouse",
        "sso_client_secret": "s3cret-value",
        "sso_redirect_uri": "https://pilothouse.example.com/api/v1/auth/sso/callback",
    }
    base.update(values)
    return Settings.model_validate(base)


def test_sso_config_from_settings() -> None:
    config = oidc.sso_config_from_settings(
        settings(
            sso_team_mapping={"rules": [{"match": "admins", "teams": ["platform"]}]},
            sso_login_ttl_seconds=120,
        )
    )
    assert config.issuer_url == "https://idp.example.com"
    assert config.client_secret is not None
    assert config.client_secret.get_secret_value() == "s3cret-value"
    assert config.team_mapping.rules[0].teams == ("platform",)
    assert config.login_ttl == timedelta(minutes=2)
    assert config.scopes == ("openid", "email", "profile", "groups")
    assert "s3cret-value" not in repr(config)
    assert "s3cret-value" not in repr(settings())


def test_sso_client_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTHOUSE_SSO_CLIENT_SECRET", "from-env")
    loaded = Settings(sso_issuer_url="https://idp.example.com", sso_client_id="pilothouse")
    assert loaded.sso_client_secret == SecretStr("from-env")


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ({"sso_issuer_url": ""}, oidc_claims.SsoNotConfigured, "not configured"),
        ({"sso_client_id": ""}, errors.InvalidInput, "sso_client_id is empty"),
        ({"sso_issuer_url": "http://idp.example.com"}, errors.InvalidInput, "https"),
        ({"sso_scopes": ["email"]}, errors.InvalidInput, "openid"),
        ({"sso_team_mapping": {"rules": [{"teams": ["x"]}]}}, errors.InvalidInput, r"rules\.0\.match"),
    ],
)
def test_sso_config_refuses(values: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        oidc.sso_config_from_settings(settings(**values))


# ----- the callback's own checks come before any request -------------------------------------


class NoNetwork(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected request to {request.url}")


def client_at(now: datetime, store: oidc.PendingLoginStore) -> oidc.OidcClient:
    config = oidc.sso_config_from_settings(settings())
    return oidc.OidcClient(config, store, clock=lambda: now, transport=NoNetwork())


@pytest.mark.parametrize(
    ("params", "now", "message"),
    [
        (oidc_claims.CallbackParams(state="forged", code="c"), NOW, "unknown or already used"),
        (oidc_claims.CallbackParams(state="a", code="c"), NOW + timedelta(hours=1), "the login expired"),
        (oidc_claims.CallbackParams(state="a", error="access_denied"), NOW, "refused the login"),
    ],
)
def test_complete_login_refuses_before_any_request(
    params: oidc_claims.CallbackParams, now: datetime, message: str
) -> None:
    store = oidc.InMemoryPendingLogins()
    store.save(login("a"))
    with client_at(now, store) as client, pytest.raises(oidc_claims.SsoRefused, match=message):
        client.complete_login(params)


def test_an_unreachable_provider_is_a_provider_error() -> None:
    config = oidc.SsoConfig(issuer_url="http://127.0.0.1:9/dex", client_id="pilothouse", client_secret=None)
    with (
        oidc.OidcClient(config, oidc.InMemoryPendingLogins()) as client,
        pytest.raises(
            oidc_claims.SsoProviderError,
            match=re.escape("did not answer GET http://127.0.0.1:9/dex/.well-known"),
        ),
    ):
        client.provider()


# ----- the CLI's loopback receiver -----------------------------------------------------------


def test_loopback_receiver_takes_one_callback() -> None:
    with sso.LoopbackReceiver() as receiver:
        assert receiver.redirect_uri.startswith("http://127.0.0.1:")
        assert receiver.redirect_uri.endswith("/callback")
        page = httpx.get(receiver.redirect_uri, params={"code": "c0de", "state": "st4te"})
        assert page.status_code == 200
        assert "Login received" in page.text
        assert httpx.get(receiver.redirect_uri, params={"code": "x", "state": "y"}).status_code == 409
        assert httpx.get(receiver.redirect_uri.replace("/callback", "/other")).status_code == 404
        params = receiver.wait(timeout=1)
    assert (params.code, params.state) == ("c0de", "st4te")


def test_loopback_receiver_reports_a_bad_callback_and_a_timeout() -> None:
    with sso.LoopbackReceiver() as receiver:
        page = httpx.get(receiver.redirect_uri, params={"code": "c0de"})
        assert page.status_code == 400
        assert "no state" in page.text
        with pytest.raises(oidc_claims.SsoRefused, match="carries no state"):
            receiver.wait(timeout=1)
    with (
        sso.LoopbackReceiver() as receiver,
        pytest.raises(oidc_claims.SsoRefused, match="no single sign-on callback"),
    ):
        receiver.wait(timeout=0.1)


def test_receive_browser_login_announces_and_opens_the_url() -> None:
    opened: list[str] = []
    announced: list[str] = []

    def browser(url: str) -> None:
        opened.append(url)
        redirect_uri = url.split("redirect_uri=", 1)[1]
        httpx.get(redirect_uri, params={"code": "c", "state": "s"})

    params = sso.receive_browser_login(
        lambda redirect_uri: f"https://idp.example.com/auth?redirect_uri={redirect_uri}",
        open_browser=browser,
        announce=announced.append,
        timeout=5,
    )
    assert (params.code, params.state) == ("c", "s")
    assert opened
    assert opened[0] in announced[0]
