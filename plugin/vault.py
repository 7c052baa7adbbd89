"""One-time, encrypted storage of new passwords.

A password reset by mailunblock is never written to a comment, log or email. It is encrypted (Fernet:
AES-128-CBC + HMAC-SHA256) with a key that lives outside the database, and can be revealed exactly once on
the mailunblock host (``mailunblock reveal TICKET``); after that, or after the TTL, only the fact that it
existed remains.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from mailunblock.plugin.db import audit_log, vaulted_passwords, write
from mailunblock.workflows.ports import Clock
from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def _store_upsert(dialect_insert: Any) -> Any:
    """Insert a ticket's password, or replace the one it has: one statement, built once (as the store's)."""
    insert_ = dialect_insert(vaulted_passwords)
    replaced = ("ciphertext", "stored_at", "expires_at", "revealed_at", "revealed_by", "wiped_reason")
    return insert_.on_conflict_do_update(index_elements=[vaulted_passwords.c.issue_key],
                                         set_={name: insert_.excluded[name] for name in replaced})


_STORE = {"postgresql": _store_upsert(pg_insert), "sqlite": _store_upsert(sqlite_insert)}
_RECALL = select(vaulted_passwords.c.ciphertext, vaulted_passwords.c.expires_at).where(
    vaulted_passwords.c.issue_key == bindparam("key"), vaulted_passwords.c.revealed_at.is_(None))
_ENTRY = select(
    vaulted_passwords.c.issue_key, vaulted_passwords.c.stored_at, vaulted_passwords.c.expires_at,
    vaulted_passwords.c.revealed_at, vaulted_passwords.c.revealed_by, vaulted_passwords.c.wiped_reason,
).where(vaulted_passwords.c.issue_key == bindparam("key"))


class VaultError(Exception):
    """A password cannot be revealed; the message says why (never the password)."""


@dataclass(frozen=True)
class VaultEntry:
    """What is known about a vaulted password, without the password."""

    issue_key: str
    stored_at: datetime
    expires_at: datetime
    revealed_at: datetime | None
    revealed_by: str | None
    wiped_reason: str | None


def load_key(path: Path) -> bytes:
    """Read the Fernet key file, which must exist (VaultError naming it otherwise)."""
    path = path.expanduser()
    if not path.is_file():
        raise VaultError(f"no vault key at {path} (check store.data_dir or store.vault_key)")
    return path.read_bytes().strip()


def load_or_create_key(path: Path) -> bytes:
    """Read the Fernet key file, creating it (mode 0600) on first use.

    Processes starting at once on one data folder agree on one key: the key is written and synced under a
    private name, then linked into place, which fails when another process got there first (its key is
    read then). Nobody ever reads a key file that is still being written.
    """
    path = path.expanduser()
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    draft = path.with_name(f".{path.name}.{os.getpid()}.{base64.urlsafe_b64encode(os.urandom(6)).decode()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            return path.read_bytes().strip()
    finally:
        draft.unlink(missing_ok=True)
    _sync_folder(path.parent)
    return key


def _sync_folder(folder: Path) -> None:
    """Make a new name in ``folder`` survive a power cut (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PasswordVault:
    """Encrypted one-time password storage (implements the workflow's ``PasswordVault``)."""

    def __init__(self, engine: Engine, key: bytes, clock: Clock, hint_url: str | None = None) -> None:
        self._engine = engine
        self._fernet = Fernet(key)
        self._link_key = hashlib.sha256(b"mailunblock one-time link|" + key).digest()
        self._clock = clock
        self._hint_url = hint_url

    def advertise_links(self, public_url: str | None) -> None:
        """Offer one-time links at ``public_url`` in the notes — only once something serves them."""
        self._hint_url = public_url

    def store(self, issue_key: str, password: str, expires_at: datetime) -> None:
        """Encrypt and keep the password for this ticket, replacing an unrevealed earlier one."""
        row = {
            "issue_key": issue_key,
            "ciphertext": self._fernet.encrypt(password.encode("utf-8")),
            "stored_at": self._clock.now(),
            "expires_at": expires_at,
            "revealed_at": None,
            "revealed_by": None,
            "wiped_reason": None,
        }
        write(self._engine, lambda conn: conn.execute(_STORE[conn.dialect.name], row))

    def retrieval_hint(self, issue_key: str) -> str:
        """How the agent gets the password: a command on the host (and a one-time link when served)."""
        hint = f"run `mailunblock reveal {issue_key}` on the mailunblock host (works once)"
        token = self.link_token(issue_key)
        if self._hint_url and token:
            hint += f", or open {self._hint_url.rstrip('/')}/reveal/{issue_key}/{token} (works once)"
        return hint

    def link_token(self, issue_key: str) -> str | None:
        """The unguessable part of the one-time link: stable for one stored password, dead once replaced.

        Derived (HMAC) from the vault key and the moment the password was stored, so re-rendering a note
        after a crash gives the same link, and nothing secret is kept in the database.
        """
        entry = self.entry(issue_key)
        if entry is None:
            return None
        message = f"{issue_key}|{entry.stored_at.isoformat()}".encode()
        digest = hmac.new(self._link_key, message, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode("ascii")

    def link_is_valid(self, issue_key: str, token: str) -> bool:
        """True when ``token`` is the link token of the password currently stored for the ticket."""
        expected = self.link_token(issue_key)
        return expected is not None and hmac.compare_digest(expected, token)

    def recall(self, issue_key: str) -> str | None:
        """The stored, unrevealed, unexpired password, for retrying an interrupted reset (not a reveal)."""
        with self._engine.connect() as conn:
            row = conn.execute(_RECALL, {"key": issue_key}).first()
        if row is None or row.ciphertext is None or row.expires_at <= self._clock.now():
            return None
        try:
            return self._fernet.decrypt(row.ciphertext).decode("utf-8")
        except InvalidToken:
            return None

    def entry(self, issue_key: str) -> VaultEntry | None:
        """Metadata of the vaulted password for a ticket, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(_ENTRY, {"key": issue_key}).first()
        return VaultEntry(*row) if row else None

    def reveal(self, issue_key: str, revealed_by: str) -> str:
        """Return the password once and wipe it. Raises VaultError if gone, expired or already seen.

        Decrypted before anything is written, in the same transaction: a wrong vault key leaves the
        password in place for the right one.
        """
        now = self._clock.now()

        def work(conn: Connection) -> tuple[str | None, datetime]:
            row = conn.execute(
                select(
                    vaulted_passwords.c.ciphertext,
                    vaulted_passwords.c.expires_at,
                    vaulted_passwords.c.revealed_at,
                    vaulted_passwords.c.revealed_by,
                )
                .where(vaulted_passwords.c.issue_key == issue_key)
                .with_for_update()
            ).first()
            if row is None:
                raise VaultError(f"no password is stored for {issue_key}")
            ciphertext, expires_at, revealed_at, who = row
            if revealed_at is not None:
                raise VaultError(
                    f"the password for {issue_key} was already revealed at "
                    f"{revealed_at:%Y-%m-%d %H:%M} UTC by {who}; reset it again if it was lost"
                )
            expired = ciphertext is None or expires_at <= now
            password = None
            if not expired:
                try:
                    password = self._fernet.decrypt(ciphertext).decode("utf-8")
                except InvalidToken:
                    raise VaultError(
                        "the vault key does not match the stored password (was the key file replaced?); "
                        "nothing was wiped: retry with the right key"
                    ) from None
            conn.execute(
                update(vaulted_passwords)
                .where(vaulted_passwords.c.issue_key == issue_key)
                .values(
                    ciphertext=None,
                    revealed_at=None if expired else now,
                    revealed_by=None if expired else revealed_by,
                    wiped_reason="expired" if expired else "revealed",
                )
            )
            # Who saw the password, in the append-only audit log (never the password itself).
            conn.execute(insert(audit_log).values(
                at=now, issue_key=issue_key, action="reveal-password", actor=revealed_by,
                result="expired" if expired else "ok", detail="wiped: expired" if expired else "shown once"))
            return password, expires_at

        password, expires_at = write(self._engine, work)
        if password is None:
            raise VaultError(
                f"the password for {issue_key} expired at {expires_at:%Y-%m-%d %H:%M} UTC and was "
                "wiped; reset the password again from the Entra admin center"
            )
        return password

    def pending(self) -> int:
        """How many passwords wait in the vault: neither revealed, nor wiped, nor expired."""
        with self._engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(vaulted_passwords).where(
                    vaulted_passwords.c.ciphertext.is_not(None),
                    vaulted_passwords.c.revealed_at.is_(None),
                    vaulted_passwords.c.expires_at > self._clock.now(),
                )
            ).scalar_one())

    def purge_expired(self) -> int:
        """Wipe every expired, unrevealed password; return how many."""
        wipe = (
            update(vaulted_passwords)
            .where(vaulted_passwords.c.expires_at <= self._clock.now(), vaulted_passwords.c.ciphertext.is_not(None))
            .values(ciphertext=None, wiped_reason="expired")
        )
        return write(self._engine, lambda conn: int(conn.execute(wipe).rowcount or 0))
