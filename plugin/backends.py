"""Ticketing backends, registered under the entry point group ``mailunblock.ticketing`` (Jira is built in).

A backend is a factory ``(config, clock, sleep, observer=None) -> TicketingBackend`` (``observer``: told about
every HTTP request, for the metrics; only passed when metrics are served); a package adds one with

    [options.entry_points]
    mailunblock.ticketing =
        servicenow = mailunblock_servicenow:build

and ``ticketing = "servicenow"`` in the configuration selects it (see the README, "Adding a ticketing backend").
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Protocol

from mailunblock.connectors.http import Clock as HttpClock
from mailunblock.connectors.http import HttpObserver
from mailunblock.plugin.config import ConfigError
from mailunblock.workflows.ports import TicketingBackend

if TYPE_CHECKING:
    from mailunblock.plugin.config import Config

GROUP = "mailunblock.ticketing"


class BackendFactory(Protocol):
    """Builds a ticketing backend from the configuration."""

    def __call__(self, config: Config, clock: HttpClock | None, sleep: Callable[[float], None], /,
                 *, observer: HttpObserver | None = None) -> TicketingBackend:
        """The backend."""
        ...


def available() -> list[str]:
    """Names of the installed backends."""
    return sorted({e.name for e in entry_points(group=GROUP)})


def load(name: str) -> BackendFactory:
    """The factory of the backend registered as ``name``; ConfigError naming the installed ones otherwise."""
    found = [e for e in entry_points(group=GROUP) if e.name == name]
    if not found:
        raise ConfigError(f"ticketing backend {name!r} is not installed (installed: {', '.join(available())})")
    factory: BackendFactory = found[0].load()
    return factory
