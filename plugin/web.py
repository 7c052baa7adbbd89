"""The optional one-time password page (``[web] enabled = true``).

The internal note carries a link; the link is not the password. Opening it shows a button (so that link
previews and scanners that fetch URLs cannot consume it); pressing the button reveals the password once.
A second visit says it was already viewed, when and from where. A plain WSGI app (two routes) served by
waitress, a production WSGI server: a production install needs no web framework.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from html import escape
from typing import Any

from mailunblock.plugin.vault import PasswordVault, VaultError
from waitress.server import create_server

log = logging.getLogger(__name__)

_LINK_TOKEN = re.compile(r"(/reveal/[^/\s]+/)[^\s?\"]+")


def redact_token(text: str) -> str:
    """``text`` with any one-time link token replaced (whoever reads a log could use it first)."""
    return _LINK_TOKEN.sub(r"\1<token>", text)


class _RedactingFilter(logging.Filter):
    """Keeps one-time link tokens out of the WSGI server's own log lines (e.g. an error naming the path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message without the token."""
        record.msg, record.args = redact_token(record.getMessage()), ()
        return True

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mailunblock</title>
<meta name="robots" content="noindex"><style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}
code{{font-size:1.6em;background:#eee;padding:.2em .4em}}</style></head><body>{body}</body></html>"""
_ROUTE = re.compile(r"/reveal/(?P<issue_key>[^/]+)/(?P<token>[^/]+)")
_STATUS = {200: "200 OK", 404: "404 Not Found", 405: "405 Method Not Allowed", 410: "410 Gone"}
_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class RevealApp:
    """The WSGI app serving ``/reveal/<ticket>/<token>``: two routes, so no web framework is needed."""

    def __init__(self, vault: PasswordVault) -> None:
        self._vault = vault

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request."""
        # PEP 3333: PATH_INFO is decoded already, as latin-1 characters standing for the UTF-8 bytes.
        path = str(environ.get("PATH_INFO", "")).encode("latin-1").decode("utf-8", "replace")
        route = _ROUTE.fullmatch(path)
        method = environ.get("REQUEST_METHOD", "GET")
        if route is None:
            status, body = 404, "<h1>Not found</h1>"
        elif method in ("GET", "HEAD"):
            status, body = self.show(route["issue_key"], route["token"])
        elif method == "POST":
            status, body = self.reveal(route["issue_key"], route["token"], environ.get("REMOTE_ADDR"))
        else:
            status, body = 405, "<h1>Method not allowed</h1>"
        payload = _PAGE.format(body=body).encode("utf-8")
        start_response(_STATUS[status], [*_HEADERS, ("Content-Length", str(len(payload)))])
        return [b""] if method == "HEAD" else [payload]

    def show(self, issue_key: str, token: str) -> tuple[int, str]:
        """The page behind the link: a button, so link previews and scanners consume nothing."""
        vault = self._vault
        if not vault.link_is_valid(issue_key, token):
            return 404, "<h1>Unknown link</h1><p>This link is not valid (or a newer password replaced it).</p>"
        entry = vault.entry(issue_key)
        if entry is None:
            raise VaultError(f"{issue_key}: a valid link without a stored password")
        if entry.revealed_at is not None:
            return 200, (f"<h1>Already viewed</h1><p>The password for {escape(issue_key)} was viewed on "
                         f"{entry.revealed_at:%Y-%m-%d %H:%M} UTC by {escape(entry.revealed_by or '?')}. "
                         "If that was not you, reset the password again.</p>")
        if entry.wiped_reason:
            return 200, (f"<h1>Expired</h1><p>The password for {escape(issue_key)} was wiped "
                         f"({escape(entry.wiped_reason)}). Reset it again from the Entra admin center.</p>")
        return 200, (f"<h1>New password for {escape(issue_key)}</h1><p>It can be shown <b>once</b>. Be ready to "
                     "give it to the user by phone or in person — never by email or in the ticket.</p>"
                     '<form method="post"><button type="submit">Show the password</button></form>')

    def reveal(self, issue_key: str, token: str, remote_addr: str | None) -> tuple[int, str]:
        """The button: show the password once."""
        vault = self._vault
        if not vault.link_is_valid(issue_key, token):
            return 404, "<h1>Unknown link</h1>"
        try:
            password = vault.reveal(issue_key, revealed_by=f"one-time link from {remote_addr}")
        except VaultError as exc:
            return 410, f"<h1>Not available</h1><p>{escape(str(exc))}</p>"
        return 200, (f"<h1>New password for {escape(issue_key)}</h1><p><code>{escape(password)}</code></p>"
                     "<p>It will not be shown again. The user must choose a new one at the next sign-in.</p>")


def create_reveal_app(vault: PasswordVault) -> RevealApp:
    """The WSGI app serving the one-time links of ``vault``."""
    return RevealApp(vault)


def _access_log(app: WsgiApp) -> WsgiApp:
    """WSGI wrapper logging one line per request, without the link token."""

    def logged(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            log.info("%s %s %s %s", environ.get("REMOTE_ADDR", "-"), environ.get("REQUEST_METHOD"),
                     redact_token(environ.get("PATH_INFO", "")), status.split(" ", 1)[0])
            return start_response(status, headers, *args)

        return app(environ, start)

    return logged


class RevealServer:
    """The running one-time link server: its port, and how to stop it."""

    def __init__(self, app: WsgiApp, host: str, port: int) -> None:
        logging.getLogger("waitress").addFilter(_RedactingFilter())
        # poll(), not select(): select() cannot watch a descriptor numbered 1024 or more, and a busy process
        # (pooled connections, SQLite files) gets there; its loop thread would die and requests would hang.
        self._server = create_server(_access_log(app), host=host, port=port, threads=4, ident="mailunblock",
                                     asyncore_use_poll=True)
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="mailunblock-web", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop accepting requests and end the server's threads.

        The listening socket is closed on the server's own loop thread (through its trigger): closing it
        from here while that thread sits in ``select`` makes the loop fail with EBADF.
        """
        self._server.task_dispatcher.shutdown()
        try:
            self._server.trigger.pull_trigger(self._close_on_loop)
        except OSError:  # the loop already closed its trigger (poll() saw it invalid): close from here
            self._close_on_loop()
        self._thread.join(timeout=5)

    def _close_on_loop(self) -> None:
        """On the loop thread: close kept-alive connections too, so the loop has nothing left and ends."""
        for channel in list(self._server.active_channels.values()):
            channel.close()
        self._server.close()


def serve_in_background(app: WsgiApp, listen: str) -> RevealServer:
    """Serve the app on ``host:port`` with waitress in a daemon thread; ``shutdown()`` the result to stop."""
    host, _, port = listen.rpartition(":")
    return RevealServer(app, host or "127.0.0.1", int(port))
