"""Single sign-on through Pilothouse's API and CLI, end to end against a real provider (Dex).

A real Pilothouse API server (uvicorn on loopback) is registered at Dex as a
confidential client whose redirect URI is the API's own callback
(``/api/v1/session/sso/callback``). A scripted browser opens the URL that
``/api/v1/session/sso/start`` answers, submits Dex's password form and follows
the redirects back to the API, which redeems the code, verifies the ID token,
maps Dex's ``groups`` to teams and answers a session token in JSON. The token
then calls authenticated routes. Forged and replayed states are refused with
401, the raw SQLite database is read for plaintext secrets, and
``pilothouse login --sso`` runs as a real subprocess whose "browser" (``$BROWSER``,
used by the standard library's ``webbrowser``) is the same scripted browser.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest

from pilothouse.api.app import create_app
from pilothouse.identity.policy import Role, Scope, SubjectKind
from pilothouse.platform import Platform
from pilothouse.settings import Settings, load_settings
from pilothouse.store.sso import PendingLoginRecord, PendingLoginTable
from tests.integration.api_server import serving
from tests.integration.dex import (
    PASSWORD,
    DexClient,
    DexServer,
    DexUser,
    browser_login,
    dex_binary,
    free_port,
    run_dex,
)

REPO = Path(__file__).resolve().parents[2]
PILOTHOUSE = Path(sys.executable).with_name("pilothouse")
ALICE = DexUser(
    email="alice@example.com",
    name="Alice Admin",
    user_id="5f0c-alice",
    groups=("platform-admins", "dev-payments"),
)
BOB = DexUser(email="bob@example.com", name="Bob Builder", user_id="6a1d-bob")
CLIENT_ID = "pilothouse"
CLIENT_SECRET = "dex-client-secret-" + hashlib.sha256(os.urandom(16)).hexdigest()[:24]
CLI_CLIENT_ID = "pilothouse-cli"
CALLBACK_PATH = "/api/v1/session/sso/callback"
TEAM_MAPPING = {
    "rules": [
        {"match": "platform-admins", "teams": ["platform"]},
        {"match": "dev-*", "teams": ["{value}"]},
    ],
    "default_teams": ["everyone"],
}
_FORM_ACTION = re.compile(r'<form[^>]*method="post"[^>]*action="([^"]+)"', re.IGNORECASE)


@pytest.fixture(scope="module")
def api_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def dex(settings: Settings, tmp_path_factory: pytest.TempPathFactory, api_port: int) -> Iterator[DexServer]:
    clients = [
        DexClient(CLIENT_ID, CLIENT_SECRET, (f"http://127.0.0.1:{api_port}{CALLBACK_PATH}",)),
        DexClient(CLI_CLIENT_ID, None),  # public: any loopback redirect URI, PKCE only
    ]
    with run_dex(
        dex_binary(settings.cache_dir),
        tmp_path_factory.mktemp("sso-dex"),
        port=free_port(),
        clients=clients,
        users=[ALICE, BOB],
    ) as server:
        yield server


def sso_settings(home: Path, dex: DexServer, **overrides: object) -> Settings:
    return load_settings(
        data_dir=home / "data",
        config_dir=home / "config",
        sso_issuer_url=dex.issuer,
        sso_team_mapping=TEAM_MAPPING,
        **overrides,
    )


@pytest.fixture(scope="module")
def sso_platform(
    dex: DexServer, api_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """A platform of its own with SSO on; the teams the mapping names exist, ``platform`` views all."""
    platform = Platform.open(
        sso_settings(
            tmp_path_factory.mktemp("sso-api"),
            dex,
            sso_client_id=CLIENT_ID,
            sso_client_secret=CLIENT_SECRET,
            sso_redirect_uri=f"http://127.0.0.1:{api_port}{CALLBACK_PATH}",
        )
    )
    identity = platform.identity
    for team in ("platform", "dev-payments", "everyone"):
        identity.create_team(team)
    admin = identity.local_operator("test")
    identity.bind(admin, SubjectKind.TEAM, "platform", Role.VIEWER, Scope.platform())
    yield platform
    platform.close()


@pytest.fixture(scope="module")
def api(sso_platform: Platform, api_port: int) -> Iterator[str]:
    with serving(create_app(sso_platform, reconcile=False), port=api_port) as url:
        yield url


def start(api: str, **params: str) -> str:
    response = httpx.get(f"{api}/api/v1/session/sso/start", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    url: str = response.json()["authorization_url"]
    return url


class _Arrived(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def browse_to_callback(authorization_url: str, *, email: str, callback: str) -> str:
    """Play the browser up to the redirect to ``callback`` and return that URL, without opening it."""

    def stop(request: httpx.Request) -> None:
        if str(request.url).startswith(callback):
            raise _Arrived(str(request.url))

    with httpx.Client(follow_redirects=True, timeout=10.0, event_hooks={"request": [stop]}) as browser:
        page = browser.get(authorization_url)
        match = _FORM_ACTION.search(page.text)
        assert match, page.text[:500]
        try:
            browser.post(
                urljoin(str(page.url), html.unescape(match.group(1))),
                data={"login": email, "password": PASSWORD},
            )
        except _Arrived as arrived:
            return arrived.url
    raise AssertionError(f"the provider never redirected to {callback}")


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ----- the login through the API -----------------------------------------------------------------


def test_sso_login_through_the_api_maps_teams_and_gives_a_working_session(api: str) -> None:
    answer = browser_login(start(api), email=ALICE.email)

    assert answer.status_code == 200, answer.text
    assert answer.url.path == CALLBACK_PATH
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    token = body["token"]
    assert token.startswith("phs_")
    assert body["user"]["name"] == ALICE.email
    assert body["user"]["display_name"] == ALICE.name
    assert body["user"]["source"].startswith("oidc:http://127.0.0.1:")
    assert not body["user"]["has_password"]
    assert body["user"]["teams"] == ["dev-payments", "platform"]
    assert body["session"]["method"] == "oidc"
    for hop in [*answer.history, answer]:  # the token travels in the body only
        assert token not in str(hop.url)
        assert token not in str(hop.headers)

    me = httpx.get(f"{api}/api/v1/session", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["user"] == ALICE.email
    assert me.json()["teams"] == ["dev-payments", "platform"]
    assert {(g["role"], g["scope"], g["via"]) for g in me.json()["grants"]} == {
        ("viewer", "platform", "team platform")
    }
    clusters = httpx.get(f"{api}/api/v1/clusters", headers=bearer(token))
    assert clusters.status_code == 200, clusters.text  # viewer, through the mapped team


def test_user_without_mapped_groups_gets_the_default_team_and_no_access(api: str) -> None:
    answer = browser_login(start(api), email=BOB.email)
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    assert answer.json()["user"]["teams"] == ["everyone"]
    refused = httpx.get(f"{api}/api/v1/clusters", headers=bearer(token))
    assert refused.status_code == 403, refused.text


def test_second_login_finds_the_same_user(api: str, sso_platform: Platform) -> None:
    first = browser_login(start(api), email=ALICE.email).json()
    second = browser_login(start(api), email=ALICE.email).json()
    assert first["user"]["name"] == second["user"]["name"] == ALICE.email
    assert first["token"] != second["token"]
    assert [u.name for u in sso_platform.identity.list_users()].count(ALICE.email) == 1


def test_a_team_requiring_mfa_refuses_a_sign_in_the_provider_did_not_vouch_for(
    api: str, sso_platform: Platform
) -> None:
    """Dex's ID tokens carry no ``amr``: nothing vouches for a second factor, so the member
    of an MFA-requiring team is refused (the provider vouching is tested on plain claims)."""
    sso_platform.identity.require_mfa("everyone", True)
    try:
        answer = browser_login(start(api), email=BOB.email)
    finally:
        sso_platform.identity.require_mfa("everyone", False)
    assert answer.status_code == 401, answer.text
    assert answer.json()["code"] == "mfa_required"
    assert "team everyone requires multi-factor sign-in" in answer.json()["message"]
    assert "second factor" in answer.json()["hint"]
    assert "token" not in answer.json()


# ----- state: forged, replayed --------------------------------------------------------------------


def test_wrong_state_is_refused_then_replayed_state_is_refused(api: str) -> None:
    callback = browse_to_callback(start(api), email=ALICE.email, callback=api + CALLBACK_PATH)
    assert "code=" in callback
    assert "state=" in callback

    forged = httpx.get(with_query(callback, state="A" * 43))
    assert forged.status_code == 401, forged.text
    assert forged.json()["code"] == "sso_refused"
    assert "unknown or already used login state" in forged.json()["message"]
    assert forged.headers["www-authenticate"] == "Bearer"

    real = httpx.get(callback)  # the forged attempt burnt nothing
    assert real.status_code == 200, real.text
    assert real.json()["token"].startswith("phs_")

    replayed = httpx.get(callback)
    assert replayed.status_code == 401, replayed.text
    assert replayed.json()["code"] == "sso_refused"
    assert "token" not in replayed.json()


def test_callback_without_state_or_with_a_provider_error_is_refused(api: str) -> None:
    no_state = httpx.get(f"{api}{CALLBACK_PATH}", params={"code": "abc"})
    assert no_state.status_code == 401
    assert "carries no state" in no_state.json()["message"]

    callback = browse_to_callback(start(api), email=ALICE.email, callback=api + CALLBACK_PATH)
    denied = httpx.get(
        with_query(callback, error="access_denied", error_description="the user said no", code="")
    )
    assert denied.status_code == 401
    assert "refused the login (access_denied: the user said no)" in denied.json()["message"]
    assert httpx.get(callback).status_code == 401  # the refusal used the login up


def test_start_accepts_only_the_configured_or_a_loopback_redirect_uri(api: str, dex: DexServer) -> None:
    evil = httpx.get(
        f"{api}/api/v1/session/sso/start", params={"redirect_uri": "https://evil.example/callback"}
    )
    assert evil.status_code == 400
    assert "loopback" in evil.json()["message"]

    loopback = "http://127.0.0.1:8976/callback"
    url = start(api, redirect_uri=loopback)
    assert url.startswith(dex.issuer + "/auth?")
    query = parse_qs(urlsplit(url).query)
    assert query["redirect_uri"] == [loopback]
    assert query["code_challenge_method"] == ["S256"]
    assert query["client_id"] == [CLIENT_ID]

    redirected = httpx.get(f"{api}/api/v1/session/sso/start", params={"redirect": "true"})
    assert redirected.status_code == 303
    assert redirected.headers["location"].startswith(dex.issuer + "/auth?")


def test_sso_routes_answer_404_when_sso_is_not_configured(platform: Platform) -> None:
    assert platform.sso is None
    with serving(create_app(platform, reconcile=False)) as url:
        for path in ("/api/v1/session/sso/start", CALLBACK_PATH + "?state=x&code=y"):
            response = httpx.get(url + path)
            assert response.status_code == 404, response.text
            assert response.json()["code"] == "sso_not_configured"


# ----- what the database holds ---------------------------------------------------------------------


def raw_database(platform: Platform) -> bytes:
    """Every byte of the SQLite store (main file and write-ahead log) and a full SQL dump of it."""
    path = Path(platform.settings.effective_database_url.removeprefix("sqlite:///"))
    files = [path, path.with_name(path.name + "-wal")]
    raw = b"".join(f.read_bytes() for f in files if f.exists())
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        dump = "\n".join(connection.iterdump())
    return raw + dump.encode()


def test_raw_database_holds_no_state_nonce_verifier_code_or_token(api: str, sso_platform: Platform) -> None:
    url = start(api)
    query = parse_qs(urlsplit(url).query)
    state, nonce = query["state"][0], query["nonce"][0]
    digest = hashlib.sha256(state.encode()).hexdigest()
    during = raw_database(sso_platform)
    assert digest.encode() in during  # the pending login is there, under the state's digest only

    table = PendingLoginTable(sso_platform.db, sso_platform.box)
    pending = table.take(digest)
    assert pending is not None
    assert pending.nonce == nonce
    table.save(pending)  # put back (sealed afresh); the login goes on
    verifier = pending.code_verifier

    callback = browse_to_callback(url, email=ALICE.email, callback=api + CALLBACK_PATH)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    answer = httpx.get(callback)
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    after = raw_database(sso_platform)

    for secret in (state, nonce, verifier, code, token, CLIENT_SECRET):
        assert secret.encode() not in during, secret[:6]
        assert secret.encode() not in after, secret[:6]
    assert table.take(digest) is None  # used up


# ----- the pending-login table ----------------------------------------------------------------------


def record(digest: str, *, created: datetime, ttl: timedelta = timedelta(minutes=10)) -> PendingLoginRecord:
    return PendingLoginRecord(
        state_digest=digest,
        nonce="nonce-" + digest,
        code_verifier="verifier-" + digest,
        redirect_uri="http://127.0.0.1:1/callback",
        created_at=created,
        expires_at=created + ttl,
    )


def test_pending_logins_expire_are_capped_and_are_taken_once(tmp_path: Path) -> None:
    platform = Platform.open(load_settings(data_dir=tmp_path / "data", config_dir=tmp_path / "config"))
    try:
        table = PendingLoginTable(platform.db, platform.box, max_rows=3)
        now = datetime.now(UTC)
        table.save(record("old", created=now - timedelta(minutes=20)))
        assert table.count() == 1
        assert table.delete_expired(now) == 1
        table.save(record("stale", created=now - timedelta(minutes=20)))
        table.save(record("a", created=now))  # a save clears expired logins first
        assert table.take("stale") is None
        for name in ("b", "c", "d"):
            table.save(record(name, created=now + timedelta(seconds=ord(name))))
        assert table.count() == 3
        assert table.take("a") is None  # the oldest made way

        got = table.take("c")
        assert got is not None
        assert (got.nonce, got.code_verifier) == ("nonce-c", "verifier-c")
        assert got.expires_at == now + timedelta(seconds=ord("c"), minutes=10)
        assert got.expires_at.tzinfo is not None

        results: list[PendingLoginRecord | None] = []
        barrier = threading.Barrier(8)

        def take() -> None:
            barrier.wait()
            results.append(table.take("d"))

        threads = [threading.Thread(target=take) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(r is not None for r in results) == 1  # DELETE … RETURNING: one winner
    finally:
        platform.close()


# ----- pilothouse login --sso ------------------------------------------------------------------------

BROWSER_SCRIPT = """#!{python}
# A scripted browser for `pilothouse login --sso`: webbrowser runs it with the URL.
import os, sys
sys.path.insert(0, {repo!r})
from tests.integration.dex import browser_login
page = browser_login(sys.argv[1], email=os.environ["SSO_TEST_EMAIL"])
sys.exit(0 if page.status_code == 200 and "Login received" in page.text else 1)
"""


def test_cli_login_sso_opens_the_browser_and_saves_a_session(
    dex: DexServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("sso-cli")

    def with_platform() -> Platform:
        return Platform.open(load_settings(data_dir=home / "data", config_dir=home / "config"))

    platform = with_platform()
    try:
        platform.identity.create_team("dev-payments")
    finally:
        platform.close()
    browser = home / "browser"
    browser.write_text(BROWSER_SCRIPT.format(python=sys.executable, repo=str(REPO)))
    browser.chmod(0o700)
    env = {
        **{k: v for k, v in os.environ.items() if k != "PILOTHOUSE_TOKEN"},
        "PILOTHOUSE_DATA_DIR": str(home / "data"),
        "PILOTHOUSE_CONFIG_DIR": str(home / "config"),
        "PILOTHOUSE_CONFIG": str(home / "config" / "config.yaml"),
        "PILOTHOUSE_SSO_ISSUER_URL": dex.issuer,
        "PILOTHOUSE_SSO_CLIENT_ID": CLI_CLIENT_ID,
        "PILOTHOUSE_SSO_TEAM_MAPPING": json.dumps(TEAM_MAPPING),
        "BROWSER": str(browser),
        "SSO_TEST_EMAIL": ALICE.email,
        "NO_COLOR": "1",
        "COLUMNS": "250",
    }
    result = subprocess.run(
        [str(PILOTHOUSE), "login", "--sso"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{dex.issuer}/auth?" in result.stderr  # the URL is always printed
    assert f"signed in as {ALICE.email}" in result.stdout

    saved_path = home / "config" / "session.json"
    assert stat.S_IMODE(saved_path.stat().st_mode) == 0o600
    saved = json.loads(saved_path.read_text())
    assert saved["token"] not in result.stdout + result.stderr
    platform = with_platform()
    try:
        principal = platform.identity.authenticate(saved["token"])
        assert principal.user == ALICE.email
        assert principal.teams == frozenset({"dev-payments"})  # `platform` does not exist here
        assert platform.identity.get_user(ALICE.email).source == f"oidc:{dex.issuer}"
    finally:
        platform.close()

    again = subprocess.run(
        [str(PILOTHOUSE), "login", "--sso", "--user", "x"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 1
    assert again.stderr.startswith("error: --sso takes no user")
