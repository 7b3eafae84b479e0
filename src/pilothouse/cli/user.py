"""``pilothouse user …``: create, list, disable, delete, set passwords, sessions, TOTP enrolment.

Commands about other users need ``users:read`` / ``users:admin`` (checked
by ``cli.access`` for whoever runs the CLI); ``passwd``, ``mfa enroll``,
``mfa confirm`` and ``mfa disable`` without a NAME act on the signed-in
user, proven again with their password or a current code.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pilothouse.cli.access import authorized, current_session_id, expiry_text, signed_in
from pilothouse.cli.login import read_secret
from pilothouse.cli.output import YesOption, cli_errors, confirm_or_exit, console
from pilothouse.identity.accounts import Enrolment
from pilothouse.identity.policy import Permission

app = typer.Typer(name="user", help="Manage users, their passwords, sessions and MFA.", no_args_is_help=True)
mfa_app = typer.Typer(name="mfa", help="TOTP multi-factor sign-in.", no_args_is_help=True)
app.add_typer(mfa_app)

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read password(s) from stdin, one per line.")
]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="User name (lower-case; letters, digits, . _ @ -).")],
    password_stdin: PasswordStdin = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="No password: the user signs in through SSO only.")
    ] = False,
    display_name: Annotated[str, typer.Option("--display-name")] = "",
    email: Annotated[str, typer.Option("--email")] = "",
) -> None:
    """Create a user (asks for the password unless --no-password)."""
    with cli_errors(), authorized(Permission.USERS_ADMIN) as (platform, _principal):
        password = None if no_password else read_secret("password", from_stdin=password_stdin, confirm=True)
        record = platform.identity.create_user(name, password, display_name=display_name, email=email)
        console.print(f"created user [bold]{record.name}[/]; give them a role with `pilothouse role bind`")


@app.command("list")
def list_() -> None:
    """List users (never their secrets)."""
    with cli_errors(), authorized(Permission.USERS_READ) as (platform, _principal):
        table = Table("NAME", "SOURCE", "TEAMS", "MFA", "PASSWORD", "DISABLED", "CREATED")
        for u in platform.identity.list_users():
            table.add_row(
                u.name,
                u.source,
                ",".join(u.teams),
                u.mfa,
                "yes" if u.has_password else "no",
                expiry_text(u.disabled_at) if u.disabled else "",
                u.created_at.isoformat(timespec="seconds"),
            )
        console.print(table)


@app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Disable a user: their sessions and tokens stop working at once."""
    with cli_errors(), authorized(Permission.USERS_ADMIN) as (platform, _principal):
        platform.identity.set_disabled(name, True)
        console.print(f"disabled user [bold]{name}[/] (signed out everywhere)")


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="User name.")],
    yes: YesOption = False,
) -> None:
    """Delete a user with their sessions, API tokens, team memberships and role bindings."""
    with cli_errors(), authorized(Permission.USERS_ADMIN) as (platform, principal):
        record = platform.identity.get_user(name)
        confirm_or_exit(f"delete user {record.name} and everything that is theirs?", yes=yes)
        removed = platform.identity.delete_user(principal, record.name)
        console.print(
            f"deleted user [bold]{removed.name}[/]: {removed.bindings} role binding(s), "
            f"{removed.memberships} team membership(s), {removed.sessions} session(s), "
            f"{removed.tokens} API token(s)"
        )


@app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Enable a disabled user again."""
    with cli_errors(), authorized(Permission.USERS_ADMIN) as (platform, _principal):
        platform.identity.set_disabled(name, False)
        console.print(f"enabled user [bold]{name}[/]")


@app.command("passwd")
def passwd(
    name: Annotated[str | None, typer.Argument(help="Another user (admin reset); omit for your own.")] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Change your password (asks for the current one), or reset another user's (users:admin)."""
    with cli_errors(), signed_in() as (platform, principal):
        own = name is None or (principal.user is not None and name.lower() == principal.user)
        if own:
            current = read_secret("current password", from_stdin=password_stdin)
            new = read_secret("new password", from_stdin=password_stdin, confirm=True)
            keep = current_session_id(platform)
            ended = platform.identity.change_own_password(principal, current, new, keep_session=keep)
            console.print(f"password changed; {ended} other session(s) signed out")
            return
        assert name is not None
        platform.identity.check(principal, Permission.USERS_ADMIN)
        ended = platform.identity.set_password(
            name, read_secret("new password", from_stdin=password_stdin, confirm=True)
        )
        console.print(f"password of [bold]{name}[/] set; {ended} session(s) signed out")


