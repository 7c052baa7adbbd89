r"""Mail addresses compared exactly: trimmed, ASCII letters lower-cased, anything ambiguous refused.

Unicode folding (``str.lower``, NFKC, confusable mapping) can turn a look-alike into somebody else's
address — ``mar\u212a@contoso.com`` (KELVIN SIGN) lower-cases to ``mark@contoso.com``. So an address is
never mapped: it is either exactly an ASCII address or it is refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_LOCAL = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,63}")
# Anything that looks like an address in free text, Unicode included, so look-alikes are seen and refused
# instead of being cut down to an ASCII part (or skipped) by a narrower pattern.
_IN_TEXT = re.compile(r"[^\s<>()\[\]{},;:\"|@]+@[^\s<>()\[\]{},;:\"|@]+")
_TRAILING = ".'!?*_~"


@dataclass(frozen=True)
class Address:
    """An address in canonical form: ASCII only, lower-cased."""

    value: str

    @property
    def domain(self) -> str:
        """The part after the ``@``."""
        return self.value.rpartition("@")[2]

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class BadAddress:
    """Text that is not exactly one ASCII address; ``raw`` is what was written (escape it before quoting)."""

    raw: str


def canonical(raw: str) -> Address | BadAddress:
    """The canonical address of ``raw``, or BadAddress when it is not exactly one plain ASCII address."""
    text = raw.strip()
    if (
        not text.isascii()
        or unicodedata.normalize("NFKC", text) != text
        or any(c.isspace() for c in text)
        or text.count("@") != 1
    ):
        return BadAddress(raw)
    local, _, domain = text.translate(_ASCII_LOWER).partition("@")
    if not (_LOCAL.fullmatch(local) and _DOMAIN.fullmatch(domain)):
        return BadAddress(raw)
    return Address(f"{local}@{domain}")


def in_text(text: str) -> Iterator[Address | BadAddress]:
    """Every address-like token of ``text``, in order of appearance (duplicates kept)."""
    for match in _IN_TEXT.finditer(text):
        token = match.group(0).rstrip(_TRAILING)
        if token.rpartition("@")[2]:
            yield canonical(token)
