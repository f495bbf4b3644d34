"""The read commands (runs, show, export, report, compare) on a store the user may read
but not write: a read-only file, and a read-only folder. The store is written with the
Store API (no sweep), then made read-only.

Root ignores chmod, and the tests run as root in CI. There the CLI runs under
``setpriv`` without the capabilities that let root override file permissions
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so chmod binds it as it binds a user. Where
``setpriv`` is unavailable, the CLI tests still run, without the permissions binding,
and ``test_reading_opens_the_store_mode_ro`` checks the read-only path in-process.
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.run.store import Store
from conftest import CliResult, cli_env

RUN_ID = "20260101-120000-abcd"
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
_DROP = "-dac_override,-dac_read_search"
SETPRIV = ["setpriv", f"--inh-caps={_DROP}", f"--bounding-set={_DROP}"]


@functools.cache
def _setpriv_works() -> bool:
    """True where root can run a program that file permissions bind."""
    try:
        probe = subprocess.run([*SETPRIV, "true"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def make_run() -> RunResult:
    trials = []
    for b in (8, 32, 128):
        step = (0.002 / b**0.8 + 0.0001) * b
        samples = [step * (1 + 0.02 * math.sin(3 * k + b)) for k in range(10)]
        stats = StepStats.from_samples(samples)
        trials.append(
            TrialResult(
                device="cpu",
                batch_size=b,
                step_time_s=stats,
                step_times_s=samples,
                samples_per_s=b / stats.median,
                peak_memory_bytes=1_000_000 + 4_000 * b,
            )
        )
    return RunResult(
        run_id=RUN_ID,
        created="2026-01-01T12:00:00+00:00",
        workload={"name": "linear", "spec": "linear", "description": "a test", "notes": []},
        settings={"steps": 10, "warmup": 2, "threads": 2, "seed": 0},
        environment={"cpu_model": "Test CPU", "torch": "2.3.0", "cpu_cores_logical": 2},
        trials=trials,
    )


def write_store(db: Path) -> None:
    run = make_run()
    with Store(db) as store:
        store.create_run(run, [f"k{t.batch_size}" for t in run.trials])
        for trial in run.trials:
            store.add_trial(run.run_id, f"k{trial.batch_size}", trial)


def _state(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in the folder with its bytes and mtime: what a reader must not change."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture
def reader(cli: Callable[..., CliResult], tmp_path: Path) -> Callable[..., CliResult]:
    """Runs the CLI as a user whom file permissions bind (see the module docstring)."""
    if not ROOT or not _setpriv_works():
        return cli

    def _run(*args: str, timeout: float = 300) -> CliResult:
        proc = subprocess.run(
            [*SETPRIV, sys.executable, "-m", "batchscope", *args],
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc.returncode, proc.stdout, proc.stderr

    return _run


@pytest.fixture(params=["file", "folder"])
def ro_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A store whose file (and, for "folder", whose folder too) is read-only."""
    folder = tmp_path / "shared"
    folder.mkdir()
    db = folder / "results.db"
    write_store(db)
    db.chmod(0o444)
    if request.param == "folder":
        folder.chmod(0o555)
    try:
        yield db
    finally:
        folder.chmod(0o755)
        db.chmod(0o644)


def test_read_commands_work_on_a_read_only_store(
    reader: Callable[..., CliResult], ro_store: Path, tmp_path: Path
) -> None:
    store = str(ro_store)
    before = _state(ro_store.parent)
    if not ROOT or _setpriv_works():  # the permissions bind: a write is refused
        code, _, err = reader("sweep", "linear", "--store", store, "--resume", RUN_ID)
        assert code == 2 and "not writable" in err, err

    code, out, err = reader("runs", "--store", store)
    assert code == 0, err
    assert RUN_ID in out and "linear" in out

    code, out, err = reader("show", RUN_ID[:8], "--store", store)
    assert code == 0, err
    assert "128" in out

    code, out, err = reader("export", RUN_ID, "--json", "r.json", "--store", store)
    assert code == 0, err
    assert '"batch_size": 128' in (tmp_path / "r.json").read_text()

    code, out, err = reader("report", RUN_ID, "--out", "rep", "--store", store)
    assert code == 0, err
    assert (tmp_path / "rep" / "report.html").is_file()

    code, out, err = reader("compare", RUN_ID, RUN_ID, "--store", store)
    assert code == 0, err
    assert "Traceback" not in err

    assert _state(ro_store.parent) == before  # no -wal/-shm, not a byte changed


def test_a_foreign_file_is_still_refused_untouched(
    reader: Callable[..., CliResult], tmp_path: Path
) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 10)
    path.chmod(0o444)
    before = _state(tmp_path)
    code, out, err = reader("runs", "--store", str(path))
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "not a batchscope results store" in err and "Traceback" not in err
    assert _state(tmp_path) == before


def test_reading_opens_the_store_mode_ro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read commands' store is read-only by SQLite itself, which binds root too."""
    from batchscope.cli.common import store_for_reading as _store_for_reading

    db = tmp_path / "results.db"
    write_store(db)
    uris: list[object] = []
    real_connect = sqlite3.connect

    def spy(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        uris.append(database)
        assert kwargs.get("uri") is True
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    store = _store_for_reading(str(db))
    try:
        assert store.readonly
        assert len(uris) == 1 and "mode=ro" in str(uris[0])
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.conn.execute("DELETE FROM trials")
        assert len(store.get_run(RUN_ID).trials) == 3
    finally:
        store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]
