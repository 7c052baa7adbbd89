"""The state store: every ticket's remediation state and its stage timestamps.

SQLite by default, PostgreSQL for several replicas — both through SQLAlchemy, so nothing above this
module knows which engine runs. State is written before every side effect (the workflow calls ``save``),
which is what makes a crash at any point recoverable.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mailunblock.plugin import migrations
from mailunblock.plugin.audit import audit_entries
from mailunblock.plugin.db import (
    account_holds,
    audit_log,
    claims,
    create_store_engine,
    stage_events,
    tickets,
    vaulted_passwords,
    write,
)
from mailunblock.workflows.ports import AccountBusy, ClaimLost
from mailunblock.workflows.state import StageEvent, StateSummary, TicketState
from sqlalchemy import BindParameter, Engine, bindparam, delete, exists, insert, inspect, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url

DEFAULT_LEASE_SECONDS = 60.0
UNDECIDED_HOLD = timedelta(minutes=10)  # a holder that never saved its decision (it died): taken over after this


def store_error(exc: BaseException) -> str:
    """The first line of what the database (or its driver) said, for a one-line message."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def ticket_claim(issue_key: str) -> str:
    """The name of a ticket's claim."""
    return f"ticket:{issue_key}"


class StoreNotFoundError(Exception):
    """There is no state store where the configuration points (the message says where and what to check)."""


# Built once, run with new values only: building a statement costs more than running it (SQLAlchemy then
# finds the compiled form in its cache). SET names the columns of the values given.
_UPDATE_TICKET = update(tickets).where(tickets.c.issue_key == bindparam("key"))
_INSERT_AUDIT = insert(audit_log)
_INSERT_STAGE_EVENTS = insert(stage_events)
# Statements built once: SQLAlchemy then only looks their compiled form up. Building one per call (``insert``
# with ``.values(...)``, a ``select`` with the key inline) cost about 6 times the statement's execution.
_INSERT_TICKET = insert(tickets)
_RECORDED_EVENTS = select(stage_events.c.stage, stage_events.c.at).where(stage_events.c.issue_key == bindparam("key"))
_OPEN_STAMPS = select(tickets.c.issue_key, tickets.c.updated_at).where(tickets.c.terminal == 0)
_KEYS: BindParameter[list[str]] = bindparam("keys", expanding=True)
_STAMPS_OF = select(tickets.c.issue_key, tickets.c.updated_at).where(tickets.c.issue_key.in_(_KEYS))
_STATES_OF = select(tickets.c.issue_key, tickets.c.updated_at, tickets.c.state).where(tickets.c.issue_key.in_(_KEYS))
_OPEN_KEYS_BY_ISSUE_ID = (select(tickets.c.issue_id, tickets.c.issue_key)
                          .where(tickets.c.issue_id.in_(bindparam("ids", expanding=True)), tickets.c.terminal == 0)
                          .order_by(tickets.c.first_seen))
_RENEW = (update(claims).where(claims.c.name.in_(bindparam("names", expanding=True)),
                               claims.c.owner == bindparam("claimant"))
          .values(expires_at=bindparam("until")))
_STORED_STATE = select(tickets.c.state).where(tickets.c.issue_key == bindparam("key"))
_HOLDS_CLAIM = claims.c.name == bindparam("claim"), claims.c.owner == bindparam("claimant")
_FENCE = update(claims).where(*_HOLDS_CLAIM).values(expires_at=bindparam("until"))
_CLAIM_HELD = select(claims.c.name).where(*_HOLDS_CLAIM)
# A save under a lease with time to run: the ticket's row is written only while the claim is still ours,
# checked in the same statement (the claim is renewed by a separate statement once its lease runs low).
# On PostgreSQL the claim's row is share-locked until the commit, as the fence's UPDATE locks it: a replica
# taking the claim over waits for this save, then reads the state it wrote.
_FENCED_UPDATE_TICKET = _UPDATE_TICKET.where(exists(_CLAIM_HELD.with_for_update(read=True)))
_RELEASE = delete(claims).where(*_HOLDS_CLAIM)
# A claim given back is deleted only as it was then: one taken again since runs to a later end, and is kept.
_GIVE_BACK = _RELEASE.where(claims.c.expires_at <= bindparam("until"))
_DROP_HOLDS = delete(account_holds).where(account_holds.c.issue_key == bindparam("holder"))
_DROP_OTHER_HOLDS = _DROP_HOLDS.where(  # the ticket's holds of any other account than the one it now names
    ~((account_holds.c.tenant == bindparam("tenant")) & (account_holds.c.account_id == bindparam("account"))))


