"""Starting trial children without paying for ``import torch`` each time (Linux).

Every trial runs in a fresh child; started as ``python -m batchscope.run.child`` each
one imports torch and torchvision again (~4 s of a 6–8 s start on a small CPU). Here a
zygote (:mod:`batchscope.run.zygote`), started once per parent process, imports them and
batchscope's engine, then only forks: each trial child is a fork of a process that never
ran a trial, in its own session, with its own allocator peak, so the fresh-process
guarantee holds. This module is the parent's side: it starts the zygote, sends it one
request per child (the environment, the working directory and the child's stdin, event
and log descriptors) and hands back a :class:`ZygoteProcess`, which answers like a
``subprocess.Popen`` (``pid``, ``stdin``, ``wait``, ``poll``, ``returncode``, ``kill``).

The zygote is off with ``BATCHSCOPE_FORKSERVER=0``, off outside Linux, and never a
reason for an error: whenever it cannot start, cannot be reached, or the request's
environment differs from the zygote's in a variable read only at start-up (see
:data:`LOAD_TIME_PREFIXES`), :func:`spawn` returns None and the caller starts the child
with Popen as before (:func:`unavailable_reason` says why).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

#: ``BATCHSCOPE_FORKSERVER=0`` starts every child with Popen, as before.
ENV_SWITCH = "BATCHSCOPE_FORKSERVER"

#: The module the zygote runs (``python -m``).
ZYGOTE_MODULE = "batchscope.run.zygote"

#: Environment variables read when a library loads or the interpreter starts, so a fork
#: of a zygote started without them would ignore them (OpenMP, MKL and OpenBLAS thread
#: pools, the loader, Python's own, glibc's malloc tunables, torch's import-time flags).
#: A request whose values differ from the zygote's goes to Popen. CUDA's variables
#: (``CUDA_VISIBLE_DEVICES``...) are not here: CUDA initialises in the child, after them;
#: nor are ``TORCHINDUCTOR_*``/``TORCHDYNAMO_*``, read when used (and torch itself sets
#: ``TORCHINDUCTOR_CACHE_DIR`` in the parent once it compiles).
LOAD_TIME_PREFIXES = (
    "OMP_",
    "GOMP_",
    "KMP_",
    "MKL_",
    "OPENBLAS_",
    "GOTO_",
    "BLIS_",
    "DNNL_",
    "ONEDNN_",
    "LD_",
    "PYTHON",
    "MALLOC_",
    "GLIBC_",
    "TORCH_",
    "PYTORCH_",
)

#: Read by glibc only at start-up, so the zygote's child applies it with ``mallopt``.
MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"

#: How long the zygote may take to import torch and say it is ready (a loaded machine).
READY_TIMEOUT_S = 120.0
#: How long a request may wait for the zygote's fork to report the child's pid.
SPAWN_TIMEOUT_S = 30.0


class ZygoteUnavailable(Exception):
    """The zygote could not be started or reached (the caller falls back to Popen)."""


def enabled() -> bool:
    """Whether children may come from the zygote here (Linux, not switched off)."""
    return sys.platform.startswith("linux") and os.environ.get(ENV_SWITCH, "1") != "0"


def load_time_env(env: dict[str, str]) -> dict[str, str]:
    """The part of ``env`` a fork cannot change after start-up (the zygote's must match)."""
    return {
        k: v for k, v in env.items() if k.startswith(LOAD_TIME_PREFIXES) and k != MMAP_THRESHOLD_ENV
    }


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Get ``sig`` when the thread that started this process ends (Linux PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG


def _die_with_starter() -> None:
    """preexec_fn of the zygote: SIGKILL when the sweep dies (its main thread)."""
    set_parent_death_signal(signal.SIGKILL)


class ZygoteProcess:
    """A child forked by the zygote, seen from the parent like a ``subprocess.Popen``.

    The zygote is the child's parent: it reaps it and sends the exit status here, with
    Popen's meaning (negative: the signal that killed it). It keeps the dead child as a
    zombie until this side has read the status, so ``pid`` (and its process group, the
    child leads its own session) cannot be reused while this object waits on it.
    """

    def __init__(
        self, pid: int, status: socket.socket, stdin_fd: int, args: list[str], rest: bytes = b""
    ) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self.stdin: IO[bytes] | None = os.fdopen(stdin_fd, "wb")
        self._status = status
        self._buffer = rest

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if self._take_returncode():
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._status], [], [], left)
            if not ready:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            try:
                chunk = self._status.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:  # the zygote died: its death signal killed the child too
                self._await_death(deadline)
                self.returncode = -signal.SIGKILL
                break
            self._buffer += chunk
        self._close_status()  # the zygote may reap it now
        assert self.returncode is not None
        return self.returncode

    def _take_returncode(self) -> bool:
        """Read the exit status from what the zygote has sent, if it is there."""
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = json.loads(line)
            if "returncode" in message:
                self.returncode = int(message["returncode"])
                return True
        return False

    def _await_death(self, deadline: float | None) -> None:
        while deadline is None or time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:  # the pid already belongs to someone else
                return
            time.sleep(0.02)
        raise subprocess.TimeoutExpired(self.args, 0.0)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _close_status(self) -> None:
        with contextlib.suppress(OSError):
            self._status.close()

    def __del__(self) -> None:
        self._close_status()


