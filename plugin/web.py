"""The optional one-time password page (``[web] enabled = true``).

The internal note carries a link; the link is not the password. Opening it shows a button (so that link
previews and scanners that fetch URLs cannot consume it); pressing the button reveals the password once.
A second visit says it was already viewed, when and from where.
"""

from __future__ import annotations

import re
import threading
from html import escape
from typing import Any

from flask import Flask, Response, request
from mailunblock.plugin.vault import PasswordVault, VaultError
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

_LINK_TOKEN = re.compile(r"(/reveal/[^/\s]+/)[^\s?\"]+")


class _RedactingHandler(WSGIRequestHandler):
    """Access log without the one-time link's token (whoever reads the log could use it first)."""

    def log(self, type: str, message: str, *args: Any) -> None:
        """Log the line with the token replaced."""
        super().log(type, "%s", _LINK_TOKEN.sub(r"\1<token>", message % args))

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


def serve_in_background(app: Flask, listen: str) -> BaseWSGIServer:
    """Serve the app on ``host:port`` in a daemon thread; ``shutdown()`` the returned server to stop."""
    host, _, port = listen.rpartition(":")
    server = make_server(host or "127.0.0.1", int(port), app, threaded=True, request_handler=_RedactingHandler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="mailunblock-web",
                     daemon=True).start()
    return server