def _give_back(conn: Connection, released: list[dict[str, Any]]) -> None:
    """Delete the claims ``release_soon`` gave back, each only as it was then (in the caller's transaction)."""
    if released:
        conn.execute(_GIVE_BACK, released)


def _claim_upsert(dialect_insert: Any) -> Any:
    """Take the claim when it is free, lapsed or ours; one row back when taken."""
    insert_ = dialect_insert(claims).values(
        name=bindparam("claim"), owner=bindparam("claimant"), expires_at=bindparam("until"))
    return insert_.on_conflict_do_update(
        index_elements=[claims.c.name],
        set_={"owner": insert_.excluded.owner, "expires_at": insert_.excluded.expires_at},
        where=or_(claims.c.expires_at < bindparam("now"), claims.c.owner == bindparam("claimant")),
    ).returning(claims.c.name)


_CLAIM = {"postgresql": _claim_upsert(pg_insert), "sqlite": _claim_upsert(sqlite_insert)}
_HOLD = {name: dialect_insert(account_holds).values(
             tenant=bindparam("tenant"), account_id=bindparam("account"), issue_key=bindparam("holder"),
             held_at=bindparam("now")).on_conflict_do_nothing().returning(account_holds.c.issue_key)
         for name, dialect_insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}
_ACCOUNT_STATES = select(tickets.c.state).where(  # the other tickets' states of one account
    tickets.c.tenant == bindparam("tenant"), tickets.c.account_id == bindparam("account"),
    tickets.c.issue_key != bindparam("key"))
_HOLDER = select(account_holds.c.issue_key, account_holds.c.held_at).where(
    account_holds.c.tenant == bindparam("tenant"), account_holds.c.account_id == bindparam("account"))
_HOLDER_TICKET = select(tickets.c.terminal, tickets.c.tenant, tickets.c.account_id).where(
    tickets.c.issue_key == bindparam("holder"))
_TAKE_HOLD = update(account_holds).where(
    account_holds.c.tenant == bindparam("tenant"), account_holds.c.account_id == bindparam("account"),
    account_holds.c.issue_key == bindparam("holder")).values(issue_key=bindparam("taker"), held_at=bindparam("now"))

# How many tickets' last stored states a store keeps in memory (a few KB each): enough for the tickets
# being worked on at once, not for every ticket (memory must not grow with the backlog). A ticket not
# among them costs one read of its row at its next save, nothing more.
_KNOWN_STATES = 256


@dataclass(frozen=True)
class _Known:
    """A ticket's state as the store last read or wrote it: its stored document and a private copy."""

    document: str
    state: TicketState


