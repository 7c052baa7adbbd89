"""Real processes: `mailunblock run` stops cleanly on SIGTERM/SIGINT, mid-cycle included."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailunblock.sandbox.server import Sandbox

EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    with Sandbox("default", tmp_path / "sb", ports=EPHEMERAL) as box:
        yield box.write_config(tmp_path / "mailunblock.toml", store={"data_dir": str(tmp_path / "data")},
                               poller={"interval_seconds": 1})


def _mailunblock() -> str:
    found = shutil.which("mailunblock", path=str(Path(sys.executable).parent))
    assert found, "the mailunblock console script is installed beside this Python"
    return found


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_on_a_signal_after_finishing_its_cycle(config: Path, stop: signal.Signals) -> None:
    process = subprocess.Popen([_mailunblock(), "run", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        lines: list[str] = []
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("cycle:"):
                break
        assert any(line.startswith("cycle: 5 ticket(s) selected") for line in lines), lines
        time.sleep(1.2)  # let the next cycles start: the signal may land in the middle of one
        process.send_signal(stop)
        out, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out
    assert f"received {stop.name}: finishing the current cycle, then stopping" in out
    assert "Traceback" not in out
