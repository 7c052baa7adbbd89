"""The optional one-time password page (``[web] enabled = true``).

The internal note carries a link; the link is not the password. Opening it shows a button (so that link
previews and scanners that fetch URLs cannot consume it); pressing the button reveals the password once.
A second visit says it was already viewed, when and from where. Served by waitress, a production WSGI
server (Werkzeug's development server is not meant for this).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from html import escape
from typing import Any

from flask import Flask, Response, request
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


def _page(body: str, status: int = 200) -> Response:
    response = Response(_PAGE.format(body=body), status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def create_reveal_app(vault: PasswordVault) -> Flask:
    """The Flask app serving ``/reveal/<ticket>/<token>``."""
    app = Flask("mailunblock.web")

    @app.get("/reveal/<issue_key>/<token>")
    def show(issue_key: str, token: str) -> Response:
        if not vault.link_is_valid(issue_key, token):
            return _page("<h1>Unknown link</h1><p>This link is not valid (or a newer password replaced it).</p>", 404)
        entry = vault.entry(issue_key)
        assert entry is not None  # a valid token implies a stored entry
        if entry.revealed_at is not None:
            return _page(f"<h1>Already viewed</h1><p>The password for {escape(issue_key)} was viewed on "
                         f"{entry.revealed_at:%Y-%m-%d %H:%M} UTC by {escape(entry.revealed_by or '?')}. "
                         "If that was not you, reset the password again.</p>")
        if entry.wiped_reason:
            return _page(f"<h1>Expired</h1><p>The password for {escape(issue_key)} was wiped "
                         f"({escape(entry.wiped_reason)}). Reset it again from the Entra admin center.</p>")
        return _page(f"<h1>New password for {escape(issue_key)}</h1><p>It can be shown <b>once</b>. Be ready to "
                     "give it to the user by phone or in person — never by email or in the ticket.</p>"
                     '<form method="post"><button type="submit">Show the password</button></form>')

    @app.post("/reveal/<issue_key>/<token>")
    def reveal(issue_key: str, token: str) -> Response:
        if not vault.link_is_valid(issue_key, token):
            return _page("<h1>Unknown link</h1>", 404)
        try:
            password = vault.reveal(issue_key, revealed_by=f"one-time link from {request.remote_addr}")
        except VaultError as exc:
            return _page(f"<h1>Not available</h1><p>{escape(str(exc))}</p>", 410)
        return _page(f"<h1>New password for {escape(issue_key)}</h1><p><code>{escape(password)}</code></p>"
                     "<p>It will not be shown again. The user must choose a new one at the next sign-in.</p>")

    return app


def _access_log(app: Flask) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """WSGI wrapper logging one line per request, without the link token."""

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            log.info("%s %s %s %s", environ.get("REMOTE_ADDR", "-"), environ.get("REQUEST_METHOD"),
                     redact_token(environ.get("PATH_INFO", "")), status.split(" ", 1)[0])
            return start_response(status, headers, *args)

        return app.wsgi_app(environ, start)

    return logged


class RevealServer:
    """The running one-time link server: its port, and how to stop it."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        logging.getLogger("waitress").addFilter(_RedactingFilter())
        self._server = create_server(_access_log(app), host=host, port=port, threads=4, ident="mailunblock")
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="mailunblock-web", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop accepting requests and end the server's threads.

        The listening socket is closed on the server's own loop thread (through its trigger): closing it
        from here while that thread sits in ``select`` makes the loop fail with EBADF.
        """
        self._server.task_dispatcher.shutdown()
        self._server.trigger.pull_trigger(self._server.close)
        self._thread.join(timeout=5)


def serve_in_background(app: Flask, listen: str) -> RevealServer:
    """Serve the app on ``host:port`` with waitress in a daemon thread; ``shutdown()`` the result to stop."""
    host, _, port = listen.rpartition(":")
    return RevealServer(app, host or "127.0.0.1", int(port))