@app.command("sessions")
def sessions(
    name: Annotated[str, typer.Argument(help="User name.")],
    revoke_all: Annotated[bool, typer.Option("--revoke-all", help="Sign the user out everywhere.")] = False,
) -> None:
    """List a user's live sessions, or end them all."""
    permission = Permission.USERS_ADMIN if revoke_all else Permission.USERS_READ
    with cli_errors(), authorized(permission) as (platform, _principal):
        if revoke_all:
            console.print(f"signed out {platform.identity.revoke_sessions(name)} session(s) of {name}")
            return
        table = Table("ID", "PREFIX", "METHOD", "CLIENT", "CREATED", "EXPIRES")
        for s in platform.identity.sessions_of(name):
            table.add_row(
                s.id,
                s.prefix + "…",
                s.method,
                s.client,
                s.created_at.isoformat(timespec="seconds"),
                expiry_text(s.expires_at),
            )
        console.print(table)


def _show_enrolment(enrolment: Enrolment, next_step: str) -> None:
    console.print(f"TOTP enrolment for [bold]{enrolment.user}[/] (shown once; scan it, then keep it secret):")
    typer.echo(enrolment.qr_text)
    typer.echo(enrolment.uri)
    console.print(next_step, soft_wrap=True)


@mfa_app.command("enroll")
def mfa_enroll(
    name: Annotated[str | None, typer.Argument(help="Another user (users:admin); omit for yourself.")] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Start TOTP enrolment: prints an otpauth URI and its QR code."""
    with cli_errors(), signed_in() as (platform, principal):
        own = name is None or (principal.user is not None and name.lower() == principal.user)
        if own:
            user = platform.identity.verify_own_password(
                principal, read_secret("password", from_stdin=password_stdin)
            )
            _show_enrolment(
                platform.identity.enroll_mfa(user), "then confirm it: `pilothouse user mfa confirm CODE`"
            )
            return
        assert name is not None
        platform.identity.check(principal, Permission.USERS_ADMIN)
        _show_enrolment(
            platform.identity.enroll_mfa(name),
            f"give it to {name} in person; their first `pilothouse login --code` confirms it",
        )


@mfa_app.command("confirm")
def mfa_confirm(
    code: Annotated[str, typer.Argument(help="The current code from the authenticator app.")],
) -> None:
    """Turn on your pending TOTP enrolment; prints single-use recovery codes once."""
    with cli_errors(), signed_in() as (platform, principal):
        codes = platform.identity.confirm_mfa(platform.identity.user_of(principal), code)
        console.print("MFA is on. Recovery codes (each works once; shown only now):", style="bold yellow")
        for recovery in codes:
            typer.echo(recovery)


@mfa_app.command("disable")
def mfa_disable(
    name: Annotated[str | None, typer.Argument(help="Another user (users:admin); omit for yourself.")] = None,
    code: Annotated[str | None, typer.Option("--code", help="Your current TOTP code (for yourself).")] = None,
) -> None:
    """Remove a second factor: yours (with a current code) or another user's (a lost device)."""
    with cli_errors(), signed_in() as (platform, principal):
        own = name is None or (principal.user is not None and name.lower() == principal.user)
        if own:
            platform.identity.disable_own_mfa(principal, code or typer.prompt("current TOTP code"))
            console.print("MFA is off")
            return
        assert name is not None
        platform.identity.check(principal, Permission.USERS_ADMIN)
        platform.identity.disable_mfa(name)
        console.print(f"MFA of [bold]{name}[/] is off (their recovery codes are void)")