class StateStore:
    """Durable ticket states (implements the workflow's ``StateRepository``).

    Safe to share between threads; several stores (processes, replicas) may share one database as long
    as one of them at a time works on a given ticket.
    """

    def __init__(self, engine: Engine, *, create: bool = True, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self._engine = engine
        self._lease = timedelta(seconds=lease_seconds)
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._held: dict[str, datetime] = {}  # claim -> the end of its lease as this store last set it
        self._released: list[dict[str, Any]] = []  # claims ``release_soon`` gave back, not deleted yet
        self._held_lock = threading.Lock()
        self._summaries: dict[str, tuple[datetime, StateSummary]] = {}  # key -> (row's updated_at, summary)
        self._summaries_lock = threading.Lock()
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._known_lock = threading.Lock()
        if create:
            migrations.upgrade(engine)

    @classmethod
    def from_url(cls, url: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS, connections: int = 5) -> StateStore:
        """Open (and create if needed) the store at a SQLAlchemy URL (``connections``: the pool's size)."""
        return cls(create_store_engine(url, connections), lease_seconds=lease_seconds)

    @classmethod
    def open_existing(cls, url: str) -> StateStore:
        """Open a store that must already exist, creating nothing (no folder, file or table).

        For commands that only read it (``status``, ``reveal``): a wrong ``data_dir`` must say so, not
        quietly start an empty store.
        """
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            path = Path(parsed.database).expanduser()
            if not path.parent.is_dir():
                raise StoreNotFoundError(f"the data folder {path.parent} does not exist (check store.data_dir)")
            if not path.is_file():
                raise StoreNotFoundError(
                    f"no state store at {path}: mailunblock has not run with this configuration yet, "
                    "or store.data_dir is wrong"
                )
        engine = create_store_engine(url)
        if not inspect(engine).has_table(tickets.name):
            engine.dispose()
            where = parsed.render_as_string(hide_password=True)
            raise StoreNotFoundError(f"{where} holds no mailunblock state (check store.url / store.data_dir)")
        return cls(engine, create=False)

    @property
    def engine(self) -> Engine:
        """The underlying engine (shared with the password vault)."""
        return self._engine

    def claim(self, name: str) -> bool:
        """Take (or renew) the claim ``name`` for this process; False while another live replica holds it.

        A claim is a lease: it lapses ``lease_seconds`` after it was last taken or renewed, and then any
        replica may take it — a restarted one too: a killed process's request may still be on its way to
        the service, so nobody takes over before the lease says the work has stopped. ``save`` renews the
        claims of the ticket it writes, and refuses to write (``ClaimLost``) when the claim went to someone
        else: no side effect follows a lost claim.
        """
        return write(self._engine, lambda conn: self._claim(conn, name))

    def claim_ticket(self, issue_key: str) -> tuple[bool, TicketState | None]:
        """Claim a ticket (as ``claim``) and read its stored state afresh, in one transaction.

        The state is None when the claim is not ours (or nothing is stored). Claims given back with
        ``release_soon`` are deleted in the same transaction.
        """
        with self._giving_back() as released:
            def work(conn: Connection) -> tuple[bool, str | None]:
                _give_back(conn, released)
                if not self._claim(conn, ticket_claim(issue_key)):
                    return False, None
                return True, conn.execute(_STORED_STATE, {"key": issue_key}).scalar_one_or_none()

            claimed, raw = write(self._engine, work)
        return claimed, self._loaded(issue_key, raw) if claimed else None

    def _claim(self, conn: Connection, name: str) -> bool:
        now = datetime.now(UTC)
        until = now + self._lease
        values = {"claim": name, "claimant": self.owner, "until": until, "now": now}
        taken = conn.execute(_CLAIM[conn.dialect.name], values).first() is not None
        with self._held_lock:  # a claim taken in a transaction that then failed is not held: asked again, it says so
            if taken:
                self._held[name] = until
            else:
                self._held.pop(name, None)
        return taken

    def release(self, name: str) -> None:
        """Give the claim ``name`` back (the work on it is done for now)."""
        with self._held_lock:
            self._held.pop(name, None)
        write(self._engine, lambda conn: conn.execute(_RELEASE, {"claim": name, "claimant": self.owner}))

    def release_soon(self, name: str) -> None:
        """Give the claim ``name`` back with this store's next claim, heartbeat or ``give_back``.

        One commit less per ticket visit. Until then another replica skips the ticket as taken; nobody
        works on it meanwhile, this process included unless it claims it again. Only the claim as it was
        given back is deleted: one taken again since is kept.
        """
        with self._held_lock:
            until = self._held.pop(name, None)
            if until is not None:
                self._released.append({"claim": name, "claimant": self.owner, "until": until})

    def give_back(self) -> None:
        """Delete now the claims ``release_soon`` gave back (when no claim of this store is coming soon)."""
        with self._giving_back() as released:
            if released:
                write(self._engine, lambda conn: _give_back(conn, released))

    @contextmanager
    def _giving_back(self) -> Iterator[list[dict[str, Any]]]:
        """The claims ``release_soon`` gave back, for one write to delete; kept for the next should it fail.

        The write may run twice (again alone, when a write it shared a commit with failed): it deletes the
        same claims each time, and never a claim this process took again since.
        """
        with self._held_lock:
            released, self._released = self._released, []
        try:
            yield released
        except BaseException:
            with self._held_lock:
                self._released[:0] = released
            raise

    def release_all(self) -> None:
        """Give back every claim this process still holds (a clean stop: another replica need not wait)."""
        with self._held_lock:
            self._held.clear()
            self._released = []
        write(self._engine, lambda conn: conn.execute(delete(claims).where(claims.c.owner == self.owner)))

    def renew_claims(self) -> int:
        """Extend every claim this process holds (the heartbeat); return how many are still ours."""
        until = datetime.now(UTC) + self._lease
        with self._held_lock:
            held = sorted(self._held)
            self._held.update((name, until) for name in held)
        with self._giving_back() as released:
            def work(conn: Connection) -> int:
                _give_back(conn, released)
                if not held:
                    return 0
                return int(conn.execute(_RENEW, {"names": held, "claimant": self.owner, "until": until}).rowcount)

            return write(self._engine, work)

    def hold_account(self, tenant: str, account_id: str, issue_key: str) -> str | None:
        """Make ``issue_key`` the one ticket remediating the account; the other holder's key if there is one.

        A hold whose ticket ended, or whose ticket names another account now, is stale and taken over.
        A holder that has not saved its decision yet is deciding right now: ``AccountBusy``.
        """
        now = datetime.now(UTC)
        hold = {"tenant": tenant, "account": account_id, "now": now}
        with self._engine.connect() as conn:  # held already (the re-check before the reset): a read, no commit
            row = conn.execute(_HOLDER, hold).first()
        if row is not None and row.issue_key == issue_key:
            return None

        def work(conn: Connection) -> str | None:
            if conn.execute(_HOLD[conn.dialect.name], {**hold, "holder": issue_key}).first() is not None:
                return None
            holder, held_at = conn.execute(_HOLDER, hold).one()
            if holder == issue_key:
                return None
            row = conn.execute(_HOLDER_TICKET, {"holder": holder}).one_or_none()
            if row is not None and not row.terminal and (row.tenant, row.account_id) == (tenant, account_id):
                return str(holder)
            undecided = row is None or (not row.terminal and row.account_id is None)
            if undecided and now - held_at < UNDECIDED_HOLD:
                raise AccountBusy(f"{holder} is deciding about this account")
            if conn.execute(_TAKE_HOLD, {**hold, "holder": holder, "taker": issue_key}).rowcount != 1:
                raise AccountBusy("another ticket took this account at the same moment")
            return None

        return write(self._engine, work)

    def save(self, state: TicketState) -> None:
        """Persist a state, any stage timestamps not yet recorded and its audit entries, in one transaction.

        A state equal to the one this store last read or wrote for the ticket is not written again. The
        previous state, which tells the audit entries and the new stage entries, is that remembered copy
        when there is one, else the stored row.
        """
        document = state.to_json()
        last = self._last_known(state.issue_key)
        claim = ticket_claim(state.issue_key)
        with self._held_lock:
            fenced = claim in self._held
        now = datetime.now(UTC)
        renew = fenced and self._renewal_due(claim, now)
        if last is not None and last.document == document:
            # Nothing to write, but the side effect that follows still needs the claim: renewed when its
            # lease runs low, else checked (a read: no commit).
            if renew:
                write(self._engine, lambda conn: self._fence(conn, claim, state.issue_key, now))
            elif fenced:
                with self._engine.connect() as conn:
                    self._still_ours(conn, claim, state.issue_key)
            return
        row = {
            "stage": str(state.stage),
            "tenant": state.tenant,
            "account_id": state.account_id,
            "issue_id": state.issue_id,
            "terminal": int(state.is_terminal),
            "state": document,
            "updated_at": now,
        }

        def work(conn: Connection) -> None:
            before = last.state if last is not None else self._stored(conn, state.issue_key)
            # The claim is checked by the row's own UPDATE (one statement less), unless it needs renewing
            # or there is no row yet: then by the fence, first.
            fused = fenced and not renew and before is not None
            if fenced and not fused:
                self._fence(conn, claim, state.issue_key, now)
            self._drop_stale_holds(conn, before, state)
            entries = audit_entries(before, state, now)
            if entries:
                conn.execute(_INSERT_AUDIT, [e.row() for e in entries])
            if fused:
                values = {"key": state.issue_key, "claim": claim, "claimant": self.owner, **row}
                if not conn.execute(_FENCED_UPDATE_TICKET, values).rowcount:
                    self._still_ours(conn, claim, state.issue_key)  # else the row is gone (``forget``)
            elif before is not None:
                conn.execute(_UPDATE_TICKET, {"key": state.issue_key, **row})
            else:
                first = state.history[0].at if state.history else now
                conn.execute(_INSERT_TICKET, {"issue_key": state.issue_key, "first_seen": first, **row})
            fresh = [
                {"issue_key": state.issue_key, "tenant": state.tenant, "stage": str(e.stage), "at": e.at}
                for e in self._unrecorded_events(conn, before, state)
            ]
            if fresh:
                conn.execute(_INSERT_STAGE_EVENTS, fresh)

        write(self._engine, work)
        self._remember(state.issue_key, document, state)

    @staticmethod
    def _drop_stale_holds(conn: Connection, before: TicketState | None, state: TicketState) -> None:
        """Give back the ticket's holds of accounts it no longer remediates: it ended, or names another one.

        Only when this save changes the ticket's end or account: a hold taken since then is of the account
        the stored state names (or of none yet). ``hold_account`` takes stale holds over in any case.
        """
        def held(s: TicketState) -> tuple[bool, str | None, str | None]:
            return s.is_terminal, s.tenant, s.account_id

        if before is not None and held(before) == held(state) and state.account_id is not None:
            return
        if not state.is_terminal and state.tenant and state.account_id:
            conn.execute(_DROP_OTHER_HOLDS,
                         {"holder": state.issue_key, "tenant": state.tenant, "account": state.account_id})
        else:
            conn.execute(_DROP_HOLDS, {"holder": state.issue_key})

    def _renewal_due(self, claim: str, now: datetime) -> bool:
        """Whether a save should renew the claim: less than two thirds of its lease are left."""
        with self._held_lock:
            until = self._held.get(claim)
        return until is None or until - now < self._lease * 2 / 3

    def _still_ours(self, conn: Connection, claim: str, issue_key: str) -> None:
        """``ClaimLost`` when the claim is no longer this store's (nothing is written then)."""
        if conn.execute(_CLAIM_HELD, {"claim": claim, "claimant": self.owner}).first() is None:
            with self._held_lock:
                self._held.pop(claim, None)
            raise ClaimLost(f"{issue_key}: another mailunblock took this ticket over")

    def _fence(self, conn: Connection, claim: str, issue_key: str, now: datetime) -> None:
        """Renew the ticket's claim in this transaction; ``ClaimLost`` (nothing written) when it is not ours."""
        until = now + self._lease
        if not conn.execute(_FENCE, {"claim": claim, "claimant": self.owner, "until": until}).rowcount:
            with self._held_lock:
                self._held.pop(claim, None)
            raise ClaimLost(f"{issue_key}: another mailunblock took this ticket over")
        with self._held_lock:
            if claim in self._held:
                self._held[claim] = until

    @staticmethod
    def _stored(conn: Connection, issue_key: str) -> TicketState | None:
        raw = conn.execute(_STORED_STATE, {"key": issue_key}).scalar_one_or_none()
        return TicketState.from_dict(json.loads(raw)) if raw else None

    @staticmethod
    def _unrecorded_events(conn: Connection, before: TicketState | None, state: TicketState) -> list[StageEvent]:
        """The stage entries of ``state`` that ``stage_events`` does not hold yet."""
        if before is not None and state.history[: len(before.history)] == before.history:
            return state.history[len(before.history):]  # saved with ``before``: only the newer ones are not
        recorded = conn.execute(_RECORDED_EVENTS, {"key": state.issue_key}).all()
        seen = {(stage, at) for stage, at in recorded}
        return [e for e in state.history if (str(e.stage), e.at) not in seen]

    def _last_known(self, issue_key: str) -> _Known | None:
        with self._known_lock:
            known = self._known.get(issue_key)
            if known is not None:
                self._known.move_to_end(issue_key)
            return known

    def _remember(self, issue_key: str, document: str, state: TicketState) -> None:
        """Keep a private copy of the state as it is stored (the next save compares with it)."""
        known = _Known(document, state.copy())
        with self._known_lock:
            self._known[issue_key] = known
            self._known.move_to_end(issue_key)
            while len(self._known) > _KNOWN_STATES:
                self._known.popitem(last=False)

    def _forget_known(self, *issue_keys: str) -> None:
        with self._known_lock:
            for key in issue_keys:
                self._known.pop(key, None)

    def load(self, issue_key: str) -> TicketState | None:
        """The stored state of one ticket, if any."""
        with self._engine.connect() as conn:
            raw = conn.execute(_STORED_STATE, {"key": issue_key}).scalar_one_or_none()
        return self._loaded(issue_key, raw)

    def _loaded(self, issue_key: str, raw: str | None) -> TicketState | None:
        if not raw:
            return None
        state = TicketState.from_dict(json.loads(raw))
        state.issue_key = issue_key  # the row's key wins: a moved ticket's state is renamed before it is saved
        self._remember(issue_key, raw, state)
        return state

    def open_keys_by_issue_id(self, issue_ids: list[str]) -> dict[str, str]:
        """The key each of these Jira issue ids has in the open states (the oldest, when several), in one read."""
        found: dict[str, str] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(issue_ids), 500):
                rows = conn.execute(_OPEN_KEYS_BY_ISSUE_ID, {"ids": issue_ids[start:start + 500]})
                for issue_id, key in rows:
                    found.setdefault(issue_id, key)
        return found

    def open_state_by_issue_id(self, issue_id: str) -> TicketState | None:
        """The open state of the ticket Jira knows by ``issue_id`` (a ticket moved to another project keeps it)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(tickets.c.issue_key, tickets.c.state)
                .where(tickets.c.issue_id == issue_id, tickets.c.terminal == 0)
                .order_by(tickets.c.first_seen)
                .limit(1)
            ).one_or_none()
        if row is None:
            return None
        state = TicketState.from_dict(json.loads(row.state))
        state.issue_key = row.issue_key
        return state

    def summaries(self, selected: Collection[str]) -> dict[str, StateSummary]:
        """By key, summaries of the stored states of the ``selected`` tickets and of every other open one.

        For deciding what to dispatch. A state is parsed again only when its row changed since the previous
        call: a steady cycle over a thousand waiting tickets costs one light query, not a thousand JSON
        parses. Only the summaries of the latest call are kept (a ticket that ended and left the selection
        is forgotten), so memory follows the tickets in play, a few hundred bytes each. Work on a ticket
        starts from ``load`` (its whole state, afresh), never from a summary.
        """
        keys = list(selected)
        with self._engine.connect() as conn:
            stamps = {key: at for key, at in conn.execute(_OPEN_STAMPS)}
            for start in range(0, len(keys), 500):
                rows = conn.execute(_STAMPS_OF, {"keys": keys[start:start + 500]})
                stamps.update((key, at) for key, at in rows)
            with self._summaries_lock:
                kept = {key: self._summaries[key] for key, at in stamps.items()
                        if key in self._summaries and self._summaries[key][0] == at}
            stale = [key for key in stamps if key not in kept]
            for start in range(0, len(stale), 500):
                states = conn.execute(_STATES_OF, {"keys": stale[start:start + 500]})
                for key, at, raw in states:
                    state = TicketState.from_dict(json.loads(raw))
                    state.issue_key = key
                    kept[key] = (at, state.summary())
        with self._summaries_lock:
            self._summaries = kept
        return {key: summary for key, (_, summary) in kept.items()}

    def open_states(self) -> list[TicketState]:
        """Every state whose remediation has not ended, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(tickets.c.state).where(tickets.c.terminal == 0).order_by(tickets.c.first_seen)
            ).scalars()
            return [TicketState.from_dict(json.loads(raw)) for raw in rows]

    def all_states(self) -> list[TicketState]:
        """Every stored state, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(tickets.c.state).order_by(tickets.c.first_seen)).scalars()
            return [TicketState.from_dict(json.loads(raw)) for raw in rows]

    def last_unblock_of_account(
        self, tenant: str, account_id: str, exclude_key: str
    ) -> tuple[str, datetime] | None:
        """The most recent other ticket that unblocked this account, and when."""
        with self._engine.connect() as conn:
            others = {"tenant": tenant, "account": account_id, "key": exclude_key}
            rows = conn.execute(_ACCOUNT_STATES, others).scalars()
            unblocked = [
                (state.issue_key, state.unblocked_at)
                for state in (TicketState.from_dict(json.loads(raw)) for raw in rows)
                if state.unblocked_at is not None
            ]
        return max(unblocked, key=lambda pair: pair[1], default=None)

    def stage_events(self, issue_key: str | None = None) -> list[tuple[str, str, datetime]]:
        """(issue key, stage, at) for every recorded stage entry, in time order — for SLA reports."""
        query = select(stage_events.c.issue_key, stage_events.c.stage, stage_events.c.at)
        if issue_key:
            query = query.where(stage_events.c.issue_key == issue_key)
        with self._engine.connect() as conn:
            return [(k, s, a) for k, s, a in conn.execute(query.order_by(stage_events.c.at))]

    def rename(self, old_key: str, new_key: str) -> None:
        """A ticket moved to another project: its state, stage history, account hold and vaulted password follow it.

        The audit log is append-only: its older entries keep the old key, a new entry records the move.
        """
        self._forget_known(old_key, new_key)

        def work(conn: Connection) -> None:
            for table in (tickets, stage_events, vaulted_passwords, account_holds):
                conn.execute(update(table).where(table.c.issue_key == old_key).values(issue_key=new_key))
            conn.execute(insert(audit_log).values(at=datetime.now(UTC), issue_key=new_key, action="move",
                                                  target=old_key, result="ok", detail=f"was {old_key}"))

        write(self._engine, work)

    def audit(self, *, since: datetime | None = None, ticket: str | None = None) -> list[dict[str, Any]]:
        """Audit entries (JSON-safe, oldest first), optionally since a moment and for one ticket."""
        query = select(audit_log).order_by(audit_log.c.at, audit_log.c.id)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        if ticket is not None:
            query = query.where(audit_log.c.issue_key == ticket)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**{k: v for k, v in row.items() if k != "id"}, "at": row["at"].isoformat()} for row in rows]

    def forget(self, issue_key: str) -> None:
        """Remove one ticket's state (operator command; stage events stay for reporting)."""
        self._forget_known(issue_key)
        write(self._engine, lambda conn: conn.execute(delete(tickets).where(tickets.c.issue_key == issue_key)))
