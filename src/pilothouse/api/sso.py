"""REST routes of single sign-on through the OpenID Connect provider (``/api/v1/session/sso``).

Both routes are public: they are how a caller without a token gets one.

- ``GET …/start`` stores a pending login (``identity.oidc.OidcClient.begin_login``; the
  store keeps it, so any replica may take the callback) and answers the provider's
  authorisation URL as JSON, or as a ``303`` redirect with ``?redirect=true`` (a browser
  link). A ``redirect_uri`` other than the configured ``sso_redirect_uri`` must be a
  loopback URI (a CLI's receiver, RFC 8252); anything else is 400.
- ``GET …/callback`` is where the provider sends the browser back with ``code`` and
  ``state``: the pending login is taken (once: a replayed or forged state is 401), the
  code redeemed, the ID token verified, and ``identity.oidc.sign_in`` opens a session for
  the user with the mapped teams. The session token is in the JSON body only — never in
  a URL, a header or a log line — and the answer is ``Cache-Control: no-store``.

With no ``sso_issuer_url`` both answer 404 ``sso_not_configured``, before reading any
parameter. httpx (inside ``OidcClient``) talks to the provider; FastAPI runs these
synchronous routes in its thread pool.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from pilothouse.api.auth import Access, get_platform, guarded
from pilothouse.api.session import LoginOut
from pilothouse.api.users import SessionOut, UserOut
from pilothouse.identity import oidc, oidc_claims
from pilothouse.platform import Platform

router = APIRouter(prefix="/api/v1/session/sso", tags=["identity"])
PlatformDep = Annotated[Platform, Depends(get_platform)]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: Longer values are not from a real provider; refusing them keeps them out of the store and logs.
MAX_PARAM = 2048


class SsoStartOut(BaseModel):
    authorization_url: str = Field(description="Open this in the browser to log in at the identity provider.")
    expires_at: datetime = Field(description="The login must come back from the provider before this.")


def _client(platform: Platform) -> oidc.OidcClient:
    if platform.sso is None:
        raise oidc_claims.SsoNotConfigured(
            "single sign-on is not configured on this Pilothouse",
            hint="a platform admin sets sso_issuer_url, sso_client_id and sso_client_secret",
        )
    return platform.sso


@router.get(
    "/start",
    response_model=SsoStartOut,
    responses={status.HTTP_303_SEE_OTHER: {"description": "With `redirect=true`: to the provider."}},
    **guarded(Access.PUBLIC),
)
def start_sso(
    platform: PlatformDep,
    response: Response,
    redirect_uri: Annotated[
        str | None,
        Query(
            max_length=MAX_PARAM,
            description="Where the provider sends the browser back: the configured one by default, "
            "or a loopback URI (`http://127.0.0.1:<port>/…`) for a CLI's receiver.",
        ),
    ] = None,
    redirect: Annotated[bool, Query(description="Answer 303 to the provider instead of JSON.")] = False,
) -> SsoStartOut | Response:
    """Start a single sign-on login: the identity provider's authorisation URL."""
    start = _client(platform).begin_login(redirect_uri=redirect_uri)
    if redirect:
        return RedirectResponse(
            start.authorization_url, status_code=status.HTTP_303_SEE_OTHER, headers=NO_STORE
        )
    response.headers.update(NO_STORE)
    return SsoStartOut(authorization_url=start.authorization_url, expires_at=start.expires_at)


@router.get("/callback", response_model=LoginOut, **guarded(Access.PUBLIC))
def finish_sso(
    request: Request,
    platform: PlatformDep,
    response: Response,
    state: Annotated[str, Query(max_length=MAX_PARAM)] = "",
    code: Annotated[str, Query(max_length=MAX_PARAM)] = "",
    error: Annotated[str, Query(max_length=MAX_PARAM)] = "",
    error_description: Annotated[str, Query(max_length=MAX_PARAM)] = "",
) -> LoginOut:
    """The provider's redirect back: completes the login and answers a session (token shown once)."""
    client = _client(platform)
    query = {"state": state, "code": code, "error": error, "error_description": error_description}
    identity = client.complete_login(oidc_claims.parse_callback({k: v for k, v in query.items() if v}))
    address = request.client.host if request.client else ""
    issued = oidc.sign_in(platform.identity, identity, client=address)
    response.headers.update(NO_STORE)
    return LoginOut(
        token=issued.token,
        session=SessionOut.of(issued.session),
        user=UserOut.of(issued.user),
        recovery_codes=list(issued.recovery_codes),
    )
