"""Hostile text through every comment template in every locale: shown literally, never markup.

Each template is rendered with every variable set to a hostile string (and, for branch coverage, with one
variable falsy or set to each value the template compares it with), next to a baseline rendered with a
plain sentinel instead. The checker below is written from Jira's wiki-markup rules, not from the product's
escaper: it counts what Jira would read as markup (unescaped special characters, bare links, line-start
blocks, forced line breaks, new lines, invisible characters) and requires the hostile render to count
exactly what the baseline counts, i.e. nothing came from the value. It also reads the render the way Jira
shows it (backslash escapes and entities resolved) and requires the baseline with the sanitised value in
place of the sentinel. A self-test shows the checker flags every hostile string written unescaped.

The format is the same on Jira Cloud (REST v2 wiki text) and Data Center; tests/e2e/test_e2e_markup.py
posts through both sandbox flavours.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment, meta
from mailunblock.workflows import messages
from mailunblock.workflows.markup import ELLIPSIS, MAX_VALUE_CHARS, WikiMarkup, plain_text, wiki_text
from template_values import Value

TEMPLATE_DIR = Path(messages.__file__).parent / "templates"
TEMPLATES = sorted(p.stem for p in (TEMPLATE_DIR / "en").glob("*.j2") if not p.stem.startswith("_"))
LOCALES = messages.SUPPORTED_LOCALES
SENTINEL = "Zq7sentinel7qZ"
SPECIALS = "-#*_+?^~|%{}[]()!@"

MARKUP = "markup"  # written raw it is markup (or invisible, or too long): the checker must flag it
PLAIN = "plain"  # harmless text: comes out exactly as it went in

CORPUS: list[tuple[str, str, str]] = [
    ("issue-report", "[~accountid:5b10a2844c20165700ede21g] [Reset here|https://evil.example/reset]", MARKUP),
    ("dc-mention", "[~admin] please approve", MARKUP),
    ("link", "[Click me|https://evil.example]", MARKUP),
    ("javascript-link", "[x|javascript:alert(1)]", MARKUP),
    ("bare-url", "see https://evil.example/reset?token=1 now", MARKUP),
    ("bare-url-upper", "HTTP://EVIL.EXAMPLE/x", MARKUP),
    ("mailto", "mailto:ceo@evil.example", MARKUP),
    ("other-schemes", "ftp://evil.example/x irc://evil.example file:///etc/passwd", MARKUP),
    ("zero-width-in-scheme", "https\u200b://evil.example", MARKUP),
    ("email", "alice@contoso.com", MARKUP),
    ("code-macro", "{code}rm -rf /{code}", MARKUP),
    ("noformat-macro", "{noformat}raw{noformat}", MARKUP),
    ("color-macro", "{color:red}URGENT: call +1 555 0100{color}", MARKUP),
    ("adf-macro", '{adf}{"type":"doc","content":[]}{adf}', MARKUP),
    ("panel-quote", "{panel:title=Pay}x{panel}{quote}y{quote}", MARKUP),
    ("monospace", "{{monospace}}", MARKUP),
    ("image", "!https://evil.example/pixel.png!", MARKUP),
    ("image-attachment", "!invoice.png|thumbnail!", MARKUP),
    ("table", "|| a || b ||\n| c | d |", MARKUP),
    ("heading", "h1. Take over", MARKUP),
    ("blockquote", "bq. quoted", MARKUP),
    ("new-lines", "x\nh2. injected\n# one\n* two\n- three\n----", MARKUP),
    ("effects", "*bold* _italic_ -strike- +ins+ ^sup^ ~sub~", MARKUP),
    ("citation", "??citation??", MARKUP),
    ("emoticons", "(x) (/) (!) (y) :) ;)", MARKUP),
    ("dashes", "a -- b --- c", MARKUP),
    ("forced-break", "one \\\\ two", MARKUP),
    ("backslash-before-special", "C:\\Users\\evil\\*x*", MARKUP),
    ("pre-escaped", "\\[~accountid:x\\]", MARKUP),
    ("entities", "&#91;~accountid:x&#93; &lt;b&gt; &amp; &#92;", MARKUP),
    ("html", "<script>alert(1)</script><a href='https://evil.example'>x</a>", MARKUP),
    ("issue-key", "see HELP-1", MARKUP),
    ("all-specials", "%{}[]()!@#*_+?^~|-", MARKUP),
    ("rtl-override", "\u202eexe.txt\u202c invoice", MARKUP),
    ("zero-width", "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060word\u00adsoft", MARKUP),
    ("bidi-isolates", "\u2066isolate\u2069 \u200fRLM\u200e \u061cALM", MARKUP),
    ("separators", "line1\r\nline2\u2028line3\u2029line4\x85line5\tend", MARKUP),
    ("controls", "\x00\x07\x1b[31mred\x1b[0m", MARKUP),
    ("lone-surrogate", "a\ud800b", MARKUP),
    ("whitespace", "  padded \t ", MARKUP),
    ("100kb-plain", "a" * 100_000, MARKUP),
    ("100kb-markup", "[~accountid:x] [y|https://evil.example] " * 2600, MARKUP),
    ("french", "Hélène Lefèvre Ñoño Œuvre Çà", PLAIN),
    ("emoji", "François 😀 👍🏽 🇫🇷 ✉️", PLAIN),
    ("www", "www.evil.example", PLAIN),
    ("quotes-and-angles", "O'Brien \"the boss\" <boss> & co; 5 > 3", PLAIN),
    ("combining", "e\u0301 a\u0300 Zalgo\u0336", PLAIN),
]




# ------------------------------------------------------------------------------------------- the checker


def constructs(text: str) -> Counter[str]:
    """What Jira reads as markup in a comment body (from Jira's wiki rules, independent of the escaper)."""
    found: Counter[str] = Counter()
    found["forced line break \\\\"] = text.count("\\\\")
    scan = re.sub(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);", "\ue001", text)  # an entity is one literal character
    scan = re.sub(r"(?<!\\)\\[" + re.escape(SPECIALS) + "]", "\ue000", scan)  # escaped: literal
    for char in SPECIALS:
        found[f"unescaped {char!r} (link, mention, macro, image, table, effect, list)"] = scan.count(char)
    found["bare link"] = len(re.findall(r"(?i)(?:https?|ftps?|irc|file|nntp|news)://|mailto:", scan))
    found["line-start heading or quote"] = len(re.findall(r"(?im)^\s*(?:h[1-6]|bq)\.", scan))
    found["line"] = len(re.findall(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]", text))
    found["invisible or control character"] = sum(
        unicodedata.category(c) in ("Cf", "Cc", "Cs") and c != "\n" for c in text)
    return found


def problems(rendered: str, baseline: str) -> list[str]:
    """Markup in ``rendered`` that the baseline (same template, plain sentinel values) does not have."""
    got, expected = constructs(rendered), constructs(baseline)
    return [f"{kind}: {got[kind]} instead of {expected[kind]}" for kind in got | expected
            if got[kind] != expected[kind]]


def shown(wiki: str) -> str:
    """The text Jira displays for wiki text: backslash escapes and HTML entities resolved, left to right."""
    return re.sub(
        r"\\([" + re.escape(SPECIALS) + r"])|&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);",
        lambda m: m.group(1) or html.unescape(m.group(0)),
        wiki,
    )


def escaped(text: str) -> str:
    """``text`` with every special character backslash-escaped (plain ASCII text only)."""
    return "".join(f"\\{c}" if c in SPECIALS else c for c in text)


def failures(rendered: str, baseline: str, value: str) -> list[str]:
    """Everything wrong with a render of ``value``: markup from it, or text that does not read as it."""
    found = problems(rendered, baseline)
    if shown(rendered) != baseline.replace(SENTINEL, plain_text(value)):
        found.append("does not read as the template with the sanitised value")
    return found


# ------------------------------------------------------------------------------------------- rendering


def source(name: str) -> str:
    return (TEMPLATE_DIR / name).read_text(encoding="utf-8")


@cache
def variables(template: str, locale: str) -> tuple[frozenset[str], tuple[tuple[str, str], ...]]:
    """The template's variables (with its includes) and the (variable, constant) pairs it compares."""
    env = Environment()  # noqa: S701 - parsing only, to list the variables
    names: set[str] = set()
    compared: set[tuple[str, str]] = set()
    todo = [f"{locale}/{template}.j2"]
    while todo:
        text = source(todo.pop())
        parsed = env.parse(text)
        names |= meta.find_undeclared_variables(parsed)
        compared |= set(re.findall(r"(\w+) == \"([^\"]*)\"", text))
        todo += [t for t in meta.find_referenced_templates(parsed) if t]
    return frozenset(names - GLOBALS), tuple(sorted(compared))


# Functions the templates call (``unknown`` fails on a code without words): not values.
GLOBALS = frozenset(messages._environment().globals)


def codes(template: str, locale: str) -> dict[str, str]:
    """Variables that carry a code (compared with constants), each with the first constant it is compared with.

    A code is a member of its enum, never outside text: a template meets no other value (test_wording
    checks that an unknown code fails loudly), so hostile text goes into every other variable.
    """
    _, compared = variables(template, locale)
    found: dict[str, str] = {}
    for name, const in compared:
        found.setdefault(name, const)
    return found


def variants(template: str, locale: str) -> list[dict[str, str]]:
    """Overrides that reach every branch: none, one variable falsy, one variable equal to a compared constant."""
    names, compared = variables(template, locale)
    falsy = sorted(names - set(codes(template, locale)))
    return [{}, *({name: ""} for name in falsy), *({name: const} for name, const in compared)]


def render(template: str, locale: str, value: str, overrides: dict[str, str]) -> str:
    names, _ = variables(template, locale)
    values: dict[str, Any] = {name: Value(value) for name in names}
    values |= {name: Value(v) for name, v in (codes(template, locale) | overrides).items()}
    return messages.render(locale, template, **values)


CASES = [(t, loc) for t in TEMPLATES for loc in LOCALES]


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 30 and len({name for name, _, _ in CORPUS}) == len(CORPUS)
    assert any(len(text) >= 100_000 for _, text, _ in CORPUS)
    assert len(TEMPLATES) >= 14 and set(LOCALES) == {"en", "fr"}


@pytest.mark.parametrize(("template", "locale"), CASES)
def test_hostile_text_is_shown_literally_and_never_markup(template: str, locale: str) -> None:
    for overrides in variants(template, locale):
        baseline = render(template, locale, SENTINEL, overrides)
        for name, text, _ in CORPUS:
            rendered = render(template, locale, text, overrides)
            assert not failures(rendered, baseline, text), (name, overrides, failures(rendered, baseline, text))


@pytest.mark.parametrize(("template", "locale"), CASES)
def test_every_template_variable_is_escaped(template: str, locale: str) -> None:
    # A variable added without escaping (marked WikiMarkup, a new filter, {% raw %}) leaves a live mention.
    names, _ = variables(template, locale)
    seen: set[str] = set()
    for overrides in variants(template, locale):
        values: dict[str, Any] = {n: Value(f"[~accountid:{n}]") for n in names}
        values |= {n: Value(v) for n, v in (codes(template, locale) | overrides).items()}
        rendered = messages.render(locale, template, **values)
        assert "[~accountid:" not in rendered, (overrides, rendered)
        seen |= {n for n in names if escaped(f"[~accountid:{n}]") in rendered}
    printed = {n for n in re.findall(r"{{\s*(\w+)", source(f"{locale}/{template}.j2"))} - GLOBALS
    assert printed <= seen, f"never rendered, so never checked: {printed - seen}"


# ------------------------------------------------------------------------------------------- the checker can fail


@pytest.mark.parametrize(("name", "text", "kind"), CORPUS, ids=[c[0] for c in CORPUS])
def test_the_checker_flags_the_raw_string(name: str, text: str, kind: str) -> None:
    # What a template without escaping would write: the baseline with the raw value in the sentinel's place.
    # "rejected" starts a line with a value (a heading only counts there), "ignored" and "plan" do not.
    flagged = []
    for template in ("ignored", "rejected", "plan"):
        baseline = render(template, "en", SENTINEL, {})
        flagged.append(bool(failures(baseline.replace(SENTINEL, text), baseline, text)))
    if kind == MARKUP:
        assert any(flagged), f"the checker misses {name} written raw"
    else:
        assert not any(flagged), name
        assert plain_text(text) == text


@pytest.mark.parametrize(("text", "kind"), [
    ("[~accountid:x]", "unescaped '['"),
    ("[a|b]", "unescaped '|'"),
    ("{code}x{code}", "unescaped '{'"),
    ("!a.png!", "unescaped '!'"),
    ("| a |", "unescaped '|'"),
    ("https://evil.example", "bare link"),
    ("x\nh1. y", "line-start heading or quote"),
    ("a \\\\ b", "forced line break"),
    ("\u202eabc", "invisible or control character"),
    ("a\nb", "line"),
])
def test_the_checker_names_what_it_found(text: str, kind: str) -> None:
    baseline = render("rejected", "en", SENTINEL, {})
    assert any(p.startswith(kind) for p in problems(baseline.replace(SENTINEL, text), baseline))


# ------------------------------------------------------------------------------------------- the sanitiser


@pytest.mark.parametrize(("name", "text", "kind"), CORPUS, ids=[c[0] for c in CORPUS])
def test_sanitised_text_is_one_visible_capped_line_without_live_links(name: str, text: str, kind: str) -> None:
    clean = plain_text(text)
    assert len(clean) <= MAX_VALUE_CHARS
    assert not any(unicodedata.category(c) in ("Cf", "Cc", "Cs") for c in clean), name
    assert "://" not in clean and "mailto:" not in clean.lower()
    assert clean == clean.strip()


def test_a_long_value_is_cut_with_an_ellipsis_and_a_short_one_is_not() -> None:
    assert plain_text("a" * 100_000) == "a" * (MAX_VALUE_CHARS - 1) + ELLIPSIS
    assert plain_text("a" * MAX_VALUE_CHARS) == "a" * MAX_VALUE_CHARS
    assert plain_text("\u200b" * 100_000 + "ok") == ELLIPSIS  # the visible part was past the work bound
    assert plain_text("ab", limit=2) == "ab" and plain_text("abc", limit=2) == "a" + ELLIPSIS


def test_links_are_defanged_readably() -> None:
    assert plain_text("https://evil.example/reset") == "https[:]//evil.example/reset"
    assert plain_text("MailTo:ceo@evil.example") == "MailTo[:]ceo@evil.example"
    assert plain_text("Missing data: see the log") == "Missing data: see the log"


def test_the_escaped_issue_report_reads_as_written() -> None:
    escaped = wiki_text("[~accountid:5b10a2844c20165700ede21g] [Reset here|https://evil.example/reset]")
    assert escaped == r"\[\~accountid:5b10a2844c20165700ede21g\] \[Reset here\|https\[:\]//evil.example/reset\]"
    assert wiki_text("h1. x") == "h1&#46; x" and wiki_text("a\\b") == "a&#92;b"
    assert wiki_text("&amp; & co") == r"&amp;amp; & co"


def test_only_product_markup_is_written_as_it_is() -> None:
    hint = WikiMarkup("open https://mailunblock.example/reveal/HELP-1/abc_d (works once)")
    body = messages.render("en", "summary", **summary_values(hint))
    assert "open https://mailunblock.example/reveal/HELP-1/abc_d (works once)" in body
    body = messages.render("en", "summary", **summary_values(str(hint)))
    assert "https[:]//" in shown(body)


def test_each_joined_value_keeps_its_own_cap() -> None:
    # Thirty addresses are longer than one value's cap together: every one is still shown, each escaped.
    addresses = [f"user.number{i:02d}@contoso.example" for i in range(30)]
    values = summary_values("")
    body = messages.render("en", "summary", **(values | {"list_checked": True, "addresses": addresses}))
    assert ", ".join(a.replace("@", "\\@") for a in addresses) in body
    assert ELLIPSIS not in body


def summary_values(hint: str) -> dict[str, Any]:
    return {
        "password_reset": True, "password_uncertain": False, "password_hint": hint, "password_expires": "",
        "account_upn": "a@b.example", "sessions_revoked": True, "inbox_rules_checked": False,
        "inbox_rules_error": "", "suspicious_rules": [], "list_checked": False, "listed_addresses": [],
        "addresses": [], "unblocked_addresses": [], "unblock_uncertain": [], "window": {},
    }
