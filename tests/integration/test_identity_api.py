"""Identity over the real API server: sign-in, MFA, sessions, bindings, tokens, bad input and attacks.

A platform of its own (fresh store, small login throttle) behind uvicorn on
loopback. Every response and the server's log output are checked for the
secrets the test made.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest

from pilothouse import logs
from pilothouse.api.app import create_app
from pilothouse.identity.policy import Role, Scope
from pilothouse.platform import Platform
from pilothouse.settings import load_settings
from tests.integration.api_server import serving

ALICE_PASSWORD = "alice passphrase 1"
BOB_PASSWORD = "bob passphrase 22"
SEEN: list[str] = []  # every response body, checked for secrets at the end


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home: Path = tmp_path_factory.mktemp("identity-api")
    platform = Platform.open(
        load_settings(
            data_dir=home / "data",
            config_dir=home / "config",
            login_free_failures=3,
            login_lockout_failures=5,
            api_max_body_bytes=16 * 1024,
        )
    )
    yield platform
    platform.close()


@pytest.fixture(scope="module")
def api(platform: Platform) -> Iterator[str]:
    with serving(create_app(platform, reconcile=False)) as url:
        yield url


@pytest.fixture(autouse=True)
def fresh_client_record(platform: Platform) -> None:
    """Every request comes from 127.0.0.1: forget the address's failures between tests."""
    platform.identity.store.update_attempts("client:127.0.0.1", lambda _row: None)


@pytest.fixture(scope="module")
def admin(platform: Platform) -> str:
    token = platform.ensure_bootstrap_token()
    assert token is not None
    return token


class Client:
    def __init__(self, api: str, token: str | None = None) -> None:
        self.http = httpx.Client(base_url=api, timeout=30)
        self.token = token

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response = self.http.request(method, path, headers=headers, **kwargs)
        SEEN.append(response.text)
        return response


def login(api: str, user: str, password: str, **extra: str) -> httpx.Response:
    return Client(api)("POST", "/api/v1/session", json={"username": user, "password": password, **extra})


def totp(uri: str, moment: datetime | None = None) -> str:
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    return pyotp.TOTP(secret).at(moment or datetime.now(UTC))


def test_bootstrap_token_is_a_platform_admin(api: str, admin: str) -> None:
    me = Client(api, admin)("GET", "/api/v1/session").json()
    assert me["name"] == "token:bootstrap-admin"
    assert me["grants"] == [{"role": "platform-admin", "scope": "platform", "via": "token bootstrap-admin"}]
    assert Client(api, admin)("GET", "/api/v1/whoami").json()["roles"] == ["platform-admin"]


