"""Who runs a CLI command, and the authorisation check every identity command passes.

The CLI talks to the store directly (``cli.context.open_platform``), so it
must decide who the person at the terminal is. In order:

1. ``PILOTHOUSE_TOKEN``: an API token or a session token (scripts, CI);
2. the session saved by ``pilothouse login`` in ``<config dir>/session.json``
   (mode 0600) — an expired or revoked one is an error, never a silent
   fallback to 3;
3. the **local operator**: whoever owns the secret key file that decrypts
   this store (or root) acts as ``platform-admin``. They can read and change
   every row anyway, so refusing them would be theatre; this is also how the
   first admin user is created. Anyone else must sign in.

``authorized(permission, target)`` opens the platform, works out the
principal and calls ``Platform.identity.check`` — the same check the API's
``guarded`` makes. Other command groups adopt it by replacing
``open_platform()`` with ``authorized(Permission.X, target)``.

Single sign-on (another module) ends the same way as a password sign-in:
with an ``IssuedSession`` that ``save_session`` writes.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pilothouse import errors
from pilothouse.atomic_files import write_atomically
from pilothouse.cli.context import open_platform
from pilothouse.identity.accounts import Accounts, IssuedSession
from pilothouse.identity.policy import Permission, Principal, Scope
from pilothouse.platform import Platform
from pilothouse.settings import Settings
from pilothouse.store.identity import SESSION_PREFIX

TOKEN_ENV = "PILOTHOUSE_TOKEN"  # noqa: S105 - the name of an environment variable
SESSION_FILE = "session.json"


@dataclass(frozen=True)
class SavedSession:
    token: str
    user: str
    expires_at: str


def session_path(settings: Settings) -> Path:
    return settings.config_dir / SESSION_FILE


def save_session(settings: Settings, issued: IssuedSession) -> Path:
    """Write the session token for later commands: mode 0600, replaced atomically."""
    path = session_path(settings)
    body = {
        "token": issued.token,
        "user": issued.user.name,
        "expires_at": issued.session.expires_at.isoformat(),
    }
    write_atomically(path, json.dumps(body), mode=0o600)
    return path


def load_session(settings: Settings) -> SavedSession | None:
    path = session_path(settings)
    try:
        data = json.loads(path.read_text())
        return SavedSession(str(data["token"]), str(data["user"]), str(data.get("expires_at", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise errors.InvalidInput(
            f"the saved session {path} is unreadable", hint="run `pilothouse logout`, then `pilothouse login`"
        ) from None


def clear_session(settings: Settings) -> bool:
    try:
        session_path(settings).unlink()
    except FileNotFoundError:
        return False
    return True


def _owns_the_store(settings: Settings) -> bool:
    uid = os.geteuid()
    if uid == 0:
        return True
    try:
        return settings.effective_secret_key_file.stat().st_uid == uid
    except OSError:
        return False


def cli_principal(platform: Platform) -> Principal:
    """The principal of this CLI invocation (see the module doc for the order)."""
    explicit = os.environ.get(TOKEN_ENV)
    if explicit:
        try:
            return platform.identity.authenticate(explicit)
        except errors.Unauthenticated as exc:
            raise errors.Unauthenticated(
                f"{TOKEN_ENV}: {exc.message}", hint=f"unset {TOKEN_ENV} or set it to a valid token"
            ) from None
    saved = load_session(platform.settings)
    if saved is not None:
        try:
            return platform.identity.authenticate(saved.token)
        except errors.Unauthenticated as exc:
            raise errors.Unauthenticated(
                f"your saved session ({saved.user}) no longer works: {exc.message}",
                hint="sign in again with `pilothouse login`, or `pilothouse logout` to act as the local operator",
            ) from None
    if _owns_the_store(platform.settings):
        return Accounts.local_operator(getpass.getuser())
    raise errors.Unauthenticated(
        "nobody is signed in, and you do not own this Pilothouse's secret key",
        hint="sign in with `pilothouse login`",
    )


def current_session_id(platform: Platform) -> str | None:
    """The id of the session this CLI runs as, if it runs as one."""
    saved = load_session(platform.settings)
    bearer = os.environ.get(TOKEN_ENV) or (saved.token if saved else "")
    if not bearer.startswith(SESSION_PREFIX):
        return None
    return platform.identity.session_of(bearer).id


@contextmanager
def authorized(permission: Permission, target: Scope | None = None) -> Iterator[tuple[Platform, Principal]]:
    """Open the platform as the CLI's principal, checked for ``permission`` at ``target`` (default: platform)."""
    with open_platform() as platform:
        principal = cli_principal(platform)
        platform.identity.check(principal, permission, target or Scope.platform())
        yield platform, principal


@contextmanager
def signed_in() -> Iterator[tuple[Platform, Principal]]:
    """Open the platform as the CLI's principal, with no permission check (commands about oneself)."""
    with open_platform() as platform:
        yield platform, cli_principal(platform)


@contextmanager
def authorized_anywhere(permission: Permission) -> Iterator[tuple[Platform, Principal]]:
    """``authorized`` for commands whose target is in their arguments (checked again by the service)."""
    with open_platform() as platform:
        principal = cli_principal(platform)
        platform.identity.check_anywhere(principal, permission)
        yield platform, principal


@contextmanager
def authorized_for(
    permission: Permission, clusters: str | Sequence[str] | None = None
) -> Iterator[tuple[Platform, Principal]]:
    """``authorized`` for each named cluster, or at platform scope when none is named (a
    command about the whole fleet needs the permission on the whole fleet)."""
    names = [clusters] if isinstance(clusters, str) else list(clusters or ())
    with open_platform() as platform:
        principal = cli_principal(platform)
        for scope in [Scope.of_cluster(n) for n in names] or [Scope.platform()]:
            platform.identity.check(principal, permission, scope)
        yield platform, principal


@contextmanager
def authorized_operation(permission: Permission, operation_id: str) -> Iterator[tuple[Platform, Principal]]:
    """``authorized`` at the cluster of the operation ``operation_id`` (a unique id prefix) names;
    at platform scope when the prefix names none or several (the command then says which)."""
    with open_platform() as platform:
        principal = cli_principal(platform)
        matches = {r.cluster for r in platform.operations.store.list() if r.id.startswith(operation_id)}
        scope = Scope.of_cluster(matches.pop()) if len(matches) == 1 else Scope.platform()
        platform.identity.check(principal, permission, scope)
        yield platform, principal


def expiry_text(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "never"
