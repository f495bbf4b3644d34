"""The embedded results store: one SQLite file that holds every run and trial.

Why SQLite: a sweep can take hours and may be killed at any moment (Ctrl-C,
an out-of-memory killer, a lost SSH session). Each trial is committed the moment
it finishes, so nothing that finished is ever lost, and ``--resume RUN_ID`` only
has to run the keys that have no row yet. WAL journal mode plus a busy timeout
lets several batchscope processes (say, one per device) write into the same file
at once.

Safety: we never write into a file that is not already a batchscope store. A
missing or empty file is initialised; anything else (a text file, somebody
else's SQLite database) is refused with a :class:`StoreError` before a single
byte is written.

Reading: ``Store(path, readonly=True)`` (what ``runs``, ``show``, ``export``,
``report`` and ``compare`` use) opens the file with SQLite's ``mode=ro``, so a
store the user may read but not write (a colleague's, a read-only mount) can be
looked at. It initialises nothing, creates no ``-wal``/``-shm`` file and refuses
every write. SQLite's WAL mode makes this subtle: a ``mode=ro`` connection creates
``-wal`` and ``-shm`` next to the database when they are missing (and cannot
where the folder is not writable). So when there is no ``-wal`` file — no process
has the store open, every trial sits in the database file — the connection is
also ``immutable=1``: no side files, no locks, works in a read-only folder. When a
``-wal`` file exists (a sweep is writing, or one was killed), immutable would not
see the trials in it, so the connection is plain ``mode=ro`` and uses the existing
``-shm`` to read them; where the folder is not writable that needs a readable
``-shm``. Before each query an immutable connection checks that no ``-wal`` file
has appeared and the database file is unchanged, and reconnects otherwise, so it
sees new trials and never trusts a cache of a file that a writer has changed
since. (Left open: a writer that opens the store in the milliseconds of one query
and checkpoints before it ends. A checkpoint happens only when the writer closes
or its WAL passes about 4 MB, so this is far-fetched; the CLI's read commands are
short-lived.)
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from batchscope.core.results import SCHEMA, RunResult, TrialResult, now_iso
from batchscope.errors import StoreError

#: Where results go when the user names no store.
DEFAULT_STORE = "batchscope-results/batchscope.db"

#: ``PRAGMA application_id`` of a batchscope store ("BSco"); it marks the file as ours.
APPLICATION_ID = 0x4253636F

#: Version of the table layout below; bumped only by a migration.
STORE_SCHEMA_VERSION = 1

#: How long a writer waits for another process's lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 30_000

_SQLITE_MAGIC = b"SQLite format 3\x00"

#: ``meta`` keys the store writes itself, which :meth:`Store.put_meta` refuses
_RESERVED_META = frozenset({"schema_version", "created"})

_SCHEMA_SQL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,
    created       TEXT NOT NULL,
    workload_name TEXT NOT NULL,
    workload      TEXT NOT NULL,
    settings      TEXT NOT NULL,
    environment   TEXT NOT NULL,
    plan          TEXT NOT NULL,
    schema        TEXT NOT NULL
);
CREATE TABLE trials (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL,
    device      TEXT NOT NULL,
    batch_size  INTEGER NOT NULL,
    finished_at TEXT NOT NULL,
    UNIQUE (run_id, key)
);
CREATE INDEX trials_run ON trials(run_id, id);
"""


