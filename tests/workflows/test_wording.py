"""Every code the workflow stores has its own words in every locale: no template falls back on the code."""

from __future__ import annotations

from enum import StrEnum

import pytest
from jinja2 import ChainableUndefined
from mailunblock.workflows import messages
from mailunblock.workflows.messages import SUPPORTED_LOCALES, UnknownCode
from mailunblock.workflows.state import TERMINAL_STAGES
from mailunblock.workflows.vocabulary import (
    Activity,
    CancellationReason,
    EscalationReason,
    FailureKind,
    IgnoredReason,
    LapseReason,
    RefusalReason,
)

# template, the value that carries the code, the codes it must explain, other values it needs
CASES: list[tuple[str, str, list[str], dict[str, object]]] = [
    ("refused", "reason", list(RefusalReason), {}),
    ("escalated", "reason", list(EscalationReason), {}),
    ("cancelled", "reason", list(CancellationReason), {}),
    ("ignored", "reason", list(IgnoredReason), {}),
    ("plan", "lapsed_because", list(LapseReason), {}),
    ("failure", "action", list(Activity), {"kind": FailureKind.PERMANENT}),
    ("failure", "kind", [k for k in FailureKind if k is not FailureKind.WARNING], {"action": Activity.TRIAGE}),
    ("failure", "kind", [FailureKind.WARNING], {"action": Activity.UNBLOCK}),
    ("tagged_again", "outcome", sorted(TERMINAL_STAGES), {}),
]


# Codes that deliberately share their words (both are retried automatically, nothing to do).
SAME_WORDS = {FailureKind.TRANSIENT: FailureKind.THROTTLED}


def _render(locale: str, template: str, **values: object) -> str:
    # Values a case does not set render empty: only the code under test decides the branch.
    environment = messages._environment().overlay(undefined=ChainableUndefined)
    return environment.get_template(f"{locale}/{template}.j2").render(**values).strip()


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
@pytest.mark.parametrize(("template", "name", "codes", "extra"), CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_every_code_has_its_own_words(locale: str, template: str, name: str, codes: list[StrEnum],
                                      extra: dict[str, object]) -> None:
    texts = {code: _render(locale, template, **extra, **{name: code}) for code in codes}
    for code, text in texts.items():
        assert text, code
    for code, twin in SAME_WORDS.items():
        if code in texts and twin in texts:
            assert texts.pop(code) == texts[twin]
    # Each code has a branch of its own (two codes sharing one text would be a hidden fallback).
    assert len(set(texts.values())) == len(texts), texts


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
@pytest.mark.parametrize(("template", "name"), sorted({(t, n) for t, n, _, _ in CASES}))
def test_an_unknown_code_fails_loudly_instead_of_being_shown(locale: str, template: str, name: str) -> None:
    values: dict[str, object] = {"kind": FailureKind.PERMANENT, "action": Activity.TRIAGE, name: "no_such_code"}
    with pytest.raises(UnknownCode):
        _render(locale, template, **values)
