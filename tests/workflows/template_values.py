"""A stand-in for any template value, shared by the tests that render every template with every variable."""

from __future__ import annotations

from collections.abc import Iterator


class Value(str):
    """A template value that is a string, a one-item list (``join``, ``for``) and an object (``window.x``)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter([str(self)])

    def __getattr__(self, name: str) -> Value:
        if name.startswith("_"):
            raise AttributeError(name)
        return self
