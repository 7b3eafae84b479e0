"""``pilothouse login`` / ``pilothouse logout``: sign in with a password (+ TOTP) and keep the session.

The session token goes to ``<config dir>/session.json`` (mode 0600, see
``cli.access``); later commands act as that user until ``logout`` or expiry.
Passwords are read from a hidden prompt, or from the first line of stdin
with ``--password-stdin`` (scripts); never from an argument, which other
users could read in the process list.

``pilothouse login --sso`` signs in through the OpenID Connect provider instead:
a loopback receiver (``cli.sso``, on ``127.0.0.1:<random port>``) is the redirect
URI, the browser is opened with ``webbrowser`` when one is available and the URL
is always printed (to stderr), then ``identity.oidc`` redeems the code, verifies
the ID token and opens a session with the mapped teams (``identity.oidc.sign_in``);
it finishes exactly like a password login, through ``finish_sign_in``. The
provider must accept loopback redirect URIs for ``sso_client_id`` (RFC 8252; in
Dex, a public client).
"""

from __future__ import annotations

import contextlib
import sys
import webbrowser
from typing import Annotated

import typer

from pilothouse import errors
from pilothouse.cli import access, sso
from pilothouse.cli.context import open_platform
from pilothouse.cli.output import cli_errors, console
from pilothouse.identity import oidc, oidc_claims
from pilothouse.identity.accounts import IssuedSession, LoginAttempt
from pilothouse.platform import Platform

CLI_CLIENT = "cli"


def read_secret(prompt: str, *, from_stdin: bool, confirm: bool = False) -> str:
    """A secret from one stdin line (``from_stdin``) or a hidden prompt."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise errors.InvalidInput(f"{prompt}: nothing on stdin", hint="pipe the secret in, one per line")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise errors.InvalidInput(f"{prompt}: no terminal to ask on", hint="use --password-stdin")
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


def finish_sign_in(platform: Platform, issued: IssuedSession) -> None:
    """Save the session and say who is signed in (shared with single sign-on)."""
    path = access.save_session(platform.settings, issued)
    console.print(
        f"signed in as [bold]{issued.user.name}[/] until {access.expiry_text(issued.session.expires_at)}"
        f" (session saved in {path})",
        soft_wrap=True,
    )
    if issued.recovery_codes:
        console.print("MFA is now on. Recovery codes (each works once; shown only now):", style="bold yellow")
        for code in issued.recovery_codes:
            typer.echo(code)


def _open_browser(url: str) -> bool:
    """Open ``url`` in the user's browser if there is one; the URL is printed either way."""
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


def sso_sign_in(platform: Platform, *, timeout: float = sso.DEFAULT_TIMEOUT_SECONDS) -> IssuedSession:
    """Single sign-on through the browser and a loopback receiver; the session it opens."""
    client = platform.sso
    if client is None:
        raise oidc_claims.SsoNotConfigured(
            "single sign-on is not configured",
            hint="set sso_issuer_url and sso_client_id (PILOTHOUSE_SSO_*) in the Pilothouse config",
        )
    params = sso.receive_browser_login(
        lambda redirect_uri: client.begin_login(redirect_uri=redirect_uri).authorization_url,
        open_browser=_open_browser,
        announce=lambda text: typer.echo(text, err=True),
        timeout=timeout,
    )
    return oidc.sign_in(platform.identity, client.complete_login(params), client=CLI_CLIENT)


def login(
    user: Annotated[str | None, typer.Option("--user", "-u", help="User name (asked when omitted).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    code: Annotated[str | None, typer.Option("--code", help="The current TOTP code.")] = None,
    recovery_code: Annotated[
        str | None, typer.Option("--recovery-code", help="A single-use recovery code instead of a TOTP code.")
    ] = None,
    single_sign_on: Annotated[
        bool, typer.Option("--sso", help="Sign in at the single sign-on provider, in a browser.")
    ] = False,
) -> None:
    """Sign in with a password (and a TOTP code when the account needs one), or with --sso."""
    with cli_errors(), open_platform() as platform:
        if single_sign_on:
            if user or password_stdin or code or recovery_code:
                raise errors.InvalidInput(
                    "--sso takes no user, password or code", hint="the identity provider asks for them"
                )
            finish_sign_in(platform, sso_sign_in(platform))
            return
        name = user or typer.prompt("user")
        password = read_secret("password", from_stdin=password_stdin)
        attempt = LoginAttempt(name, password, code=code, recovery_code=recovery_code, client=CLI_CLIENT)
        try:
            issued = platform.identity.log_in(attempt)
        except errors.MfaRequired:
            if code or recovery_code or not sys.stdin.isatty():
                raise
            entered = typer.prompt("TOTP code (or a recovery code)").strip()
            as_code = entered.isdigit()
            issued = platform.identity.log_in(
                LoginAttempt(
                    name,
                    password,
                    code=entered if as_code else None,
                    recovery_code=None if as_code else entered,
                    client=CLI_CLIENT,
                )
            )
        finish_sign_in(platform, issued)


def logout() -> None:
    """Sign out: end the saved session and forget it."""
    with cli_errors(), open_platform() as platform:
        saved = access.load_session(platform.settings)
        if saved is None:
            console.print("not signed in")
            return
        # an expired or revoked session: forgetting it is all that is left
        with contextlib.suppress(errors.Unauthenticated):
            platform.identity.end_session(saved.token)
        access.clear_session(platform.settings)
        console.print(f"signed out {saved.user}")
