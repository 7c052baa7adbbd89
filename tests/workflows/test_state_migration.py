"""State saved by earlier versions loads; the saved form round-trips without a hand-kept field list."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mailunblock.workflows.state import SCHEMA_VERSION, BrokenInvariant, Stage, TicketState, migrate
from mailunblock.workflows.vocabulary import (
    AddLabel,
    IgnoredReason,
    Link,
    Note,
    NoteName,
    RemoveLabel,
    SlaProperty,
    Transition,
)

# TicketState.to_dict() output of the version before closing actions were objects (made on main).
SAMPLES = json.loads((Path(__file__).parent / "data" / "states_v1.json").read_text())
_DECODED = {"note": lambda a: Note(NoteName(a)), "link": Link, "add-label": AddLabel,
            "remove-label": RemoveLabel, "transition": Transition}


def _expected_action(stored: str) -> object:
    kind, argument = stored.split(":", 1)
    return _DECODED[kind](argument)


def test_the_samples_cover_every_kind_of_closing_action() -> None:
    kinds = {a.split(":", 1)[0] for s in SAMPLES for a in (*s["closing"], *s["closing_started"])}
    assert kinds == set(_DECODED)
    assert {s["stage"] for s in SAMPLES} == set(Stage)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: f"{s['issue_key']}-{s['stage']}")
def test_a_version_1_state_loads_with_every_value_kept(sample: dict[str, object]) -> None:
    state = TicketState.from_dict(sample)
    assert state.closing == tuple(_expected_action(a) for a in sample["closing"])  # type: ignore[attr-defined]
    assert state.closing_started == tuple(
        _expected_action(a) for a in sample["closing_started"]  # type: ignore[attr-defined]
    )
    again = state.to_dict()
    assert again["version"] == SCHEMA_VERSION
    for name, value in sample.items():
        if name in ("closing", "closing_started"):
            continue
        if isinstance(value, str) and name not in ("history",) and _is_instant(value):
            assert datetime.fromisoformat(again[name]) == datetime.fromisoformat(value), name
        elif name == "history":
            assert [(s, datetime.fromisoformat(t)) for s, t in again[name]] == [
                (s, datetime.fromisoformat(t)) for s, t in value  # type: ignore[attr-defined]
            ]
        else:
            assert again[name] == value, name
    assert TicketState.from_dict(json.loads(json.dumps(again))) == state


def _is_instant(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def test_datetimes_stay_aware_and_tuples_stay_tuples() -> None:
    state = TicketState.first_seen("HELP-1", datetime(2026, 3, 2, 13, 10, tzinfo=UTC))
    state.retry_at = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    state.closing = (Note(NoteName.ESCALATED), Transition("Escalate"))
    loaded = TicketState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert loaded.retry_at == state.retry_at and loaded.retry_at.utcoffset() is not None  # type: ignore[union-attr]
    assert loaded.closing == state.closing
    assert loaded.history == state.history


def test_the_stored_document_is_the_saved_form_and_a_copy_shares_nothing_mutable() -> None:
    state = TicketState.first_seen("HELP-1", datetime(2026, 3, 2, 13, 10, tzinfo=UTC))
    state.posted, state.closing = {"ack": "10001"}, (Note(NoteName.ESCALATED),)
    assert json.loads(state.to_json()) == state.to_dict()
    twin = state.copy()
    assert twin == state
    twin.posted["plan"] = "10002"
    twin.history.append(twin.history[0])
    twin.ignored["10003"] = next(iter(IgnoredReason))
    assert state.posted == {"ack": "10001"} and len(state.history) == 1 and not state.ignored


def test_an_unknown_legacy_action_or_a_newer_schema_is_refused_not_guessed() -> None:
    sample = dict(SAMPLES[0])
    with pytest.raises(BrokenInvariant):
        migrate({**sample, "closing": ["explode:now"]})
    with pytest.raises(BrokenInvariant):
        migrate({**sample, "version": SCHEMA_VERSION + 1})


def test_a_version_1_sla_property_action_loads() -> None:
    sample = dict(SAMPLES[0])
    sample.pop("version", None)
    sample["closing"] = ["remove-label:mail-blocked", "sla-property"]
    assert TicketState.from_dict(sample).closing == (RemoveLabel("mail-blocked"), SlaProperty())
