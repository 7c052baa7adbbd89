"""Each locale's texts reviewed against a checklist, on every branch of every template.

French: typographic apostrophes, a no-break space before ``: ; ? !`` and inside « », no English, plain
words. Every locale: no raw IANA time-zone id, no phrase said twice in one message, one way of addressing
the reader. Templates are rendered with every variable set to a plain word (one variable falsy or equal
to each constant it is compared with, for the branches), the way the markup corpus test renders them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import Environment, meta
from mailunblock.workflows import messages
from mailunblock.workflows.markup import wiki_literal
from template_values import Value

TEMPLATE_DIR = Path(messages.__file__).parent / "templates"
TEMPLATES = sorted(p.stem for p in (TEMPLATE_DIR / "en").glob("*.j2") if not p.stem.startswith("_"))
PUBLIC = ("ack", "eta", "not_listed", "resolved")  # addressed to the reporter, not to agents
WORD = "Valeur"
GLOBALS = frozenset(messages._environment().globals)




def _variables(locale: str, template: str) -> tuple[set[str], set[tuple[str, str]]]:
    env = Environment()  # noqa: S701 - parsing only
    names: set[str] = set()
    compared: set[tuple[str, str]] = set()
    todo = [f"{locale}/{template}.j2"]
    while todo:
        text = (TEMPLATE_DIR / todo.pop()).read_text(encoding="utf-8")
        parsed = env.parse(text)
        names |= meta.find_undeclared_variables(parsed)
        compared |= set(re.findall(r"(\w+) == \"([^\"]*)\"", text))
        todo += [t for t in meta.find_referenced_templates(parsed) if t]
    return names - GLOBALS, compared


def renders(locale: str, template: str) -> list[str]:
    """The template on every branch: all values set, one falsy, or one equal to a compared constant."""
    names, compared = _variables(locale, template)
    codes = {name: const for name, const in sorted(compared)}
    base: dict[str, object] = {name: Value(WORD) for name in names} | codes
    variants = [{}, *({n: Value("")} for n in sorted(names - set(codes))), *({n: c} for n, c in sorted(compared))]
    return [messages.render(locale, template, **(base | variant)) for variant in variants]


def all_renders(locale: str) -> Iterator[tuple[str, str]]:
    for template in TEMPLATES:
        for text in renders(locale, template):
            yield template, text


def prose(text: str) -> str:
    """The text without what people type or read as code: {{/commands}}, `commands`, addresses, times."""
    text = re.sub(r"\{\{.*?\}\}|`[^`]*`", " ", text)
    return re.sub(r"\d{1,2}:\d{2}", " ", text)


# ------------------------------------------------------------------------------------------------- French

ENGLISH_IN_FRENCH = ("Email & collaboration", "Review", "Restricted entities", "Restricted users", " the ",
                     " and ", " with ", "please", "Hello")
COINED_WORDS = ("refonctionner", "refonctionne", "redébloqu")


def test_french_uses_typographic_apostrophes() -> None:
    for template, text in all_renders("fr"):
        assert "'" not in prose(text), (template, text)


def test_french_puts_a_no_break_space_before_double_punctuation() -> None:
    for template, text in all_renders("fr"):
        body = prose(text)
        assert not re.search(r"[ \t\n][:;?!]", body), (template, text)
        # Every : ; ? ! after a word is spaced (no-break; narrow before ; ? !), except the (!) emoticon.
        for match in re.finditer(r"(.)([:;?!])", re.sub(r"\([!/x]\)", "", body)):
            assert match.group(1) in "\u00a0\u202f", (template, match.group(0), text)


def test_french_quotes_have_no_break_spaces_inside() -> None:
    for template, text in all_renders("fr"):
        assert text.count("«") == text.count("»"), (template, text)
        assert not re.search(r"«(?!\u00a0)|(?<!\u00a0)»", text), (template, text)


def test_french_notes_have_no_english_and_no_coined_words() -> None:
    for template, text in all_renders("fr"):
        for words in (*ENGLISH_IN_FRENCH, *COINED_WORDS):
            assert words not in text, (template, words, text)


def test_french_names_the_defender_menu_in_french() -> None:
    texts = [text for _, text in all_renders("fr") if "Defender" in text]
    assert texts
    for text in texts:
        assert "«\u00a0Courrier et collaboration > Révision > Entités restreintes\u00a0»" in text, text


# ------------------------------------------------------------------------------------------ every locale

RAW_ZONE_ID = re.compile(r"\b(?:Africa|America|Antarctica|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)/\w+")


@pytest.mark.parametrize("locale", messages.SUPPORTED_LOCALES)
@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "UTC", "Asia/Tokyo", "Etc/GMT+5"])
def test_time_zones_are_named_as_people_say_them(locale: str, zone: str) -> None:
    moment = datetime(2026, 3, 2, 13, 10, tzinfo=UTC)
    window = messages.window(moment, moment, moment, locale, zone)
    eta = wiki_literal(messages.render(locale, "eta", reporter_name="Alice", account_upn="alice@contoso.com",
                          own_account=True, sessions_revoked=True, window=window))
    assert f"({window['time_zone']})" in eta
    assert zone not in eta and not RAW_ZONE_ID.search(eta), eta


@pytest.mark.parametrize(("locale", "zone", "name"), [
    ("fr", "Europe/Paris", "heure de Paris"),
    ("fr", "Europe/Amsterdam", "heure d\u2019Amsterdam"),
    ("fr", "UTC", "temps universel coordonné"),
    ("en", "America/New_York", "Eastern Time"),
    ("en", "Europe/Paris", "Central European Time"),
    ("en", "UTC", "Coordinated Universal Time"),
])
def test_zone_names_come_from_cldr(locale: str, zone: str, name: str) -> None:
    assert messages.zone_name(locale, zone, datetime(2026, 7, 1, tzinfo=UTC)) == name


def _phrases(text: str, length: int) -> list[str]:
    words = re.findall(r"\w+", prose(text).lower())
    return [" ".join(words[i:i + length]) for i in range(len(words) - length + 1)]


@pytest.mark.parametrize("locale", messages.SUPPORTED_LOCALES)
@pytest.mark.parametrize("template", PUBLIC)
def test_a_message_to_the_reporter_never_says_the_same_phrase_twice(locale: str, template: str) -> None:
    for text in renders(locale, template):
        phrases = [p for p in _phrases(text, 4) if WORD.lower() not in p]
        repeated = {p for p in phrases if phrases.count(p) > 1}
        assert not repeated, (repeated, text)


def test_the_phrase_check_catches_the_old_eta_sentence() -> None:
    old = "When sending works again: sending should work again between 3 and 4. Sending should work again."
    assert {p for p in _phrases(old, 4) if _phrases(old, 4).count(p) > 1}


# The reporter's own account is "your account" / "votre compte": the same message never also calls the
# reporter "the user" or the account "its" (third person about the reader).
THIRD_PERSON = {"en": (r"\bits password\b", r"\bthe user\b", r"\bthe account's user\b", r"\bthey\b"),
                "fr": (r"\bson mot de passe\b", r"\bl\u2019utilisateur\b", r"\bil a été\b")}
SECOND_PERSON = {"en": r"\byour account\b", "fr": r"\bvotre compte\b"}


@pytest.mark.parametrize("locale", messages.SUPPORTED_LOCALES)
@pytest.mark.parametrize("template", PUBLIC)
def test_a_message_to_the_reporter_uses_one_grammatical_person(locale: str, template: str) -> None:
    for text in renders(locale, template):
        if re.search(SECOND_PERSON[locale], text, re.IGNORECASE):
            for pattern in THIRD_PERSON[locale]:
                assert not re.search(pattern, text, re.IGNORECASE), (pattern, text)
