r"""Escaping of outside text for the one format mailunblock writes: Jira wiki markup (Cloud v2 and Data Center).

Every value that comes from outside (ticket text, Jira display names, directory names, inbox-rule names,
forwarding addresses, service messages) goes through ``wiki_text`` before it is written into a comment;
``messages`` makes the template environment do it for every ``{{ value }}``. Only ``WikiMarkup`` — text
mailunblock builds itself as markup — is written as it is.

What the escaping does, and why (Jira's BackslashEscapeRendererComponent on Data Center, the
wiki-to-ADF transformer on Cloud):

* ``plain_text`` first decides what the reader sees: Unicode format characters (bidi controls, zero-width
  characters, BOM, soft hyphen), other control characters and lone surrogates are removed; line breaks
  and tabs become one space, so a value cannot start a markup line (``h1.``, ``bq.``, ``#``, ``*``, ``-``,
  ``|``, ``----``); live link schemes are defanged the ``https[:]//`` way (``://`` becomes ``[:]//``,
  ``mailto:`` becomes ``mailto[:]``), because Jira links a bare URL even when its characters are
  backslash-escaped; the value is capped at ``MAX_VALUE_CHARS`` with an ellipsis.
* ``wiki_text`` then writes every character Jira may read as markup with the backslash escape both
  renderers honour (``- # * _ + ? ^ ~ | % { } [ ] ( ) ! @``): no mention ``[~accountid:…]``, link
  ``[text|url]``, macro ``{code}``/``{noformat}``/``{color}``/``{adf}``, monospace ``{{…}}``, image
  ``!…!``, table ``|``, effect ``*_+^~-``, citation ``??``, emoticon ``(x)``, bare e-mail link or issue-key
  link survives. A backslash cannot be escaped in Jira (``\\`` is a line break, a backslash before a
  special character escapes it), so it is written as the entity ``&#92;``; ``&`` before an entity-like
  sequence becomes ``&amp;``; the dot of a leading ``h1.``-``h6.`` or ``bq.`` becomes ``&#46;``. Emoji and
  non-ASCII letters are kept. Emoticons spelt with letters (``:D``, ``:P``) are left: they are not markup.

The product writes no ADF (comments are v2 wiki text on Cloud and Data Center), so there is no ADF escaper.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_VALUE_CHARS = 500
ELLIPSIS = "…"

# Jira's own escape list (jira-renderer BackslashEscapeRendererComponent; the Cloud transformer copies it).
WIKI_SPECIAL_CHARS = frozenset("-#*_+?^~|%{}[]()!@")

_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_LINE_BREAKS = re.compile(r"[\t\n\v\f\r \x1c-\x1f\x85\u2028\u2029]+")
_SCHEME_SEPARATOR = re.compile("://")
_BARE_SCHEME = re.compile(r"(?i)(mailto|news|nntp):(?=\S)")
_ENTITY_LIKE = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_LEADING_BLOCK = re.compile(r"(?i)^(h[1-6]|bq)\.")


class WikiMarkup(str):
    """Text already in Jira wiki markup, built by mailunblock itself: templates write it as it is."""

    __slots__ = ()


def plain_text(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """Outside text as the reader should see it: one line, no invisible characters, no live link, capped."""
    text = str(value)
    # Bound the work on huge input: nothing past this point can survive the cap.
    cut = len(text) > limit * 8
    text = text[: limit * 8]
    text = _LINE_BREAKS.sub(" ", text)
    text = "".join(c for c in text if unicodedata.category(c) not in _REMOVED_CATEGORIES)
    text = _LINE_BREAKS.sub(" ", text).strip(" ")
    text = _BARE_SCHEME.sub(r"\1[:]", _SCHEME_SEPARATOR.sub("[:]//", text))
    if cut or len(text) > limit:
        text = text[: limit - len(ELLIPSIS)].rstrip(" ") + ELLIPSIS
    return text


def wiki_text(value: object, limit: int = MAX_VALUE_CHARS) -> WikiMarkup:
    """Outside text for a Jira wiki-markup comment: shown literally, never a link, mention, macro or format."""
    text = _ENTITY_LIKE.sub("&amp;", plain_text(value, limit))
    escaped = "".join(
        "&#92;" if c == "\\" else f"\\{c}" if c in WIKI_SPECIAL_CHARS else c for c in text
    )
    return WikiMarkup(_LEADING_BLOCK.sub(r"\1&#46;", escaped))


def wiki_value(value: object) -> WikiMarkup:
    """A template value as it goes into a comment: ``WikiMarkup`` as it is, anything else through ``wiki_text``."""
    return value if isinstance(value, WikiMarkup) else wiki_text(value)


def wiki_join(values: Iterable[object], separator: str = "") -> WikiMarkup:
    """Values escaped one by one, then joined with the template's own separator (each value keeps its cap)."""
    return WikiMarkup(separator.join(wiki_value(v) for v in values))


_WIKI_ESCAPES = re.compile(r"\\([-#*_+?^~|%{}\[\]()!@])|&#92;|&amp;|&#46;")
_ENTITY_CHARS = {"&#92;": "\\", "&amp;": "&", "&#46;": "."}


def wiki_literal(wiki: str) -> str:
    """Undo ``wiki_text``: the characters Jira shows for its escapes (template markup is left as it is)."""
    return _WIKI_ESCAPES.sub(lambda m: m.group(1) or _ENTITY_CHARS[m.group(0)], wiki)