class _Zygote:
    """One running zygote and the control socket to it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {k: v for k, v in env.items() if k != MMAP_THRESHOLD_ENV}
        self.load_time = load_time_env(self.env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115  (read if it fails to start)
        in_main_thread = threading.current_thread() is threading.main_thread()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", ZYGOTE_MODULE, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.errors,
                pass_fds=(theirs.fileno(),),
                env=self.env,
                start_new_session=True,  # no Ctrl-C of the terminal: the parent decides
                # a death signal follows the thread that forked; another thread's end
                # must not kill it (then the closed control socket ends it instead)
                preexec_fn=_die_with_starter if in_main_thread else None,
            )
        except OSError as exc:
            ours.close()
            self.errors.close()
            raise ZygoteUnavailable(f"cannot start the zygote: {exc}") from exc
        finally:
            theirs.close()
        self.control = ours
        self.lock = threading.Lock()
        ready = self._receive_ready()
        if not ready.get("ready"):
            self.close()
            raise ZygoteUnavailable(str(ready.get("reason", "the zygote did not start")))
        self.pid = self.proc.pid

    def _receive_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.control], [], [], 0.2)
            if ready:
                message = self.control.recv(65536)
                if message:
                    return dict(json.loads(message))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)  # it closed the socket: it is exiting
                break
            if self.proc.poll() is not None:
                break
        return {"ready": False, "reason": self._failure()}

    def _failure(self) -> str:
        returncode = self.proc.poll()
        self.errors.seek(0)
        lines = self.errors.read().decode(errors="replace").strip().splitlines()
        tail = lines[-1] if lines else ""
        if returncode is None:
            return f"the zygote was not ready within {READY_TIMEOUT_S:g} s"
        return f"the zygote exited with status {returncode}: {tail}".rstrip(": ")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, env: dict[str, str], event_fd: int, log_fd: int) -> ZygoteProcess:
        """Ask for one child; its stdin is a new pipe, its stdout and stderr ``log_fd``."""
        header = json.dumps({"env": env, "cwd": os.getcwd()}).encode()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        stdin_r, stdin_w = os.pipe()
        try:
            with self.lock:
                socket.send_fds(
                    self.control, [header], [theirs.fileno(), stdin_r, event_fd, log_fd]
                )
        except OSError as exc:
            ours.close()
            os.close(stdin_w)
            raise ZygoteUnavailable(f"the zygote cannot be reached: {exc}") from exc
        finally:
            theirs.close()
            os.close(stdin_r)
        try:
            reply, rest = _read_line(ours, SPAWN_TIMEOUT_S)
        except (OSError, ValueError) as exc:
            ours.close()
            os.close(stdin_w)
            raise ZygoteUnavailable(f"the zygote did not fork: {exc}") from exc
        if "pid" not in reply:
            ours.close()
            os.close(stdin_w)
            raise ZygoteUnavailable(str(reply.get("error", "the zygote did not fork")))
        args = [f"zygote:{self.pid}", "batchscope.run.child"]
        return ZygoteProcess(int(reply["pid"]), ours, stdin_w, args, rest)

    def close(self) -> None:
        """End the zygote: a closed control socket makes it kill its children and exit."""
        with contextlib.suppress(OSError):
            self.control.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errors.close()


def _read_line(sock: socket.socket, timeout_s: float) -> tuple[dict[str, Any], bytes]:
    """One JSON line from ``sock`` (the zygote's first reply to a request), and what
    came after it (the exit status of a child that died at once)."""
    buffer = b""
    deadline = time.monotonic() + timeout_s
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([sock], [], [], max(0.0, left))
        if not ready:
            raise ValueError(f"no reply within {timeout_s:g} s")
        chunk = sock.recv(4096)
        if not chunk:
            raise ValueError("the zygote closed the request")
        buffer += chunk
    line, rest = buffer.split(b"\n", 1)
    return dict(json.loads(line)), rest


_lock = threading.Lock()
#: this process's zygotes, one per environment of start-up variables (a library the
#: parent imports may set one, e.g. Lightning's PYTORCH_NVML_BASED_CUDA_CHECK): a new
#: environment gets a zygote of its own, and the older ones keep serving theirs
_zygotes: dict[tuple[tuple[str, str], ...], _Zygote] = {}
#: at most this many at once (each holds its own torch import); past it: Popen
MAX_ZYGOTES = 3
_owner_pid = 0  # the process that started _zygotes (a forked parent must start its own)
_reason = ""
_start_failure = ""  # a zygote that failed to start is not tried again by this process


def unavailable_reason() -> str:
    """Why the last request went to Popen ("" when the zygote served it)."""
    return _reason


def spawn(env: dict[str, str], event_fd: int, log_fd: int) -> ZygoteProcess | None:
    """A child started by the zygote (``python -m batchscope.run.child`` in effect), or
    None when the caller must use Popen: switched off, not Linux, the zygote unavailable,
    or more start-up environments than :data:`MAX_ZYGOTES` zygotes serve."""
    global _reason
    if not enabled():
        _reason = f"{ENV_SWITCH}=0" if sys.platform.startswith("linux") else "not Linux"
        return None
    try:
        zygote = _running(env)
    except ZygoteUnavailable as exc:
        _reason = str(exc)
        return None
    differs = sorted(set(load_time_env(env).items()) ^ set(zygote.load_time.items()))
    if differs:  # a zygote started with env but reporting another: never serve from it
        names = sorted({name for name, _ in differs})
        _reason = f"set at start-up, different from the zygote's: {', '.join(names)}"
        return None
    try:
        proc = zygote.spawn(env, event_fd, log_fd)
    except ZygoteUnavailable as exc:
        _reason = str(exc)
        return None
    _reason = ""
    return proc


def _running(env: dict[str, str]) -> _Zygote:
    """This process's zygote for ``env``'s start-up variables, started (again, once it
    died) on first use."""
    global _owner_pid, _start_failure
    key = tuple(sorted(load_time_env(env).items()))
    with _lock:
        if _owner_pid != os.getpid():  # forked: the parent's zygotes are not ours
            _zygotes.clear()
            _start_failure = ""
        for k, z in list(_zygotes.items()):
            if not z.alive():
                z.close()
                del _zygotes[k]
        if key in _zygotes:
            _zygotes[key] = _zygotes.pop(key)  # the most recently used last
            return _zygotes[key]
        if _start_failure and _owner_pid == os.getpid():
            raise ZygoteUnavailable(_start_failure)
        if len(_zygotes) >= MAX_ZYGOTES:
            raise ZygoteUnavailable(
                f"{len(_zygotes)} zygotes already serve other start-up environments"
            )
        _owner_pid = os.getpid()
        try:
            _zygotes[key] = _Zygote(env)
        except ZygoteUnavailable as exc:
            _start_failure = str(exc)
            raise
        return _zygotes[key]


def zygote_pid() -> int | None:
    """The pid of this process's most recently used running zygote, if one is."""
    with _lock:
        if _owner_pid != os.getpid():
            return None
        alive = [z for z in _zygotes.values() if z.alive()]
        return alive[-1].pid if alive else None


def shutdown() -> None:
    """End this process's zygotes (at exit; tests use it to start afresh)."""
    global _start_failure
    with _lock:
        if _owner_pid == os.getpid():
            for z in _zygotes.values():
                z.close()
        _zygotes.clear()
        _start_failure = ""


atexit.register(shutdown)
