from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mailunblock.plugin.db import audit_log, create_store_engine, metadata, vaulted_passwords
from mailunblock.plugin.vault import PasswordVault, VaultError, load_or_create_key
from sqlalchemy import select


class FakeClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current


@pytest.fixture
def vault(tmp_path: Path) -> tuple[PasswordVault, FakeClock, object]:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metadata.create_all(engine)
    clock = FakeClock()
    key = load_or_create_key(tmp_path / "vault.key")
    return PasswordVault(engine, key, clock), clock, engine


def test_password_is_encrypted_at_rest_and_revealed_exactly_once(vault) -> None:
    store, clock, engine = vault
    store.store("HELP-1", "Xy7!secret-Password", clock.now() + timedelta(hours=24))
    with engine.connect() as conn:
        ciphertext = conn.execute(select(vaulted_passwords.c.ciphertext)).scalar_one()
    assert b"secret-Password" not in ciphertext
    assert store.reveal("HELP-1", "alice") == "Xy7!secret-Password"
    with pytest.raises(VaultError, match="already revealed at 2026-11-27 09:00 UTC by alice") as second:
        store.reveal("HELP-1", "mallory")
    assert "secret-Password" not in str(second.value)
    entry = store.entry("HELP-1")
    assert entry is not None and entry.wiped_reason == "revealed" and entry.revealed_by == "alice"
    with engine.connect() as conn:
        assert conn.execute(select(vaulted_passwords.c.ciphertext)).scalar_one() is None


def test_expired_password_is_wiped_and_not_revealed(vault) -> None:
    store, clock, _ = vault
    store.store("HELP-2", "Pw-1!abcdefgh", clock.now() + timedelta(hours=1))
    clock.current += timedelta(hours=2)
    with pytest.raises(VaultError, match="expired"):
        store.reveal("HELP-2", "alice")
    entry = store.entry("HELP-2")
    assert entry is not None and entry.wiped_reason == "expired" and entry.revealed_at is None


def test_purge_wipes_only_expired_entries(vault) -> None:
    store, clock, _ = vault
    store.store("HELP-3", "Old-1!abcdefg", clock.now() + timedelta(hours=1))
    store.store("HELP-4", "New-1!abcdefg", clock.now() + timedelta(hours=48))
    clock.current += timedelta(hours=2)
    assert store.purge_expired() == 1
    assert store.reveal("HELP-4", "bob") == "New-1!abcdefg"


def test_unknown_ticket_and_wrong_key(vault, tmp_path: Path) -> None:
    store, clock, engine = vault
    with pytest.raises(VaultError, match="no password is stored for HELP-9"):
        store.reveal("HELP-9", "alice")
    store.store("HELP-5", "Pw-1!abcdefgh", clock.now() + timedelta(hours=1))
    other = PasswordVault(engine, load_or_create_key(tmp_path / "other.key"), clock)
    with pytest.raises(VaultError, match=r"vault key does not match.*nothing was wiped"):
        other.reveal("HELP-5", "alice")
    entry = store.entry("HELP-5")
    assert entry is not None and entry.revealed_at is None and entry.wiped_reason is None
    assert store.reveal("HELP-5", "alice") == "Pw-1!abcdefgh"  # the right key still reveals it, once
    with pytest.raises(VaultError, match="already revealed"):
        store.reveal("HELP-5", "alice")


def test_links_are_advertised_only_once_something_serves_them(vault) -> None:
    store, clock, _ = vault
    store.store("HELP-6", "Pw-1!abcdefgh", clock.now() + timedelta(hours=1))
    assert store.retrieval_hint("HELP-6") == "run `mailunblock reveal HELP-6` on the mailunblock host (works once)"
    store.advertise_links("https://mu.example")
    assert "https://mu.example/reveal/HELP-6/" in store.retrieval_hint("HELP-6")


def test_load_key_never_creates_one(tmp_path: Path) -> None:
    from mailunblock.plugin.vault import load_key

    with pytest.raises(VaultError, match="no vault key at"):
        load_key(tmp_path / "none" / "vault.key")
    assert not (tmp_path / "none").exists()


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "vault.key"
    first = load_or_create_key(path)
    assert load_or_create_key(path) == first
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_key_created_meanwhile_by_another_process_is_the_one_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    path = tmp_path / "vault.key"
    theirs = Fernet.generate_key()
    generate = Fernet.generate_key

    def racing() -> bytes:  # another replica starting at the same moment links its key first
        path.write_bytes(theirs)
        return generate()

    monkeypatch.setattr(Fernet, "generate_key", staticmethod(racing))
    assert load_or_create_key(path) == theirs
    assert path.read_bytes() == theirs and [p.name for p in tmp_path.iterdir()] == ["vault.key"]


def test_threads_creating_the_key_at_once_all_get_the_one_stored(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "vault.key"
    start = threading.Barrier(16)
    keys: list[bytes] = []

    def create() -> None:
        start.wait()
        keys.append(load_or_create_key(path))

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 16 and set(keys) == {path.read_bytes()}
    assert [p.name for p in tmp_path.iterdir()] == ["vault.key"]  # no draft left behind


def test_hint_names_the_command_and_never_the_password(vault, tmp_path: Path) -> None:
    store, clock, engine = vault
    assert "mailunblock reveal HELP-1" in store.retrieval_hint("HELP-1")
    linked = PasswordVault(engine, load_or_create_key(tmp_path / "unused.key"), clock, "https://mu.example/")
    assert "https://mu.example" not in linked.retrieval_hint("HELP-1")  # nothing stored: no link
    linked.store("HELP-1", "Pw-1!linked-one", clock.now() + timedelta(hours=1))
    hint = linked.retrieval_hint("HELP-1")
    assert "https://mu.example/reveal/HELP-1/" in hint and "linked-one" not in hint
    assert linked.retrieval_hint("HELP-1") == hint  # stable: a note re-rendered after a crash links the same


def test_recall_returns_the_unrevealed_password_without_consuming_it(vault) -> None:
    store, clock, _ = vault
    assert store.recall("HELP-6") is None
    store.store("HELP-6", "Pw-1!recall-me", clock.now() + timedelta(hours=1))
    assert store.recall("HELP-6") == "Pw-1!recall-me"
    assert store.reveal("HELP-6", "alice") == "Pw-1!recall-me"
    assert store.recall("HELP-6") is None
    store.store("HELP-7", "Pw-1!expiring", clock.now() + timedelta(minutes=5))
    clock.current += timedelta(minutes=10)
    assert store.recall("HELP-7") is None


def test_a_reveal_is_in_the_audit_log_without_the_password(vault) -> None:
    store, clock, engine = vault
    store.store("HELP-1", "Xy7!secret-Password", clock.now() + timedelta(hours=24))
    store.store("HELP-2", "Zz9!other-Password", clock.now() + timedelta(hours=1))
    store.reveal("HELP-1", "alice")
    clock.current += timedelta(hours=2)
    with pytest.raises(VaultError):
        store.reveal("HELP-2", "bob")
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]
    assert [(r["issue_key"], r["action"], r["actor"], r["result"]) for r in rows] == [
        ("HELP-1", "reveal-password", "alice", "ok"), ("HELP-2", "reveal-password", "bob", "expired")]
    assert "Password" not in repr(rows)
