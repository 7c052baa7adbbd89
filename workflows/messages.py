"""Rendering of ticket comments: Jinja2 templates per language, dates and times with Babel."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_time, get_timezone_gmt, get_timezone_location, get_timezone_name
from jinja2 import Environment, PackageLoader, StrictUndefined
from mailunblock.workflows.markup import wiki_join, wiki_value
from mailunblock.workflows.once import once

SUPPORTED_LOCALES = ("en", "fr")


class UnknownCode(ValueError):
    """A template met a code it has no words for: every code of the vocabulary must be explained."""


def _unknown(code: object) -> str:
    raise UnknownCode(f"no wording for the code {code!r}")


@once
def _environment() -> Environment:
    # Jira wiki text, not HTML: Jinja's HTML autoescape would mangle "&", "<" and quotes. Instead every
    # {{ value }} goes through the wiki escaper (finalize), and so does every item the join filter joins;
    # only WikiMarkup the product built itself is written as it is. Literal markup lives in template text.
    environment = Environment(
        loader=PackageLoader("mailunblock.workflows", "templates"),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701
        finalize=wiki_value,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,  # templates are package data: no need to stat them before every comment
    )
    environment.filters["join"] = wiki_join
    environment.globals["unknown"] = _unknown  # a template's last branch: never a generic fallback
    return environment


def render(locale: str, name: str, **values: Any) -> str:
    """Render ``templates/<locale>/<name>.j2``."""
    return _environment().get_template(f"{locale}/{name}.j2").render(**values).strip()


def pick_locale(*candidates: str | None, default: str = "en") -> str:
    """The first candidate we have templates for ("fr_FR", "fr-CA" and "fr" all give "fr")."""
    for candidate in candidates:
        if candidate:
            language = candidate.replace("-", "_").split("_")[0].lower()
            if language in SUPPORTED_LOCALES:
                return language
    return default


def pick_time_zone(*candidates: str | None, default: str = "UTC") -> str:
    """The first candidate that is a known IANA time zone."""
    for candidate in candidates:
        if candidate:
            try:
                ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return candidate
    return default


def clock_time(moment: datetime, locale: str, time_zone: str) -> str:
    """A time of day as people in ``locale`` write it, in ``time_zone`` (e.g. "15:10", "3:10 PM")."""
    return format_time(moment, "short", tzinfo=ZoneInfo(time_zone), locale=locale)


def day(moment: datetime, locale: str, time_zone: str) -> str:
    """A day as people in ``locale`` write it, in ``time_zone`` (e.g. "lundi 2 mars 2026")."""
    return format_date(moment.astimezone(ZoneInfo(time_zone)), "full", locale=locale)


_UTC_ALIASES = frozenset({"UTC", "UCT", "Zulu", "Universal", "GMT", "Greenwich"})
_FRENCH_VOWELS = frozenset("AEIOUYÂÉÈÊÎÔÛaeiouy")


def zone_name(locale: str, time_zone: str, moment: datetime) -> str:
    """A time zone as people in ``locale`` say it, from CLDR ("heure de Paris", "Eastern Time"), never its id."""
    zone = ZoneInfo(time_zone)
    short_name = time_zone.removeprefix("Etc/")
    if short_name in _UTC_ALIASES:
        return get_timezone_name(zone, "long", locale=locale, zone_variant="standard")
    if time_zone.startswith("Etc/"):  # a fixed offset: no name, no city
        return get_timezone_gmt(moment.astimezone(zone), "long", locale=locale)
    if locale == "fr":
        city = get_timezone_location(zone, locale=locale, return_city=True)
        return f"heure d\u2019{city}" if city[:1] in _FRENCH_VOWELS else f"heure de {city}"
    return get_timezone_name(zone, "long", locale=locale, zone_variant="generic")


def window(start: datetime, end: datetime, now: datetime, locale: str, time_zone: str) -> dict[str, str]:
    """Template values describing a time window; ``day`` is empty when it starts today."""
    zone = ZoneInfo(time_zone)
    same_day = start.astimezone(zone).date() == now.astimezone(zone).date()
    return {
        "start": clock_time(start, locale, time_zone),
        "end": clock_time(end, locale, time_zone),
        "day": "" if same_day else day(start, locale, time_zone),
        "time_zone": zone_name(locale, time_zone, start),
    }
