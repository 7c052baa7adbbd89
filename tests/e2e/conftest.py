"""End-to-end fixtures: private and per-module sandboxes with a mailunblock runtime (see ``e2e_world``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_world import EPHEMERAL, START, World
from mailunblock.sandbox.server import Sandbox


@pytest.fixture(scope="session")
def sandbox_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state dir for every sandbox of the run: keys and certificates are generated once."""
    return tmp_path_factory.mktemp("e2e-sandbox-state")


@pytest.fixture
def make_world(sandbox_state_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., World]]:
    """Start a private sandbox and runtime; ``make_world(start=..., jira_deployment=..., http={...})``."""
    started: list[Sandbox] = []

    def _make(*, start: datetime = START, jira_deployment: str = "cloud", **config: Any) -> World:
        sandbox = Sandbox("default", sandbox_state_dir, ports=EPHEMERAL, start_time=start, speed=0.0,
                          jira_deployment=jira_deployment).start()
        started.append(sandbox)
        return World(sandbox, tmp_path_factory.mktemp("world"), **config)

    yield _make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture(scope="module")
def shared_world(sandbox_state_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One sandbox for a whole module: its tests use distinct accounts and leave their tickets finished."""
    with Sandbox("default", sandbox_state_dir, ports=EPHEMERAL, start_time=START, speed=0.0) as sandbox:
        yield World(sandbox, tmp_path_factory.mktemp("world"))


@pytest.fixture
def world(shared_world: World) -> Iterator[World]:
    """The module's shared world, with faults cleared after each test."""
    yield shared_world
    shared_world.sandbox.faults.clear()
