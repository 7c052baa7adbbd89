"""Clocks the plugin hands to the workflow."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        """Current time (aware, UTC)."""
        return datetime.now(UTC)
