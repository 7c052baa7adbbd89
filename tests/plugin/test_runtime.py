"""One place wires mailunblock: the runtime builds the poller once, its housekeeping, and the dry run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from mailunblock.plugin.config import load_config
from mailunblock.plugin.services import Runtime, build_runtime
from mailunblock.sandbox.server import Sandbox

EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Sandbox, Runtime]]:
    with Sandbox("default", tmp_path / "sb", ports=EPHEMERAL) as box:
        config = box.write_config(tmp_path / "mailunblock.toml", store={"data_dir": str(tmp_path / "data")})
        built = build_runtime(load_config(config), box.clock)
        yield box, built
        built.store.engine.dispose()


def test_vault_expiry_is_a_scheduled_job_of_the_runtime(runtime: tuple[Sandbox, Runtime]) -> None:
    box, built = runtime
    built.vault.store("HELP-1", "Expiring-Pa55word!", box.clock.now() + timedelta(minutes=5))
    (job,) = built.jobs()
    assert job.name == "vault-expiry"
    job.run()
    assert built.vault.recall("HELP-1") == "Expiring-Pa55word!"  # not expired yet: kept
    box.clock.advance(timedelta(minutes=6))
    job.run()
    assert built.vault.recall("HELP-1") is None
    entry = built.vault.entry("HELP-1")
    assert entry is not None and entry.wiped_reason == "expired"


def test_the_dry_run_shares_the_connectors_but_not_the_store_and_runs_no_housekeeping(
    runtime: tuple[Sandbox, Runtime],
) -> None:
    _, built = runtime
    lines: list[str] = []
    dry = built.dry_run(lines.append)
    assert dry.tickets is built.tickets and dry.vault is built.vault
    assert dry.store is not built.store and dry.engine is not built.engine and dry.poller is not built.poller
    assert dry.jobs() == []
    report = dry.poller.run_cycle()
    assert report.ok and report.seen > 0
    assert any("would post" in line for line in lines)
    assert built.store.all_states() == []  # the real store saw nothing
