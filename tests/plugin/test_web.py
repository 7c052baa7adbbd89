from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mailunblock.plugin.db import create_store_engine, metadata
from mailunblock.plugin.vault import PasswordVault, load_or_create_key
from mailunblock.plugin.web import create_reveal_app
from werkzeug.test import Client

SECRET = "Web-Link-Pa55word!"


class Clock:
    def __init__(self) -> None:
        self.current = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current


@pytest.fixture
def setup(tmp_path: Path) -> tuple[PasswordVault, Clock, Client]:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metadata.create_all(engine)
    clock = Clock()
    vault = PasswordVault(engine, load_or_create_key(tmp_path / "k"), clock, "https://mu.example/")
    vault.store("HELP-1", SECRET, clock.now() + timedelta(hours=24))
    return vault, clock, Client(create_reveal_app(vault))


def _link(vault: PasswordVault) -> str:
    hint = vault.retrieval_hint("HELP-1")
    url = next(word for word in hint.split() if word.startswith("https://mu.example/reveal/"))
    return url.removeprefix("https://mu.example")


def test_the_link_is_not_the_password_and_viewing_it_does_not_consume_it(setup) -> None:
    vault, _, client = setup
    link = _link(vault)
    assert SECRET not in vault.retrieval_hint("HELP-1")
    page = client.get(link)
    assert page.status_code == 200 and SECRET not in page.text and "Show the password" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert client.get(link).status_code == 200  # a link preview fetching it twice consumes nothing
    assert vault.recall("HELP-1") == SECRET


def test_the_password_is_shown_once_then_the_page_says_when_it_was_viewed(setup) -> None:
    vault, _, client = setup
    link = _link(vault)
    shown = client.post(link)
    assert shown.status_code == 200 and SECRET in shown.text
    again = client.post(link)
    assert again.status_code == 410 and SECRET not in again.text and "already revealed" in again.text
    later = client.get(link)
    assert "Already viewed" in later.text and "2026-11-27 09:00 UTC" in later.text and SECRET not in later.text


def test_a_guessed_or_stale_token_is_refused(setup) -> None:
    vault, clock, client = setup
    link = _link(vault)
    assert client.get("/reveal/HELP-1/AAAAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert client.post("/reveal/HELP-2/" + link.rsplit("/", 1)[1]).status_code == 404
    clock.current += timedelta(minutes=1)
    vault.store("HELP-1", "Another-Pa55word!", clock.now() + timedelta(hours=24))  # a new reset replaces it
    assert client.get(link).status_code == 404
    assert _link(vault) != link


def test_an_expired_password_is_not_shown(setup) -> None:
    vault, clock, client = setup
    link = _link(vault)
    clock.current += timedelta(hours=25)
    response = client.post(link)
    assert response.status_code == 410 and "expired" in response.text and SECRET not in response.text
    assert "Expired" in client.get(link).text


def test_the_access_log_does_not_carry_the_link_token(setup, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import urllib.request

    from mailunblock.plugin.web import serve_in_background

    vault, _, _ = setup
    path = _link(vault)
    token = path.rsplit("/", 1)[1]
    server = serve_in_background(create_reveal_app(vault), "127.0.0.1:0")
    caplog.set_level(logging.INFO)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Server"] == "mailunblock"  # waitress (ident), not Werkzeug's dev server
            assert "Werkzeug" not in str(response.headers)
    finally:
        server.shutdown()
    assert "/reveal/HELP-1/" in caplog.text  # the request is logged...
    assert token not in caplog.text  # ...but not the one-time credential


def test_the_server_answers_when_the_process_holds_more_than_1024_descriptors(setup, tmp_path: Path) -> None:
    """A long-running process (pooled connections, SQLite files) can hold that many: select() cannot watch them."""
    import os
    import resource
    import urllib.request

    from mailunblock.plugin.web import serve_in_background

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"the descriptor limit ({hard}) is too low to go past 1024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    held = []
    try:
        while not held or held[-1] < 1030:
            held.append(os.open(os.devnull, os.O_RDONLY))
        vault, _, _ = setup
        server = serve_in_background(create_reveal_app(vault), "127.0.0.1:0")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{_link(vault)}", timeout=10) as response:
                assert response.status == 200
        finally:
            server.shutdown()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_shutdown_closes_the_server_even_when_its_loop_lost_its_trigger(setup) -> None:
    """Seen once in a long test run: the loop had closed its wake-up pipe; shutdown raised and left it listening."""
    import socket

    from mailunblock.plugin.web import serve_in_background

    vault, _, _ = setup
    server = serve_in_background(create_reveal_app(vault), "127.0.0.1:0")
    server._server.trigger.close()  # as the loop does when poll() reports the pipe invalid
    server.shutdown()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass
