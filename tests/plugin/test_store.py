from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mailunblock.plugin.store import StateStore
from mailunblock.workflows.ports import AccountBusy
from mailunblock.workflows.state import Stage, TicketState
from sqlalchemy import event

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "sqlite":
        return StateStore.from_url(f"sqlite:///{tmp_path / 'sub' / 'state.db'}")
    url = request.getfixturevalue("postgres_url")
    store = StateStore.from_url(url)
    with store.engine.begin() as conn:
        for table in ("tickets", "stage_events", "vaulted_passwords", "claims", "account_holds"):
            conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    return store


def _state(key: str, account: str = "u-1", tenant: str = "contoso") -> TicketState:
    state = TicketState.first_seen(key, T0)
    state.tenant, state.account_id = tenant, account
    return state


def test_state_round_trips_with_aware_timestamps(store: StateStore) -> None:
    state = _state("HELP-1")
    state.enter(Stage.AWAITING_APPROVAL, T0 + timedelta(minutes=1))
    store.save(state)
    loaded = store.load("HELP-1")
    assert loaded is not None
    assert loaded.to_dict() == state.to_dict()
    assert loaded.history[-1].at.tzinfo is not None
    assert store.load("HELP-404") is None


def test_stage_events_are_recorded_once_each_for_sla(store: StateStore) -> None:
    state = _state("HELP-2")
    store.save(state)
    state.enter(Stage.AWAITING_APPROVAL, T0 + timedelta(minutes=2))
    store.save(state)
    store.save(state)  # saving again adds nothing
    events = store.stage_events("HELP-2")
    assert [(s, at) for _, s, at in events] == [
        ("new", T0), ("awaiting_approval", T0 + timedelta(minutes=2))
    ]


def test_open_states(store: StateStore) -> None:
    first, second, done = _state("HELP-3"), _state("HELP-4", account="u-2"), _state("HELP-5")
    done.enter(Stage.RESOLVED, T0 + timedelta(hours=5))
    for state in (first, second, done):
        store.save(state)
    assert [s.issue_key for s in store.open_states()] == ["HELP-3", "HELP-4"]
    assert len(store.all_states()) == 3
    assert sorted(store.summaries(["HELP-5", "HELP-404"])) == ["HELP-3", "HELP-4", "HELP-5"]  # and the open ones


def test_one_ticket_holds_an_account_the_others_are_its_duplicates(store: StateStore) -> None:
    assert store.hold_account("contoso", "u-1", "HELP-3") is None
    with pytest.raises(AccountBusy):  # HELP-3 has not saved its decision yet: HELP-9 waits a cycle
        store.hold_account("contoso", "u-1", "HELP-9")
    store.save(_state("HELP-3"))  # HELP-3 remediates u-1 now
    assert store.hold_account("contoso", "u-1", "HELP-9") == "HELP-3"
    assert store.hold_account("contoso", "u-1", "HELP-3") is None  # its own hold
    assert store.hold_account("fabrikam", "u-1", "HELP-9") is None  # another tenant's account


def test_an_account_hold_ends_with_its_ticket(store: StateStore) -> None:
    state = _state("HELP-3")
    assert store.hold_account("contoso", "u-1", "HELP-3") is None
    store.save(state)
    state.enter(Stage.RESOLVED, T0 + timedelta(hours=5))
    store.save(state)
    assert store.hold_account("contoso", "u-1", "HELP-9") is None  # a new compromise, a new remediation


def test_a_hold_on_an_account_the_ticket_no_longer_names_is_taken_over(store: StateStore) -> None:
    assert store.hold_account("contoso", "u-1", "HELP-3") is None
    store.save(_state("HELP-3", account="u-2"))  # the plan lapsed: HELP-3 is about u-2 now
    assert store.hold_account("contoso", "u-1", "HELP-9") is None


def test_two_replicas_never_hold_one_ticket_at_once(store: StateStore) -> None:
    other = StateStore.from_url(store.engine.url.render_as_string(hide_password=False))
    assert store.claim("ticket:HELP-1") and not other.claim("ticket:HELP-1")
    assert store.claim("ticket:HELP-1")  # renewing its own claim
    assert store.renew_claims() == 1
    store.release("ticket:HELP-1")
    assert other.claim("ticket:HELP-1")  # released: taken at once
    other.release_all()
    assert store.claim("ticket:HELP-1")


def test_a_ticket_is_claimed_and_read_afresh_in_one_transaction(store: StateStore) -> None:
    other = StateStore.from_url(store.engine.url.render_as_string(hide_password=False))
    other.save(_state("HELP-1", account="u-7"))
    commits = _commits(store)
    claimed, state = store.claim_ticket("HELP-1")
    assert claimed and state is not None and state.account_id == "u-7"
    assert commits == [1]
    assert other.claim_ticket("HELP-1") == (False, None)  # taken: nothing read
    assert store.claim_ticket("HELP-2") == (True, None)  # nothing stored yet


def test_a_claim_given_back_soon_goes_with_the_next_claim_and_never_takes_a_newer_one(store: StateStore) -> None:
    other = StateStore.from_url(store.engine.url.render_as_string(hide_password=False))
    assert store.claim_ticket("HELP-1")[0] and store.claim_ticket("HELP-2")[0]
    store.release_soon("ticket:HELP-1")
    assert not other.claim("ticket:HELP-1")  # not given back yet: still taken
    assert store.claim_ticket("HELP-3")[0]  # ... until this store's next claim
    assert other.claim("ticket:HELP-1")
    store.release_soon("ticket:HELP-2")
    assert store.claim_ticket("HELP-2")[0]  # taken again before the release went out
    assert store.renew_claims() == 2  # the heartbeat sends what is still to give back: HELP-2 is kept
    assert not other.claim("ticket:HELP-2")
    store.release_soon("ticket:HELP-3")
    store.renew_claims()  # with nothing else held, the heartbeat still gives claims back
    assert other.claim("ticket:HELP-3")


def test_a_claim_given_back_soon_outlives_a_write_that_failed(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = StateStore.from_url(store.engine.url.render_as_string(hide_password=False))
    assert store.claim_ticket("HELP-1")[0]
    store.release_soon("ticket:HELP-1")
    claim = store._claim

    def failing(conn: Any, name: str) -> bool:
        claim(conn, name)
        raise RuntimeError("the store went away")

    monkeypatch.setattr(store, "_claim", failing)
    with pytest.raises(RuntimeError):
        store.claim_ticket("HELP-2")  # its transaction, with the give-back, is rolled back
    monkeypatch.undo()
    assert not other.claim("ticket:HELP-1")
    store.give_back()  # the give-back was kept for the next write
    assert other.claim("ticket:HELP-1")


def _commits(store: StateStore) -> list[int]:
    counted = [0]

    def committed(_conn: Any) -> None:
        counted[0] += 1

    event.listen(store.engine, "commit", committed)
    return counted


def test_last_unblock_of_an_account_is_the_most_recent_other_ticket(store: StateStore) -> None:
    old, recent, current = _state("HELP-10"), _state("HELP-11"), _state("HELP-12")
    old.unblocked_at = T0 - timedelta(days=9)
    recent.unblocked_at = T0 - timedelta(days=1)
    current.unblocked_at = T0
    for state in (old, recent, current, _state("HELP-13", account="u-2")):
        store.save(state)
    assert store.last_unblock_of_account("contoso", "u-1", exclude_key="HELP-12") == ("HELP-11", T0 - timedelta(days=1))
    assert store.last_unblock_of_account("contoso", "u-2", exclude_key="HELP-12") is None


def test_views_follow_what_another_replica_saved(store: StateStore) -> None:
    other = StateStore.from_url(store.engine.url.render_as_string(hide_password=False))
    state = _state("HELP-3")
    store.save(state)
    assert store.summaries(["HELP-3"])["HELP-3"].stage is Stage.NEW
    state.enter(Stage.AWAITING_APPROVAL, T0 + timedelta(minutes=1))
    other.save(state)  # the summary is made again because the row changed, not served from the last read
    assert store.summaries(["HELP-3"])["HELP-3"].stage is Stage.AWAITING_APPROVAL
    assert store.summaries([])["HELP-3"].stage is Stage.AWAITING_APPROVAL  # open, so there unselected too


def test_only_the_summaries_of_tickets_in_play_are_kept(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    from_dict = TicketState.from_dict

    def counted(data: dict[str, Any]) -> TicketState:
        parsed.append(str(data["issue_key"]))
        return from_dict(data)

    waiting, ended = _state("HELP-1"), _state("HELP-2", account="u-2")
    ended.enter(Stage.RESOLVED, T0 + timedelta(hours=1))
    store.save(waiting)
    store.save(ended)
    monkeypatch.setattr(TicketState, "from_dict", staticmethod(counted))
    assert sorted(store.summaries(["HELP-2"])) == ["HELP-1", "HELP-2"]  # the selected one, and every open one
    assert sorted(parsed) == ["HELP-1", "HELP-2"]
    parsed.clear()
    assert sorted(store.summaries(["HELP-2"])) == ["HELP-1", "HELP-2"] and parsed == []  # unchanged: kept
    assert sorted(store.summaries([])) == ["HELP-1"]  # HELP-2 ended and left the selection ...
    assert parsed == []
    assert sorted(store.summaries(["HELP-2"])) == ["HELP-1", "HELP-2"]
    assert parsed == ["HELP-2"]  # ... so it was forgotten: memory follows the tickets in play, not the history


def _writes(store: StateStore) -> list[str]:
    """Every INSERT or UPDATE the store sends from now on."""
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            sent.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    return sent


def test_a_save_that_changes_nothing_writes_nothing(store: StateStore) -> None:
    state = _state("HELP-20")
    store.save(state)
    writes = _writes(store)
    store.save(state)
    assert writes == []
    state.posted["ack"] = "c-1"  # changed in place: the store's copy is its own
    store.save(state)
    assert len(writes) >= 1
    loaded = store.load("HELP-20")
    assert loaded is not None and loaded.posted == {"ack": "c-1"}
    del writes[:]
    store.save(loaded)  # as loaded: nothing to write
    assert writes == []


def test_audit_entries_are_the_same_whether_the_previous_state_is_remembered_or_read(
    store: StateStore,
) -> None:
    state = _state("HELP-21")
    store.save(state)
    state.posted["ack"] = "c-1"
    store.save(state)  # previous state from memory
    fresh = StateStore(store.engine, create=False)
    state.posted["plan"] = "c-2"
    state.enter(Stage.AWAITING_APPROVAL, T0 + timedelta(minutes=1))
    fresh.save(state)  # previous state read from the row
    entries = [(e["action"], e["target"]) for e in store.audit(ticket="HELP-21")]
    assert entries == [("enter-stage", "new"), ("post-comment", "ack"), ("post-comment", "plan"),
                       ("enter-stage", "awaiting_approval")]
    events = [(s, at) for _, s, at in store.stage_events("HELP-21")]
    assert events == [("new", T0), ("awaiting_approval", T0 + timedelta(minutes=1))]


def test_a_moved_ticket_is_found_by_its_issue_id_while_open(store: StateStore) -> None:
    open_one, done = _state("HELP-30"), _state("HELP-31")
    open_one.issue_id, done.issue_id = "10030", "10031"
    done.enter(Stage.RESOLVED, T0 + timedelta(hours=5))
    for state in (open_one, done):
        store.save(state)
    found = store.open_state_by_issue_id("10030")
    assert found is not None and found.issue_key == "HELP-30"
    assert store.open_state_by_issue_id("10031") is None  # finished: nothing to continue
    assert store.open_state_by_issue_id("10099") is None
    assert store.open_keys_by_issue_id(["10030", "10031", "10099"]) == {"10030": "HELP-30"}


def _statements(store: StateStore) -> list[str]:
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: seen.append(" ".join(statement.split())))
    return seen


def test_saves_under_a_fresh_lease_check_the_claim_in_the_rows_own_update(store: StateStore) -> None:
    from mailunblock.plugin.store import ticket_claim

    claimed, _ = store.claim_ticket("HELP-1")
    assert claimed
    state = _state("HELP-1")
    store.save(state)  # the first save creates the row: fenced (and renewed) first
    seen = _statements(store)
    for minute in (1, 2):
        state.enter(Stage.AWAITING_APPROVAL if minute == 1 else Stage.APPROVED, T0 + timedelta(minutes=minute))
        store.save(state)
    store.save(state)  # unchanged: the claim is read, nothing is written
    assert not [s for s in seen if s.startswith("UPDATE claims")]
    assert len([s for s in seen if s.startswith("UPDATE tickets") and "EXISTS" in s]) == 2
    assert [s for s in seen if s.startswith("SELECT claims.name")]
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT stage FROM tickets").scalar_one() == "approved"
    # With less than two thirds of its lease left, a save renews the claim.
    store._held[ticket_claim("HELP-1")] = datetime.now(UTC) + timedelta(seconds=5)
    state.enter(Stage.PASSWORD_RESET, T0 + timedelta(minutes=3))
    store.save(state)
    assert [s for s in seen if s.startswith("UPDATE claims")]
    assert store._held[ticket_claim("HELP-1")] > datetime.now(UTC) + timedelta(seconds=30)


@pytest.mark.parametrize("changed", [True, False])
def test_a_save_after_the_claim_was_taken_over_writes_nothing(store: StateStore, changed: bool) -> None:
    from mailunblock.workflows.ports import ClaimLost

    assert store.claim_ticket("HELP-1")[0]
    state = _state("HELP-1")
    store.save(state)
    with store.engine.begin() as conn:  # another replica took it over (its lease is still fresh here)
        conn.exec_driver_sql("UPDATE claims SET owner = 'other-replica'")
    if changed:
        state.enter(Stage.AWAITING_APPROVAL, T0 + timedelta(minutes=1))
    with pytest.raises(ClaimLost):
        store.save(state)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT stage FROM tickets").scalar_one() == "new"
        assert conn.exec_driver_sql("SELECT count(*) FROM stage_events").scalar_one() == 1


def test_on_postgresql_a_takeover_waits_for_the_save_that_checked_the_claim(postgres_url: str) -> None:
    from mailunblock.plugin.store import _FENCED_UPDATE_TICKET, ticket_claim
    from sqlalchemy.exc import OperationalError

    store = StateStore.from_url(postgres_url)
    with store.engine.begin() as conn:
        for table in ("tickets", "claims"):
            conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    assert store.claim_ticket("HELP-1")[0]
    store.save(_state("HELP-1"))
    values = {"key": "HELP-1", "claim": ticket_claim("HELP-1"), "claimant": store.owner, "stage": "approved"}
    with store.engine.begin() as saving:
        assert saving.execute(_FENCED_UPDATE_TICKET, values).rowcount == 1
        with store.engine.connect() as other, pytest.raises(OperationalError, match="lock timeout"):
            other.exec_driver_sql("SET lock_timeout = '200ms'")
            other.exec_driver_sql("UPDATE claims SET owner = 'other-replica'")  # blocked until the save commits
    store.engine.dispose()


def test_the_holder_asking_again_is_answered_by_a_read(store: StateStore) -> None:
    assert store.hold_account("contoso", "u-1", "HELP-1") is None
    store.save(_state("HELP-1"))  # HELP-1 remediates u-1
    seen = _statements(store)
    assert store.hold_account("contoso", "u-1", "HELP-1") is None  # the re-check just before the reset
    assert seen == [next(s for s in seen if s.startswith("SELECT account_holds.issue_key"))]
    assert store.hold_account("contoso", "u-1", "HELP-2") == "HELP-1"  # others still meet the hold...
    store.save(_state("HELP-1", account="u-9"))  # ... until the holder names another account
    assert store.hold_account("contoso", "u-1", "HELP-2") is None
    with pytest.raises(AccountBusy):  # no longer the holder: HELP-1 meets HELP-2's hold, not its own
        store.hold_account("contoso", "u-1", "HELP-1")
