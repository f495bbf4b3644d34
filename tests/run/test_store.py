"""Tests for the SQLite results store: round trips, resume bookkeeping, refusing
foreign files untouched, concurrent writer processes and surviving SIGKILL."""

from __future__ import annotations

import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from batchscope.core.results import RunResult, StepStats, TrialResult
from batchscope.errors import StoreError
from batchscope.run.store import (
    APPLICATION_ID,
    DEFAULT_STORE,
    RunSummary,
    Store,
    new_run_id,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def make_run(run_id: str = "20260101-000000-abcd", name: str = "mlp") -> RunResult:
    return RunResult(
        run_id=run_id,
        created="2026-01-01T00:00:00+00:00",
        workload={"name": name, "params": 1234},
        settings={"batch_sizes": [16, 32], "repeats": 1},
        environment={"python": "3.11", "torch": "2.3"},
    )


def make_trial(batch_size: int = 16, status: str = "ok", device: str = "cpu") -> TrialResult:
    if status != "ok":
        return TrialResult(device=device, batch_size=batch_size, status=status, error="boom")
    return TrialResult(
        device=device,
        batch_size=batch_size,
        status="ok",
        step_time_s=StepStats.from_samples([0.1, 0.2, 0.3]),
        samples_per_s=batch_size / 0.2,
        final_train_loss=0.5,
        notes=["a note"],
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.db"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# -- round trip and resume bookkeeping ---------------------------------------------


def test_round_trip_equals_original(db: Path) -> None:
    run = make_run()
    trials = [make_trial(16), make_trial(32, status="oom")]
    run.trials = trials
    with Store(db) as store:
        store.create_run(run, ["cpu/16", "cpu/32"])
        # Insert out of plan order: get_run must return plan order.
        store.add_trial(run.run_id, "cpu/32", trials[1])
        store.add_trial(run.run_id, "cpu/16", trials[0])
    with Store(db) as store:
        loaded = store.get_run(run.run_id)
        assert store.planned_keys(run.run_id) == ["cpu/16", "cpu/32"]
    assert loaded.to_dict() == run.to_dict()
    assert loaded.trials[0].step_time_s == trials[0].step_time_s


def test_create_run_ignores_trials_and_rejects_duplicate_id(db: Path) -> None:
    run = make_run()
    run.trials = [make_trial()]
    with Store(db) as store:
        store.create_run(run, ["k"])
        assert store.get_run(run.run_id).trials == []
        with pytest.raises(StoreError, match="already exists"):
            store.create_run(make_run(), [])


def test_nan_loss_round_trips(db: Path) -> None:
    trial = make_trial()
    trial.final_train_loss = math.nan
    with Store(db) as store:
        store.create_run(make_run(), ["k"])
        store.add_trial("20260101-000000-abcd", "k", trial)
        loaded = store.get_run("20260101-000000-abcd").trials[0]
    assert loaded.final_train_loss is not None and math.isnan(loaded.final_train_loss)


def test_unplanned_trials_follow_insertion_order(db: Path) -> None:
    run = make_run()
    with Store(db) as store:
        store.create_run(run, ["p"])
        store.add_trial(run.run_id, "z", make_trial(64))
        store.add_trial(run.run_id, "a", make_trial(8))
        store.add_trial(run.run_id, "p", make_trial(16))
        sizes = [t.batch_size for t in store.get_run(run.run_id).trials]
    assert sizes == [16, 64, 8]


def test_same_key_replaces_old_row(db: Path) -> None:
    run = make_run()
    with Store(db) as store:
        store.create_run(run, ["cpu/16", "cpu/32"])
        store.add_trial(run.run_id, "cpu/16", make_trial(16, status="crashed"))
        store.add_trial(run.run_id, "cpu/32", make_trial(32))
        store.add_trial(run.run_id, "cpu/16", make_trial(16, status="ok"))
        loaded = store.get_run(run.run_id)
    assert [(t.batch_size, t.status) for t in loaded.trials] == [(16, "ok"), (32, "ok")]
    with sqlite3.connect(db) as conn:
        count = conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    assert count == 2


def test_completed_keys(db: Path) -> None:
    run = make_run()
    with Store(db) as store:
        store.create_run(run, ["a", "b", "c", "d"])
        assert store.completed_keys(run.run_id) == set()
        store.add_trial(run.run_id, "a", make_trial(16))
        store.add_trial(run.run_id, "b", make_trial(32, status="oom"))
        store.add_trial(run.run_id, "c", make_trial(64, status="crashed"))
        assert store.completed_keys(run.run_id) == {"a", "b", "c"}
        assert store.completed_keys(run.run_id, ("ok",)) == {"a"}
        assert store.completed_keys(run.run_id, ("ok", "oom")) == {"a", "b"}
        missing = [
            k for k in store.planned_keys(run.run_id) if k not in store.completed_keys(run.run_id)
        ]
        assert missing == ["d"]


def test_add_trial_to_unknown_run_fails(db: Path) -> None:
    with Store(db) as store, pytest.raises(StoreError, match="unknown run id 'nope'"):
        store.add_trial("nope", "k", make_trial())


def test_update_environment_and_settings(db: Path) -> None:
    run = make_run()
    with Store(db) as store:
        store.create_run(run, [])
        store.update_environment(run.run_id, {"python": "3.12"})
        store.update_settings(run.run_id, {"repeats": 3})
        loaded = store.get_run(run.run_id)
        with pytest.raises(StoreError, match="unknown run id"):
            store.update_environment("missing", {})
    assert loaded.environment == {"python": "3.12"}
    assert loaded.settings == {"repeats": 3}


def test_list_runs_counts(db: Path) -> None:
    with Store(db) as store:
        assert store.list_runs() == []
        store.create_run(make_run("20260101-000000-aaaa", "mlp"), ["1", "2", "3", "4"])
        store.create_run(make_run("20260102-000000-bbbb", "cnn"), ["x"])
        store.add_trial("20260101-000000-aaaa", "1", make_trial(16, device="cpu"))
        store.add_trial("20260101-000000-aaaa", "2", make_trial(32, device="cuda:0"))
        store.add_trial("20260101-000000-aaaa", "3", make_trial(64, "oom", device="cuda:0"))
        runs = store.list_runs()
    by_id = {r.run_id: r for r in runs}
    assert by_id["20260101-000000-aaaa"] == RunSummary(
        run_id="20260101-000000-aaaa",
        created="2026-01-01T00:00:00+00:00",
        workload="mlp",
        devices=["cpu", "cuda:0"],
        n_ok=2,
        n_failed=1,
        n_planned=4,
    )
    second = by_id["20260102-000000-bbbb"]
    assert (second.workload, second.n_ok, second.n_failed, second.n_planned) == ("cnn", 0, 0, 1)
    assert second.devices == []


def test_resolve_run_id(db: Path) -> None:
    with Store(db) as store:
        for run_id in ("20260101-000000-aaaa", "20260101-000000-aaab", "20260202-000000-cccc"):
            store.create_run(make_run(run_id), [])
        assert store.resolve_run_id("20260101-000000-aaaa") == "20260101-000000-aaaa"
        assert store.resolve_run_id("202602") == "20260202-000000-cccc"
        with pytest.raises(StoreError, match="ambiguous") as excinfo:
            store.resolve_run_id("20260101")
        assert "20260101-000000-aaaa" in str(excinfo.value)
        assert "20260101-000000-aaab" in str(excinfo.value)
        with pytest.raises(StoreError, match="unknown run id 'x': 'batchscope runs' lists them"):
            store.resolve_run_id("x")
        # A LIKE wildcard must not act as one.
        with pytest.raises(StoreError, match="unknown run id"):
            store.resolve_run_id("2026%")


def test_new_run_id_is_short_and_sortable() -> None:
    first = new_run_id()
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", first)
    assert len({new_run_id() for _ in range(50)}) > 1
    assert first[:15] <= new_run_id()[:15]


# -- opening: paths and foreign files ----------------------------------------------


def test_new_store_is_marked_as_ours(db: Path) -> None:
    Store(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    Store(db).close()  # reopening an existing store works


def test_empty_file_is_initialised(db: Path) -> None:
    db.write_bytes(b"")
    with Store(db) as store:
        store.create_run(make_run(), [])
    assert db.stat().st_size > 0


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "results.db"
    with pytest.raises(StoreError, match="folder .* does not exist"):
        Store(path)
    assert not path.parent.exists()


def test_create_parent_makes_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Store.open_default() as store:
        store.create_run(make_run(), [])
    assert (tmp_path / DEFAULT_STORE).is_file()


def test_folder_as_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="folder"):
        Store(tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores chmod")
def test_unwritable_folder_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            Store(folder / "results.db")
    finally:
        folder.chmod(0o700)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores chmod")
def test_unwritable_file_is_an_error(db: Path) -> None:
    Store(db).close()
    db.chmod(0o400)
    try:
        with pytest.raises(StoreError, match="not writable"):
            Store(db)
    finally:
        db.chmod(0o600)


def _snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


@pytest.mark.parametrize(
    "content",
    [b"hello, I am a text file\n" * 20, b"x", b"SQLite format 2\x00" + b"\x00" * 200],
    ids=["text", "one-byte", "fake-header"],
)
def test_non_sqlite_file_is_refused_untouched(db: Path, content: bytes) -> None:
    db.write_bytes(content)
    before = _snapshot(db)
    with pytest.raises(StoreError, match="not a batchscope results store"):
        Store(db)
    assert _snapshot(db) == before


def test_foreign_sqlite_is_refused_untouched(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE foo (x INTEGER)")
    conn.execute("INSERT INTO foo VALUES (1)")
    conn.commit()
    conn.close()
    time.sleep(0.01)  # so a write would show in mtime even on coarse clocks
    before = _snapshot(db)
    with pytest.raises(StoreError, match="not a batchscope results store"):
        Store(db)
    assert _snapshot(db) == before


def test_foreign_sqlite_with_our_table_names_but_no_id_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.execute("CREATE TABLE runs (run_id TEXT)")
    conn.commit()
    conn.close()
    before = _snapshot(db)
    with pytest.raises(StoreError, match="not a batchscope results store"):
        Store(db)
    assert _snapshot(db) == before


def test_empty_sqlite_database_is_not_ours(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 7")  # forces a real, table-less SQLite file
    conn.close()
    before = _snapshot(db)
    with pytest.raises(StoreError, match="not a batchscope results store"):
        Store(db)
    assert _snapshot(db) == before


def test_newer_schema_is_refused(db: Path) -> None:
    Store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer batchscope"):
        Store(db)


def test_closed_store_raises(db: Path) -> None:
    store = Store(db)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_runs()


# -- processes: concurrency and SIGKILL ----------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from batchscope.core.results import RunResult, StepStats, TrialResult
    from batchscope.run.store import Store

    db, run_id, go, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    with Store(db) as store:
        run = RunResult(run_id=run_id, created="2026", workload={"name": "w"},
                        settings={}, environment={})
        store.create_run(run, [f"k{i}" for i in range(n)])
        print("ready", flush=True)
        while not go.exists():
            time.sleep(0.005)
        for i in range(n):
            trial = TrialResult(device="cpu", batch_size=i + 1,
                                step_time_s=StepStats.from_samples([0.01, 0.02]))
            store.add_trial(run_id, f"k{i}", trial)
    print("done", flush=True)
    """
)


def test_two_writer_processes_at_once(db: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    n = 50
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), run_id, str(go), str(n)],
            env=_child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id in ("run-a", "run-b")
    ]
    try:
        # Both open (and race to initialise) the new store; then write together.
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        go.touch()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "done" in out
    with Store(db) as store:
        for run_id in ("run-a", "run-b"):
            run = store.get_run(run_id)
            assert [t.batch_size for t in run.trials] == list(range(1, n + 1))
            assert store.completed_keys(run_id) == {f"k{i}" for i in range(n)}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 2 * n


KILLED = textwrap.dedent(
    """
    import sys, time
    from batchscope.core.results import RunResult, StepStats, TrialResult
    from batchscope.run.store import Store

    store = Store(sys.argv[1])
    run = RunResult(run_id="doomed", created="2026", workload={"name": "w"},
                    settings={}, environment={})
    store.create_run(run, ["a", "b", "c", "d"])
    for i, key in enumerate("abc"):
        store.add_trial("doomed", key, TrialResult(device="cpu", batch_size=2 ** i,
                        step_time_s=StepStats.from_samples([0.1, 0.2, 0.3])))
    print("wrote", flush=True)
    time.sleep(120)
    """
)


def test_trials_survive_sigkill(db: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(db)],
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "wrote", proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Store(db) as store:
        run = store.get_run("doomed")
        assert [t.batch_size for t in run.trials] == [1, 2, 4]
        assert all(t.ok and t.step_time_s is not None for t in run.trials)
        assert store.completed_keys("doomed") == {"a", "b", "c"}
        assert set(store.planned_keys("doomed")) - store.completed_keys("doomed") == {"d"}


# -- read-only stores --------------------------------------------------------------

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _side_files(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir() if p.name.startswith(db.name + "-"))


def _filled(db: Path) -> RunResult:
    run = make_run()
    with Store(db) as store:
        store.create_run(run, ["a", "b", "c"])
        store.add_trial(run.run_id, "a", make_trial(16))
        store.add_trial(run.run_id, "b", make_trial(32, status="oom"))
    return run


def test_readonly_store_reads_and_leaves_the_file_untouched(db: Path) -> None:
    run = _filled(db)
    assert _side_files(db) == []
    before = _snapshot(db)
    with Store(db, readonly=True) as store:
        assert store.readonly and store.immutable  # no -wal: nobody has it open
        got = store.get_run(store.resolve_run_id("20260101"))
        assert [t.batch_size for t in got.trials] == [16, 32]
        assert got.workload == run.workload
        [summary] = store.list_runs()
        assert (summary.n_ok, summary.n_failed, summary.n_planned) == (1, 1, 3)
        assert store.planned_keys(run.run_id) == ["a", "b", "c"]
        assert store.completed_keys(run.run_id) == {"a", "b"}
    assert _snapshot(db) == before  # no byte, mtime or -wal/-shm file changed


def test_readonly_connection_is_mode_ro_and_refuses_raw_writes(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Works as root too: SQLite itself refuses, whatever the file permissions."""
    _filled(db)
    calls: list[tuple[object, dict[str, object]]] = []
    real_connect = sqlite3.connect

    def spy(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        calls.append((database, kwargs))
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    before = _snapshot(db)
    store = Store.open_readonly(db)
    try:
        [(uri, kwargs)] = calls
        assert kwargs["uri"] is True
        assert isinstance(uri, str) and uri.startswith("file:")
        assert "mode=ro" in uri and "immutable=1" in uri
        for sql in (
            "CREATE TABLE intruder (x)",
            "DELETE FROM trials",
            "UPDATE meta SET value = '0' WHERE key = 'schema_version'",
            "PRAGMA user_version = 5",
        ):
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                store.conn.execute(sql).fetchall()
    finally:
        store.close()
    assert _snapshot(db) == before


def test_readonly_store_refuses_writes_with_a_store_error(db: Path) -> None:
    run = _filled(db)
    before = _snapshot(db)
    with Store(db, readonly=True) as store:
        attempts = [
            lambda: store.create_run(make_run("20260202-000000-ffff"), []),
            lambda: store.add_trial(run.run_id, "c", make_trial(64)),
            lambda: store.update_environment(run.run_id, {}),
            lambda: store.update_settings(run.run_id, {}),
            lambda: store.update_plan(run.run_id, ["a"]),
        ]
        for attempt in attempts:
            with pytest.raises(StoreError, match="opened read-only") as info:
                attempt()
            assert "\n" not in str(info.value) and str(db) in str(info.value)
    assert _snapshot(db) == before


def test_readonly_path_with_uri_characters(tmp_path: Path) -> None:
    db = tmp_path / "odd ?#% name" / "r&x=1.db"
    db.parent.mkdir()
    _filled(db)
    with Store(db, readonly=True) as store:
        assert len(store.list_runs()) == 1
    assert _side_files(db) == []


@pytest.mark.parametrize(
    "content",
    [b"hello, I am a text file\n" * 20, b"SQLite format 2\x00" + b"\x00" * 200],
    ids=["text", "fake-header"],
)
def test_readonly_refuses_non_sqlite_untouched(db: Path, content: bytes) -> None:
    db.write_bytes(content)
    before = _snapshot(db)
    with pytest.raises(StoreError, match="not a batchscope results store"):
        Store(db, readonly=True)
    assert _snapshot(db) == before


def test_readonly_refuses_foreign_sqlite_untouched(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE foo (x INTEGER)")
    conn.commit()
    conn.close()
    before = _snapshot(db)
    with pytest.raises(StoreError, match="not a batchscope results store"):
        Store(db, readonly=True)
    assert _snapshot(db) == before
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 7")  # a real, table-less SQLite file
    conn.close()
    with pytest.raises(StoreError, match="not a batchscope results store"):
        Store(db, readonly=True)


def test_readonly_missing_empty_newer_and_folder(db: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no results store"):
        Store(db, readonly=True)
    assert not db.exists()  # never created
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "nowhere" / "r.db", readonly=True)
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(StoreError, match="folder"):
        Store(tmp_path, readonly=True)
    db.touch()
    with pytest.raises(StoreError, match="empty file"):
        Store(db, readonly=True)
    assert db.stat().st_size == 0 and _side_files(db) == []  # not initialised
    db.unlink()
    Store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match="newer batchscope"):
        Store(db, readonly=True)


def test_readonly_reads_a_live_writers_wal(db: Path) -> None:
    run = _filled(db)
    with Store(db) as writer:  # a sweep in progress: its trials sit in the -wal file
        writer.add_trial(run.run_id, "c", make_trial(64))
        assert db.with_name(db.name + "-wal").exists()
        with Store(db, readonly=True) as reader:
            assert not reader.immutable
            assert len(reader.get_run(run.run_id).trials) == 3
            writer.update_plan(run.run_id, ["a", "b", "c", "d"])
            assert reader.planned_keys(run.run_id) == ["a", "b", "c", "d"]
    assert _side_files(db) == []  # the writer, closing last, still cleans up


def test_immutable_reader_follows_a_writer_that_comes_later(db: Path) -> None:
    _filled(db)
    with Store(db, readonly=True) as reader:
        assert reader.immutable and len(reader.list_runs()) == 1
        with Store(db) as writer:  # opens while the reader is open: a -wal appears
            writer.create_run(make_run("20260303-000000-0001"), [])
            assert len(reader.list_runs()) == 2
            assert not reader.immutable  # reads through the WAL from now on
    # The reader kept the writer from being the last to close, and a read-only
    # connection cannot checkpoint: the writer's -wal stays until the next writer.
    Store(db).close()
    assert _side_files(db) == []


def test_immutable_reader_sees_a_writer_that_opened_and_closed_between_reads(
    db: Path,
) -> None:
    run = _filled(db)
    with Store(db, readonly=True) as reader:
        assert len(reader.get_run(run.run_id).trials) == 2
        with Store(db) as writer:
            writer.add_trial(run.run_id, "c", make_trial(64))
        assert _side_files(db) == []  # the writer checkpointed into the file and cleaned up
        assert len(reader.get_run(run.run_id).trials) == 3  # not a stale cache
        assert reader.immutable
    assert _side_files(db) == []


def test_readonly_reads_what_a_killed_writer_left(db: Path) -> None:
    """After a kill -9 the trials sit in a -wal file nobody checkpointed: still read."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(db)],
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "wrote"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert db.with_name(db.name + "-wal").exists()
    with Store(db, readonly=True) as store:
        assert not store.immutable
        assert [t.batch_size for t in store.get_run("doomed").trials] == [1, 2, 4]


@pytest.mark.skipif(not hasattr(os, "geteuid") or ROOT, reason="root ignores chmod")
def test_readonly_reads_an_unwritable_file_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "results.db"
    _filled(db)
    db.chmod(0o400)
    try:
        with Store(db, readonly=True) as store:  # file read-only, folder writable
            assert len(store.list_runs()) == 1
        assert _side_files(db) == []
        folder.chmod(0o500)
        with pytest.raises(StoreError, match="not writable"):
            Store(db)  # writing still needs both
        with Store(db, readonly=True) as store:  # folder read-only too
            assert len(store.get_run(make_run().run_id).trials) == 2
        assert _side_files(db) == []
    finally:
        folder.chmod(0o700)
        db.chmod(0o600)


@pytest.mark.skipif(not hasattr(os, "geteuid") or ROOT, reason="root ignores chmod")
def test_readonly_folder_with_an_unreadable_shm_is_one_clear_line(tmp_path: Path) -> None:
    """The documented limit: a -wal file in a folder we cannot write needs a readable -shm."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "results.db"
    shm = db.with_name(db.name + "-shm")
    # the writer in another process: within one process SQLite shares the open -shm
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(db)],
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "wrote"
        shm.chmod(0o000)
        folder.chmod(0o500)
        with pytest.raises(StoreError, match="-wal file") as info:
            Store(db, readonly=True)
        assert "\n" not in str(info.value)
    finally:
        folder.chmod(0o700)
        shm.chmod(0o600)
        proc.kill()
        proc.wait()