def test_users_teams_and_bindings_over_the_api(api: str, admin: str) -> None:
    root = Client(api, admin)
    created = root(
        "POST", "/api/v1/users", json={"name": "alice", "password": ALICE_PASSWORD, "email": "a@x.io"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["mfa"] == "off"
    assert root("POST", "/api/v1/users", json={"name": "bob", "password": BOB_PASSWORD}).status_code == 201
    assert (
        root("POST", "/api/v1/users", json={"name": "alice", "password": ALICE_PASSWORD}).status_code == 409
    )
    assert root("POST", "/api/v1/teams", json={"name": "sre"}).status_code == 201
    assert root("PUT", "/api/v1/teams/sre/members/alice").json()["members"] == ["alice"]
    bound = root("POST", "/api/v1/bindings", json={"role": "cluster-admin", "team": "sre", "cluster": "prod"})
    assert bound.status_code == 201, bound.text
    assert bound.json()["scope"] == "cluster/prod"

    session = login(api, "alice", ALICE_PASSWORD)
    assert session.status_code == 201, session.text
    alice = Client(api, session.json()["token"])
    me = alice("GET", "/api/v1/session").json()
    assert (me["user"], me["teams"], me["mfa"]) == ("alice", ["sre"], "off")
    assert me["grants"] == [{"role": "cluster-admin", "scope": "cluster/prod", "via": "team sre"}]

    # a cluster admin delegates inside their cluster, and nowhere else
    given = alice(
        "POST",
        "/api/v1/bindings",
        json={"role": "viewer", "user": "bob", "cluster": "prod", "namespace": "web"},
    )
    assert given.status_code == 201, given.text
    for body in (
        {"role": "viewer", "user": "bob", "cluster": "staging"},
        {"role": "viewer", "user": "bob"},
        {"role": "platform-admin", "user": "bob", "cluster": "prod"},
    ):
        refused = alice("POST", "/api/v1/bindings", json=body)
        assert refused.status_code == 403, (body, refused.text)
        assert refused.json()["code"] == "forbidden"
    assert alice("GET", "/api/v1/bindings").status_code == 403  # the platform's bindings are not hers to read
    listed = alice("GET", "/api/v1/bindings", params={"cluster": "prod"}).json()
    assert {(b["role"], b["subject"], b["scope"]) for b in listed} == {
        ("cluster-admin", "sre", "cluster/prod"),
        ("viewer", "bob", "namespace/prod/web"),
    }
    assert alice("GET", "/api/v1/users").status_code == 403

    bob = Client(api, login(api, "bob", BOB_PASSWORD).json()["token"])
    assert (
        bob("GET", "/api/v1/events", params={"cluster": "prod", "namespace": "web"}).status_code == 404
    )  # allowed: no such cluster
    assert bob("GET", "/api/v1/clusters/prod").status_code == 403
    assert alice("DELETE", f"/api/v1/bindings/{given.json()['id']}").status_code == 204
    assert bob("GET", "/api/v1/events", params={"cluster": "prod", "namespace": "web"}).status_code == 403


def test_mfa_enrolment_sign_in_replay_and_sign_out(api: str, admin: str) -> None:
    alice = Client(api, login(api, "alice", ALICE_PASSWORD).json()["token"])
    assert alice("POST", "/api/v1/session/mfa", json={"password": "not my password"}).status_code == 401
    enrolled = alice("POST", "/api/v1/session/mfa", json={"password": ALICE_PASSWORD})
    assert enrolled.status_code == 201, enrolled.text
    uri = enrolled.json()["otpauth_uri"]
    assert enrolled.json()["qr_svg"].startswith("<svg")
    assert alice("POST", "/api/v1/session/mfa/confirm", json={"code": "000000"}).status_code in (400, 401)
    confirmed = alice("POST", "/api/v1/session/mfa/confirm", json={"code": totp(uri)})
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recovery_codes"]
    assert len(recovery) == 10

    needs = login(api, "alice", ALICE_PASSWORD)
    assert needs.status_code == 401
    assert needs.json()["code"] == "mfa_required"
    later = datetime.now(UTC) + timedelta(seconds=30)  # the confirming code's step is used up
    signed = login(api, "alice", ALICE_PASSWORD, code=totp(uri, later))
    assert signed.status_code == 201, signed.text
    replayed = login(api, "alice", ALICE_PASSWORD, code=totp(uri, later))
    assert replayed.status_code == 401
    assert "already used" in replayed.json()["message"]
    by_recovery = login(api, "alice", ALICE_PASSWORD, recovery_code=recovery[0])
    assert by_recovery.status_code == 201
    assert login(api, "alice", ALICE_PASSWORD, recovery_code=recovery[0]).status_code == 401

    session = Client(api, signed.json()["token"])
    assert session("GET", "/api/v1/session").json()["mfa"] == "on"
    assert session("DELETE", "/api/v1/session").status_code == 204
    gone = session("GET", "/api/v1/session")
    assert gone.status_code == 401
    assert "signed out" in gone.json()["message"]
    assert Client(api, admin)("DELETE", "/api/v1/session").status_code == 400  # a token is not a session
    sessions = Client(api, admin)("GET", "/api/v1/users/alice/sessions").json()
    assert all(s["prefix"].endswith("…") and len(s["prefix"]) == 9 for s in sessions)
    assert Client(api, admin)("DELETE", "/api/v1/users/alice/mfa").status_code == 204
    assert login(api, "alice", ALICE_PASSWORD).status_code == 201


def test_scoped_tokens_over_the_api(api: str, admin: str, platform: Platform) -> None:
    root = Client(api, admin)
    issued = root(
        "POST",
        "/api/v1/tokens",
        json={"name": "deployer", "grants": [{"role": "operator", "cluster": "prod"}], "ttl_hours": 1},
    )
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    info = issued.json()["info"]
    assert info["grants"] == [{"role": "operator", "cluster": "prod", "namespace": None}]
    assert info["expires_at"] is not None
    deployer = Client(api, token)
    assert deployer("POST", "/api/v1/clusters/prod/stop").status_code == 404  # allowed, no such cluster
    assert deployer("POST", "/api/v1/clusters/staging/stop").status_code == 403
    listed = root("GET", "/api/v1/tokens").text
    assert token not in listed
    assert token[3:] not in listed
    assert (
        root("POST", "/api/v1/tokens", json={"name": "bad", "grants": [{"role": "nope"}]}).status_code == 400
    )
    assert (
        root(
            "POST", "/api/v1/tokens", json={"name": "bad", "grants": [{"role": "viewer", "namespace": "web"}]}
        ).status_code
        == 400
    )
    assert root("DELETE", "/api/v1/tokens/deployer").status_code == 204
    revoked = deployer("POST", "/api/v1/clusters/prod/stop")
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["message"]
    scoped, _ = platform.identity.issue_token(
        platform.identity.local_operator("t"),
        "viewer-web",
        [(Role.VIEWER, Scope.of_namespace("prod", "web"))],
    )
    assert (
        Client(api, scoped)(
            "POST", "/api/v1/tokens", json={"name": "x", "grants": [{"role": "viewer"}]}
        ).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"username": "alice"}, 422, "password"),
        ({"username": "alice", "password": "x", "admin": True}, 422, "admin"),
        ({"username": "a" * 65, "password": "x"}, 422, "username"),
        ({"username": "alice", "password": "x" * 2000}, 422, "password"),
        ("not json at all", 422, ""),
        ([1, 2, 3], 422, ""),
    ],
)
def test_malformed_sign_ins_are_refused_clearly(api: str, body: object, status: int, fragment: str) -> None:
    if isinstance(body, str):
        response = httpx.post(
            api + "/api/v1/session", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = httpx.post(api + "/api/v1/session", json=body)
    SEEN.append(response.text)
    assert response.status_code == status, response.text
    assert response.json()["code"] == "invalid_input"
    assert fragment in response.json()["message"]


def test_oversized_bodies_are_refused_before_they_are_read(api: str, admin: str) -> None:
    big = {"username": "alice", "password": "p" * (20 * 1024)}
    response = httpx.post(api + "/api/v1/session", json=big)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 1024

    chunked = httpx.post(
        api + "/api/v1/users",
        content=chunks(),
        headers={"Authorization": f"Bearer {admin}", "content-type": "application/json"},
    )
    assert chunked.status_code == 413
    small_chunked = httpx.post(
        api + "/api/v1/session",
        content=iter([b'{"username": "nobody", ', b'"password": "wrong password"}']),
        headers={"content-type": "application/json"},
    )
    assert small_chunked.status_code == 401  # a body under the limit is passed on whole


def test_guessing_gets_a_429_then_a_lock_out(api: str, admin: str) -> None:
    root = Client(api, admin)
    assert (
        root("POST", "/api/v1/users", json={"name": "carol", "password": "carol passphrase"}).status_code
        == 201
    )
    statuses = [login(api, "carol", f"guess number {i}").status_code for i in range(5)]
    assert statuses == [401, 401, 401, 401, 429]  # three free failures, then a delay
    throttled = login(api, "carol", "carol passphrase")
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "too_many_attempts"
    wait = int(throttled.headers["Retry-After"])  # RFC 9110: whole seconds
    assert 1 <= wait <= 3600
    assert f"try again in {wait} s" in throttled.json()["message"]
    assert "try again in" in throttled.json()["message"]


def test_no_secret_in_any_response_or_log_line(
    api: str, admin: str, platform: Platform, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.configure("DEBUG")
    try:
        root = Client(api, admin)
        root("POST", "/api/v1/users", json={"name": "dave", "password": "dave passphrase 9"})
        token = login(api, "dave", "dave passphrase 9").json()["token"]
        dave = Client(api, token)
        login(api, "dave", "dave wrong guess 1")
        for path in (
            "/api/v1/users",
            "/api/v1/users/dave",
            "/api/v1/teams",
            "/api/v1/tokens",
            "/api/v1/bindings",
        ):
            assert root("GET", path).status_code == 200
        root("GET", "/api/v1/users/dave/sessions")
        dave("GET", "/api/v1/session")
        dave("DELETE", "/api/v1/session")
    finally:
        logs.configure("WARNING")
    captured = capfd.readouterr()
    log_output = captured.out + captured.err
    assert "identity.signed_in" in log_output
    listings = "\n".join(SEEN[-8:])
    for secret in (token, token[4:], admin, admin[3:], "dave passphrase 9", "dave wrong guess 1"):
        assert secret not in log_output
        assert secret not in listings
    for secret in (ALICE_PASSWORD, BOB_PASSWORD, "carol passphrase", admin):
        assert not [body for body in SEEN if secret in body]


def test_deleting_users_and_teams_over_the_api(api: str, admin: str) -> None:
    root = Client(api, admin)
    for name in ("erin", "frank"):
        assert (
            root("POST", "/api/v1/users", json={"name": name, "password": f"{name} passphrase 7"}).status_code
            == 201
        )
    assert root("POST", "/api/v1/teams", json={"name": "night-shift"}).status_code == 201
    assert root("PUT", "/api/v1/teams/night-shift/members/erin").status_code == 200
    for body in (
        {"role": "platform-admin", "user": "frank"},
        {"role": "viewer", "user": "erin", "cluster": "prod"},
        {"role": "operator", "team": "night-shift", "cluster": "prod"},
    ):
        assert root("POST", "/api/v1/bindings", json=body).status_code == 201
    erin = Client(api, login(api, "erin", "erin passphrase 7").json()["token"])
    frank = Client(api, login(api, "frank", "frank passphrase 7").json()["token"])

    refused = frank("DELETE", "/api/v1/users/frank")
    assert refused.status_code == 409
    assert "signed in as" in refused.json()["message"]
    assert erin("DELETE", "/api/v1/teams/night-shift").status_code == 403

    team = frank("DELETE", "/api/v1/teams/night-shift")
    assert team.status_code == 200, team.text
    assert (team.json()["bindings_removed"], team.json()["memberships_removed"]) == (1, 1)
    gone = frank("DELETE", "/api/v1/users/erin")
    assert gone.status_code == 200, gone.text
    assert gone.json() == {
        "name": "erin",
        "bindings_removed": 1,
        "memberships_removed": 0,
        "sessions_removed": 1,
        "tokens_removed": 0,
    }
    assert erin("GET", "/api/v1/session").status_code == 401
    assert root("GET", "/api/v1/users/erin").status_code == 404
    assert root("DELETE", "/api/v1/users/erin").json()["code"] == "not_found"
    assert root("GET", "/api/v1/teams/night-shift").status_code == 404
    assert all(b["subject"] != "erin" for b in root("GET", "/api/v1/bindings").json())
