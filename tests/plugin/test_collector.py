"""``mailunblock run`` settles the garbage collector once start-up is done, and only then."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mailunblock.plugin import poller
from mailunblock.plugin.cli import main
from mailunblock.plugin.collector import YOUNG_PASS_EVERY
from mailunblock.sandbox.server import Sandbox

EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)

# In a child process: a frozen heap and a new threshold would stay with every later test.
SETTLE = """
import gc, json, weakref
from mailunblock.plugin.collector import settle
class Node:
    pass
kept = Node()
garbage = Node()
garbage.me = garbage  # a cycle: only the collector frees it
gone = weakref.ref(garbage)
del garbage
before = gc.get_threshold()
settle()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "kept_frozen": not gc.is_tracked(kept) or kept not in gc.get_objects(),
                  "cycle_freed": gone() is None}))
"""


def test_settle_frees_start_up_garbage_freezes_the_rest_and_spaces_the_young_passes() -> None:
    import json

    done = subprocess.run([sys.executable, "-c", SETTLE], capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(done.stdout)
    assert result["after"] == [YOUNG_PASS_EVERY, *result["before"][1:]]
    assert result["frozen"] > 1000  # the modules and all start-up built
    assert result["kept_frozen"]  # a live object is out of the collector's sight
    assert result["cycle_freed"]  # collected before the freeze, not kept for ever


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_run_settles_the_collector_just_before_polling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def polled(*_args: object, **_kwargs: object) -> None:
        seen.update(threshold=gc.get_threshold(), frozen=gc.get_freeze_count())

    monkeypatch.setattr(poller, "run_forever", polled)
    with Sandbox("default", tmp_path / "sb", ports=EPHEMERAL) as box:
        config = box.write_config(tmp_path / "mailunblock.toml", store={"data_dir": str(tmp_path / "data")})
        gc.unfreeze()
        result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert seen["threshold"][0] == YOUNG_PASS_EVERY
    assert seen["frozen"] > 0


@pytest.mark.usefixtures("restored_collector")
def test_run_once_leaves_the_collector_as_it_is(tmp_path: Path) -> None:
    threshold = gc.get_threshold()
    with Sandbox("default", tmp_path / "sb", ports=EPHEMERAL) as box:
        config = box.write_config(tmp_path / "mailunblock.toml", store={"data_dir": str(tmp_path / "data")})
        gc.unfreeze()
        result = CliRunner().invoke(main, ["run", "--once", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0
