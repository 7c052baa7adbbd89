"""The Microsoft 365 tenants mailunblock serves, each with its own directory and restricted list."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailunblock.workflows.ports import Directory, RestrictedSenders


@dataclass(frozen=True)
class TenantServices:
    """One tenant: the mail domains it owns and the ports that act in it."""

    name: str
    domains: tuple[str, ...]
    directory: Directory
    restricted: RestrictedSenders
    locale: str | None = None
    time_zone: str | None = None


def _ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only: Unicode folding would map look-alikes (KELVIN SIGN -> k)."""
    return text.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"))


class TenantRegistry:
    """Finds the tenant owning a mail domain (or by name, for a ticket already triaged)."""

    def __init__(self, tenants: Iterable[TenantServices]) -> None:
        self._by_name = {t.name: t for t in tenants}
        self._by_domain = {_ascii_lower(d.strip()): t for t in self._by_name.values() for d in t.domains}

    def for_domain(self, domain: str) -> TenantServices | None:
        """The tenant owning exactly ``domain`` (a canonical, lower-case ASCII domain; no suffix match)."""
        return self._by_domain.get(domain)

    def get(self, name: str) -> TenantServices:
        """The tenant named ``name`` (KeyError if it left the configuration)."""
        return self._by_name[name]

    def knows(self, name: str) -> bool:
        """True while a tenant of this name is configured."""
        return name in self._by_name

    def owns(self, address: str) -> bool:
        """True when the address's domain belongs to a tenant."""
        return self.for_domain(address.rpartition("@")[2]) is not None
