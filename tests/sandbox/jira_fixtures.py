"""Fixtures shared by the Jira emulator tests (imported by the test modules)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from mailunblock.sandbox.core import CallLog, Faults, SandboxClock, SandboxContext
from mailunblock.sandbox.jira import JiraState, create_jira_app, demo_scenario
from werkzeug.test import TestResponse

START = datetime(2026, 11, 27, 11, 53, 21, tzinfo=UTC)
BOT_EMAIL = "mailunblock@msp-helpdesk.example"
BOT_TOKEN = "bot-api-token-123"


def basic(email: str, token: str) -> dict[str, str]:
    """HTTP basic header for Jira Cloud API tokens."""
    raw = base64.b64encode(f"{email}:{token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@dataclass
class JiraHarness:
    """The state, context and a client that authenticates as a given user."""

    state: JiraState
    ctx: SandboxContext
    client: FlaskClient
    headers: dict[str, str]

    def as_user(self, headers: dict[str, str]) -> JiraHarness:
        """The same emulator, another identity."""
        return JiraHarness(self.state, self.ctx, self.client, headers)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        """Authenticated GET."""
        return self.client.get(path, headers=self.headers, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        """Authenticated POST."""
        return self.client.post(path, headers=self.headers, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        """Authenticated PUT."""
        return self.client.put(path, headers=self.headers, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        """Authenticated DELETE."""
        return self.client.delete(path, headers=self.headers, **kwargs)


def make_harness(section: dict[str, Any], headers: dict[str, str] | None = None) -> JiraHarness:
    """Build an emulator from a scenario section with a frozen clock."""
    clock = SandboxClock(START, speed=0)
    ctx = SandboxContext(clock, CallLog(), Faults())
    state = JiraState.from_scenario(section, clock)
    state.set_bot_token(BOT_TOKEN)
    app = create_jira_app(state, ctx)
    return JiraHarness(state, ctx, app.test_client(), headers or basic(BOT_EMAIL, BOT_TOKEN))


@pytest.fixture(name="jira")
def jira_fixture() -> Iterator[JiraHarness]:
    """The demo Jira Cloud, authenticated as the bot."""
    yield make_harness(demo_scenario())
