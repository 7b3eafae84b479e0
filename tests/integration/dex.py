"""A real OpenID Connect provider for the single sign-on tests: Dex, started on loopback.

Dex (built from its Go module by ``scripts/build-dex.sh``, run by ``scripts/setup.sh --dev``)
runs with ``memory`` storage, static clients and static password users whose ``groups``
become the ID token's ``groups`` claim. :func:`browser_login` plays the browser: it opens
the authorisation URL, fills in Dex's login form, and follows the redirects to the
redirect URI, where the test's loopback receiver takes the code and state.

A missing binary fails the test with the command that builds it; it never skips.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-dex.sh"
#: The password of every static user; the bcrypt hash Dex's own example configuration uses for it.
PASSWORD = "password"
PASSWORD_HASH = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"
_FORM_ACTION = re.compile(r'<form[^>]*method="post"[^>]*action="([^"]+)"', re.IGNORECASE)


@dataclass(frozen=True)
class DexUser:
    email: str
    name: str
    user_id: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class DexClient:
    id: str
    secret: str | None  # None: a public client (PKCE only; any loopback redirect URI)
    redirect_uris: tuple[str, ...] = ()


@dataclass
class DexServer:
    issuer: str
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def log_tail(self, lines: int = 30) -> str:
        text = (self.directory / "dex.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def dex_binary(cache_dir: Path) -> Path:
    """The cached Dex binary; fails the test with the build command when it is missing."""
    env = {**os.environ, "PILOTHOUSE_CACHE_DIR": str(cache_dir)}
    path = Path(
        subprocess.run(
            [str(BUILD_SCRIPT), "--print-path"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"Dex is not built ({path} is missing): run `PILOTHOUSE_CACHE_DIR={cache_dir} {BUILD_SCRIPT}` "
            "or `scripts/setup.sh --dev`",
            pytrace=False,
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render_config(
    *,
    port: int,
    clients: Sequence[DexClient],
    users: Sequence[DexUser],
    id_token_ttl: str = "10m",  # noqa: S107 - a duration
) -> dict[str, object]:
    issuer = f"http://127.0.0.1:{port}/dex"
    return {
        "issuer": issuer,
        "storage": {"type": "memory"},
        "web": {"http": f"127.0.0.1:{port}"},
        "logger": {"level": "info", "format": "json"},
        "oauth2": {"skipApprovalScreen": True, "responseTypes": ["code"]},
        "expiry": {"idTokens": id_token_ttl, "authRequests": "10m"},
        "staticClients": [
            {
                "id": client.id,
                "name": client.id,
                **({"secret": client.secret} if client.secret is not None else {"public": True}),
                **({"redirectURIs": list(client.redirect_uris)} if client.redirect_uris else {}),
            }
            for client in clients
        ],
        "enablePasswordDB": True,
        "staticPasswords": [
            {
                "email": user.email,
                "hash": PASSWORD_HASH,
                "username": user.email.split("@")[0],
                "name": user.name,
                "userID": user.user_id,
                "groups": list(user.groups),
            }
            for user in users
        ],
    }


@contextlib.contextmanager
def run_dex(
    binary: Path, directory: Path, *, port: int, clients: Sequence[DexClient], users: Sequence[DexUser]
) -> Iterator[DexServer]:
    """Dex serving on ``127.0.0.1:port`` until the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    config = render_config(port=port, clients=clients, users=users)
    config_path = directory / "dex.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    config_path.chmod(0o600)  # it holds client secrets
    with (directory / "dex.log").open("ab") as log:
        process = subprocess.Popen(
            [str(binary), "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DexServer(issuer=str(config["issuer"]), directory=directory, process=process)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: DexServer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"{server.issuer}/.well-known/openid-configuration"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"Dex exited with {server.process.returncode}:\n{server.log_tail()}", pytrace=False)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"Dex did not serve {url} within {timeout:g} s:\n{server.log_tail()}", pytrace=False)


def browser_login(authorization_url: str, *, email: str, password: str = PASSWORD) -> httpx.Response:
    """Play the browser: open the URL, submit Dex's login form, follow redirects to the redirect URI."""
    with httpx.Client(follow_redirects=True, timeout=10.0) as browser:
        page = browser.get(authorization_url)
        assert page.status_code == 200, f"Dex answered {page.status_code}: {page.text[:500]}"
        match = _FORM_ACTION.search(page.text)
        assert match, f"no login form on {page.url}: {page.text[:500]}"
        action = urljoin(str(page.url), html.unescape(match.group(1)))
        return browser.post(action, data={"login": email, "password": password})