def new_run_id() -> str:
    """A short id that sorts by creation time: ``YYYYMMDD-HHMMSS-xxxx`` (UTC + 4 hex).

    The timestamp makes ``batchscope runs`` listings and prefixes meaningful; the
    random suffix keeps two runs started in the same second apart.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(2)}"


def _dumps(value: Any) -> str:
    # allow_nan stays on: a diverged loss is NaN and must round-trip as NaN.
    return json.dumps(value, sort_keys=False)


@dataclass
class RunSummary:
    """One line of ``batchscope runs``: enough to pick a run without loading trials."""

    run_id: str
    created: str
    workload: str
    devices: list[str] = field(default_factory=list)
    n_ok: int = 0
    n_failed: int = 0
    n_planned: int = 0

    @property
    def n_done(self) -> int:
        """Trials with a row, whatever their status."""
        return self.n_ok + self.n_failed


class Store:
    """An open results store. Use as a context manager, or call :meth:`close`.

    One connection per Store, used from one thread. Every write is its own short
    transaction, committed before the method returns, so concurrent processes
    interleave trial by trial and a killed process loses nothing it reported.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create_parent: bool = False,
        readonly: bool = False,
    ) -> None:
        """Open ``path``, creating and initialising it if it is missing or empty.

        ``create_parent`` makes the parent folder if needed; callers pass it only for
        :data:`DEFAULT_STORE`, so a typo in a user-given path fails loudly instead of
        silently scattering folders. ``readonly`` opens an existing store for reading
        only (see the module docstring): nothing is created, initialised or written,
        and the file and its folder need not be writable.
        """
        self.path = Path(path).expanduser()
        self.readonly = readonly
        #: True while the read-only connection is ``immutable=1`` (no -wal file at open)
        self.immutable = False
        self._opened_stamp: tuple[int, int, int] | None = None
        self._conn: sqlite3.Connection | None = None
        if readonly:
            self._check_readable()
            self._conn = self._connect_readonly()
        else:
            self._check_location(create_parent)
            self._conn = self._connect()

    @classmethod
    def open_default(cls) -> Store:
        """Open (creating if needed) :data:`DEFAULT_STORE` under the current folder."""
        return cls(DEFAULT_STORE, create_parent=True)

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> Store:
        """Open an existing store at ``path`` for reading only."""
        return cls(path, readonly=True)

    # -- opening -------------------------------------------------------------------

    def _check_location(self, create_parent: bool) -> None:
        """Refuse unusable paths with a clear message before SQLite sees them."""
        parent = self.path.parent
        if not parent.exists():
            if not create_parent:
                raise StoreError(
                    f"cannot open results store {self.path}: folder {parent} does not exist"
                )
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create results folder {parent}: {exc.strerror or exc}"
                ) from exc
        if not parent.is_dir():
            raise StoreError(f"cannot open results store {self.path}: {parent} is not a folder")
        if self.path.exists():
            if self.path.is_dir():
                raise StoreError(f"cannot open results store {self.path}: it is a folder")
            self._check_existing_file()
            if not os.access(self.path, os.R_OK | os.W_OK):
                raise StoreError(f"cannot open results store {self.path}: file is not writable")
        # WAL mode keeps -wal and -shm files next to the database, so the folder
        # must be writable even when the file itself already exists.
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(
                f"cannot open results store {self.path}: folder {parent} is not writable"
            )

    def _check_existing_file(self) -> None:
        """Reject a non-SQLite file by its header, without letting SQLite touch it."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(
                f"cannot read results store {self.path}: {exc.strerror or exc}"
            ) from exc
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"{self.path} is not a batchscope results store (not a SQLite file)")

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: autocommit. Each write is one statement, committed at
            # once; the only multi-statement write (initialisation) uses BEGIN IMMEDIATE,
            # which takes the lock up front and waits instead of failing on upgrade.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open results store {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._ensure_schema(conn)
            # Both pragmas are per-file or per-connection and only run once the file is
            # known to be ours. synchronous=FULL: trials are rare, durability is cheap.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except StoreError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"cannot use results store {self.path}: {exc}") from exc
        return conn

    @property
    def _wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _check_readable(self) -> None:
        """Refuse what cannot be read as a store, before SQLite opens anything."""
        parent = self.path.parent
        if not parent.is_dir():
            raise StoreError(
                f"cannot open results store {self.path}: folder {parent} does not exist"
            )
        if not self.path.exists():
            raise StoreError(f"no results store at {self.path}: run a sweep first")
        if self.path.is_dir():
            raise StoreError(f"cannot open results store {self.path}: it is a folder")
        self._check_existing_file()
        if self._file_is_empty():
            raise StoreError(
                f"{self.path} is an empty file, not a batchscope results store yet "
                "(a sweep writing to it initialises it)"
            )

    def _readonly_uri(self, immutable: bool) -> str:
        # as_uri() percent-encodes '?', '#', '%' and spaces, which SQLite decodes.
        uri = self.path.absolute().as_uri() + "?mode=ro"
        return uri + "&immutable=1" if immutable else uri

    def _connect_readonly(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection, ``immutable=1`` when no -wal file exists (see above)."""
        immutable = not self._wal_path.exists()
        try:
            conn = sqlite3.connect(
                self._readonly_uri(immutable),
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open results store {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("BEGIN")
            try:
                ours = self._is_ours(conn)
            finally:
                conn.execute("COMMIT")
        except StoreError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            hint = ""
            if not immutable:
                hint = (
                    f" (it has a {self._wal_path.name} file, from a sweep writing to it or "
                    f"one that was killed; reading it needs a readable "
                    f"{self.path.name}-shm file or a writable folder)"
                )
            raise StoreError(f"cannot read results store {self.path}: {exc}{hint}") from exc
        if not ours:  # emptied since _check_readable
            conn.close()
            raise StoreError(f"{self.path} is an empty file, not a batchscope results store yet")
        self.immutable = immutable
        self._opened_stamp = self._stamp()
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Verify the file is ours, or initialise it if it is brand new.

        Read-only checks come first, so a foreign database is never written to. The
        initialisation runs under BEGIN IMMEDIATE so two processes creating the same
        new store at once serialise: the second finds the first one's schema.
        """
        # One read transaction: its shared lock keeps a concurrent initialiser from
        # committing between our reads, so we never see half a schema.
        conn.execute("BEGIN")
        try:
            ours = self._is_ours(conn)
        finally:
            conn.execute("COMMIT")
        if ours:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self._is_ours(conn):
                conn.execute("COMMIT")
                return
            # Not executescript: it would COMMIT first and break the transaction.
            for statement in _SCHEMA_SQL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", str(STORE_SCHEMA_VERSION)), ("created", now_iso())],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _is_ours(self, conn: sqlite3.Connection) -> bool:
        """True for a batchscope store, False for an empty file; StoreError otherwise."""
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id == 0 and not tables and self._file_is_empty():
            return False
        if app_id != APPLICATION_ID or "meta" not in tables:
            raise StoreError(
                f"{self.path} is not a batchscope results store "
                "(a SQLite database written by something else)"
            )
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            version = int(row[0]) if row else None
        except ValueError:
            version = None
        if version is None:
            raise StoreError(
                f"{self.path} is a damaged batchscope results store (no schema version)"
            )
        if version > STORE_SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer batchscope (store schema {version}); "
                "upgrade batchscope to read it"
            )
        return True

    def _file_is_empty(self) -> bool:
        """A 0-byte (or not yet created) file, which we may initialise.

        A SQLite database with no tables but a non-empty file is somebody else's,
        and stays untouched.
        """
        try:
            return self.path.stat().st_size == 0
        except FileNotFoundError:
            return True

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"results store {self.path} is closed")
        if self.immutable and (self._wal_path.exists() or self._stamp() != self._opened_stamp):
            # A writer has opened the store since (its trials sit in the -wal file,
            # which an immutable connection ignores) or changed the file: reconnect.
            self._conn.close()
            self._conn = None
            self.immutable = False
            self._conn = self._connect_readonly()
        return self._conn

    def _stamp(self) -> tuple[int, int, int] | None:
        """What changes when the database file is written: inode, size, mtime."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _write(self, sql: str, params: Iterable[Any]) -> sqlite3.Cursor:
        """Run one statement as its own committed transaction."""
        if self.readonly:
            raise StoreError(f"cannot write to results store {self.path}: it was opened read-only")
        try:
            return self.conn.execute(sql, tuple(params))
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot write to results store {self.path}: {exc}") from exc

    # -- meta: small facts kept beside the runs (e.g. the measured device peak) -------

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key`` in the ``meta`` table, or None."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` (replacing it), committed at once.

        The store's own keys (``schema_version``, ``created``) cannot be written; a
        read-only store raises :class:`StoreError` (callers that only cache check
        :attr:`readonly` first).
        """
        if key in _RESERVED_META:
            raise StoreError(f"meta key {key!r} belongs to the store itself")
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )

    # -- runs ----------------------------------------------------------------------

    def create_run(self, run: RunResult, planned_keys: list[str]) -> None:
        """Record a new run and the keys it plans to measure, before any trial runs.

        The plan is what makes ``--resume`` possible: missing = planned - completed.
        ``run.trials`` is ignored; trials arrive one by one through :meth:`add_trial`.
        """
        name = run.workload.get("name") if isinstance(run.workload, dict) else None
        try:
            self._write(
                "INSERT INTO runs (run_id, created, workload_name, workload, settings,"
                " environment, plan, schema) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.created,
                    str(name or ""),
                    _dumps(run.workload),
                    _dumps(run.settings),
                    _dumps(run.environment),
                    _dumps(list(planned_keys)),
                    run.schema,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"run id '{run.run_id}' already exists in {self.path}") from exc

    def update_environment(self, run_id: str, environment: dict[str, Any]) -> None:
        """Replace a run's environment (e.g. a resume on a machine with a new driver)."""
        self._update_column(run_id, "environment", environment)

    def update_settings(self, run_id: str, settings: dict[str, Any]) -> None:
        """Replace a run's settings (e.g. a resume that extends the plan)."""
        self._update_column(run_id, "settings", settings)

    def update_plan(self, run_id: str, planned_keys: list[str]) -> None:
        """Replace a run's planned keys, keeping the trials already stored."""
        self._update_column(run_id, "plan", list(planned_keys))

    def _update_column(self, run_id: str, column: str, value: Any) -> None:
        assert column in {"environment", "settings", "plan"}
        cur = self._write(f"UPDATE runs SET {column} = ? WHERE run_id = ?", (_dumps(value), run_id))
        if cur.rowcount == 0:
            raise self._unknown(run_id)

    def _unknown(self, run_id: str) -> StoreError:
        return StoreError(f"unknown run id '{run_id}': 'batchscope runs' lists them")

    def _run_row(self, run_id: str) -> tuple[Any, ...]:
        row = self.conn.execute(
            "SELECT run_id, created, workload, settings, environment, plan, schema"
            " FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise self._unknown(run_id)
        return row

    def planned_keys(self, run_id: str) -> list[str]:
        """The trial keys the run set out to measure, in plan order."""
        plan = json.loads(self._run_row(run_id)[5])
        return [str(k) for k in plan]

    def completed_keys(self, run_id: str, statuses: tuple[str, ...] | None = None) -> set[str]:
        """Keys that have a stored trial, optionally only those with one of ``statuses``.

        The caller decides whether a failed trial counts as done (``--resume`` may
        want to retry crashes but not OOMs).
        """
        self._run_row(run_id)
        sql = "SELECT key FROM trials WHERE run_id = ?"
        params: list[Any] = [run_id]
        if statuses is not None:
            if not statuses:
                return set()
            sql += f" AND status IN ({', '.join('?' * len(statuses))})"
            params.extend(statuses)
        return {row[0] for row in self.conn.execute(sql, params)}

    def get_run(self, run_id: str) -> RunResult:
        """The whole run with its trials, in plan order (then insertion order)."""
        row = self._run_row(run_id)
        plan = json.loads(row[5])
        index = {key: i for i, key in enumerate(plan)}
        rows = self.conn.execute(
            "SELECT id, key, payload FROM trials WHERE run_id = ?", (run_id,)
        ).fetchall()
        rows.sort(key=lambda r: (index.get(r[1], len(index)), r[0]))
        return RunResult(
            run_id=row[0],
            created=row[1],
            workload=json.loads(row[2]),
            settings=json.loads(row[3]),
            environment=json.loads(row[4]),
            schema=row[6] or SCHEMA,
            trials=[TrialResult.from_dict(json.loads(r[2])) for r in rows],
        )

    # -- trials --------------------------------------------------------------------

    def add_trial(self, run_id: str, key: str, trial: TrialResult) -> None:
        """Store one finished trial and commit at once, so a later crash cannot lose it.

        A trial with a key that already has a row replaces it (a resumed retry), so
        every key appears once; the row keeps its original position.
        """
        try:
            self._write(
                "INSERT INTO trials (run_id, key, payload, status, device, batch_size,"
                " finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, key) DO UPDATE SET payload = excluded.payload,"
                " status = excluded.status, device = excluded.device,"
                " batch_size = excluded.batch_size, finished_at = excluded.finished_at",
                (
                    run_id,
                    key,
                    _dumps(trial.to_dict()),
                    trial.status,
                    trial.device,
                    int(trial.batch_size),
                    now_iso(),
                ),
            )
        except sqlite3.IntegrityError as exc:  # the foreign key: no such run
            raise self._unknown(run_id) from exc

    # -- listing -------------------------------------------------------------------

    def list_runs(self) -> list[RunSummary]:
        """Every run, oldest first, with trial counts: what ``batchscope runs`` shows."""
        summaries: dict[str, RunSummary] = {}
        for run_id, created, workload, plan in self.conn.execute(
            "SELECT run_id, created, workload_name, plan FROM runs ORDER BY created, run_id"
        ):
            summaries[run_id] = RunSummary(
                run_id=run_id,
                created=created,
                workload=workload,
                n_planned=len(json.loads(plan)),
            )
        for run_id, device, status, count in self.conn.execute(
            "SELECT run_id, device, status, COUNT(*) FROM trials"
            " GROUP BY run_id, device, status ORDER BY MIN(id)"
        ):
            summary = summaries.get(run_id)
            if summary is None:
                continue
            if device not in summary.devices:
                summary.devices.append(device)
            if status == "ok":
                summary.n_ok += count
            else:
                summary.n_failed += count
        return list(summaries.values())

    def resolve_run_id(self, text: str) -> str:
        """Turn what the user typed into a run id: the exact id or a unique prefix."""
        text = text.strip()
        if not text:
            raise StoreError("empty run id: 'batchscope runs' lists them")
        if self.conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (text,)).fetchone():
            return text
        matches = [
            row[0]
            for row in self.conn.execute(
                "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY run_id",
                (len(text), text),
            )
        ]
        if not matches:
            raise self._unknown(text)
        if len(matches) > 1:
            shown = ", ".join(matches[:5])
            more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
            raise StoreError(
                f"run id prefix '{text}' is ambiguous: it matches {shown}{more}; type more of it"
            )
        return matches[0]
