"""The CLI's side of a browser single sign-on: a loopback receiver for the provider's redirect.

``pilothouse login --sso`` (``cli.login``) starts a :class:`LoopbackReceiver` on
``127.0.0.1:<random port>`` (RFC 8252 §7.3), asks for a login with the receiver's
``redirect_uri`` (``identity.oidc.OidcClient.begin_login``, directly or through the API),
opens the authorisation URL in the browser, and waits for the one redirect that carries
``code`` and ``state`` back; the code is then redeemed by whoever holds the pending login.
The standard library's ``http.server`` does the serving, in a daemon thread.
"""

from __future__ import annotations

import html
import queue
import threading
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pilothouse.identity import oidc_claims

CALLBACK_PATH = "/callback"
DEFAULT_TIMEOUT_SECONDS = 300.0

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Pilothouse</title></head>
<body style="font-family: sans-serif; margin: 3em"><h1>{title}</h1><p>{text}</p></body></html>"""


class LoopbackReceiver:
    """Receives one SSO redirect on a loopback port; a context manager that stops the server.

    ::

        with LoopbackReceiver() as receiver:
            url = start_login(receiver.redirect_uri)
            webbrowser.open(url)
            params = receiver.wait(timeout=300)
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, path: str = CALLBACK_PATH) -> None:
        self._path = path
        self._results: queue.Queue[oidc_claims.CallbackParams | oidc_claims.SsoRefused] = queue.Queue(
            maxsize=1
        )
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sso-loopback",
            daemon=True,
        )
        self._started = False

    @property
    def redirect_uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self._path}"

    def start(self) -> LoopbackReceiver:
        if not self._started:
            self._thread.start()
            self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> LoopbackReceiver:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def wait(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> oidc_claims.CallbackParams:
        """The redirect's ``code`` and ``state`` (or the provider's ``error``)."""
        try:
            result = self._results.get(timeout=timeout)
        except queue.Empty:
            raise oidc_claims.SsoRefused(
                f"no single sign-on callback reached {self.redirect_uri} within {timeout:g} s",
                hint="finish the login in the browser, or run the command again",
            ) from None
        if isinstance(result, oidc_claims.SsoRefused):
            raise result
        return result

    def _deliver(self, query: dict[str, str]) -> tuple[int, str, str]:
        """Status, title and text of the page the browser shows for this request."""
        try:
            params = oidc_claims.parse_callback(query)
        except oidc_claims.SsoRefused as exc:
            result: oidc_claims.CallbackParams | oidc_claims.SsoRefused = exc
            page = (400, "Login failed", exc.message)
        else:
            result = params
            page = (
                (200, "Login received", "You can close this tab and return to the terminal.")
                if not params.error
                else (400, "Login refused", f"The identity provider said: {params.error}.")
            )
        try:
            self._results.put_nowait(result)
        except queue.Full:
            return 409, "Already received", "This login was already received; this request was ignored."
        return page

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != receiver._path:
                    self._answer(404, "Not found", "This address only receives a Pilothouse login.")
                    return
                self._answer(*receiver._deliver(dict(parse_qsl(parts.query))))

            def _answer(self, status: int, title: str, text: str) -> None:
                body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line carries the code: never print it

        return Handler


def receive_browser_login(
    start_login: Callable[[str], str],
    *,
    open_browser: Callable[[str], Any] = webbrowser.open,
    announce: Callable[[str], None] = print,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> oidc_claims.CallbackParams:
    """Run the browser half of a loopback login and return the callback's parameters.

    ``start_login(redirect_uri)`` returns the authorisation URL (from ``OidcClient.begin_login``
    or the API); the URL is announced too, for a browser on another screen.
    """
    with LoopbackReceiver() as receiver:
        url = start_login(receiver.redirect_uri)
        announce(f"Opening the identity provider's login page; if no browser opens, visit:\n{url}")
        open_browser(url)
        return receiver.wait(timeout)
