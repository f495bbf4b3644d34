"""The zygote: ``python -m batchscope.run.zygote FD``, a process that imports torch once
and then forks one trial child per request (the parent's side is
:mod:`batchscope.run.forkserver`).

Forking is only safe from a process that has started nothing a child could inherit
half-way: so the zygote imports torch, torchvision and batchscope's engine but never
initialises CUDA (each child does, after its own ``CUDA_VISIBLE_DEVICES``), runs no
OpenMP region (each child's ``torch.set_num_threads`` sizes a pool that does not exist
yet), trains nothing and opens nothing it would share. It checks this before saying it
is ready, and refuses otherwise (the parent then uses Popen). The only thread an import
starts is OpenBLAS's pool (NumPy's), which OpenBLAS stops before every fork itself and
restarts in the child on first use; the zygote proves it by a first, empty fork.

Each child: leads a new session (as Popen's ``start_new_session``), gets SIGKILL when
the zygote dies (and the zygote dies when the parent does: its closed control socket
ends it, and a death signal too where the parent's main thread started it), takes the
request's environment, working directory, stdin, event and log descriptors, and runs
:func:`batchscope.run.child.main`, then runs the exit handlers, flushes its output and
ends with ``os._exit`` (tearing down the inherited heap object by object would copy it
page by page: 1.4 s a child here). The zygote reaps it and sends its exit status,
Popen's way (negative for a signal).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from dataclasses import dataclass
from typing import Any, NoReturn

from batchscope.run.forkserver import MMAP_THRESHOLD_ENV, set_parent_death_signal

#: What every trial child would import anyway; torchvision only where it is installed.
PRELOAD = (
    "torch",
    "torchvision",
    "batchscope.run.isolation",
    "batchscope.engine.trial",
    "batchscope.engine.trainer",
    "batchscope.engine.instrument",
    "batchscope.engine.flops",
    "batchscope.hardware.monitor",
    "batchscope.workloads",
)
OPTIONAL = {"torchvision"}

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters
M_TRIM_THRESHOLD = -1
DEFAULT_TRIM_THRESHOLD = 128 * 1024
MADV_POPULATE_READ = 22  # Linux 5.14+
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class NotForkSafe(Exception):
    """The zygote started something a fork would inherit (it then refuses to serve)."""


@dataclass
class _Child:
    """A forked child as the zygote tracks it until its parent has its status."""

    status: socket.socket
    reported: bool = False
    parent_done: bool = False
    exited: bool = False


@dataclass
class _Job:
    """What a freshly forked child runs once it is out of the zygote's loop."""

    header: dict[str, Any]
    stdin_fd: int
    event_fd: int
    log_fd: int


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            if name not in OPTIONAL:
                raise


def check_fork_safe() -> None:
    """Raise :class:`NotForkSafe` unless a fork of this process inherits no running state."""
    torch = sys.modules["torch"]
    if torch.cuda.is_initialized():
        raise NotForkSafe("CUDA was initialised while importing")
    with open("/proc/self/maps") as maps:  # loaded by the first driver call (is_available...)
        if any("libcuda.so" in line for line in maps):
            raise NotForkSafe("the CUDA driver was loaded while importing")
    pid = os.fork()  # OpenBLAS (and any library with an atfork hook) stops its threads now
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    threads = os.listdir("/proc/self/task")
    if len(threads) > 1:
        raise NotForkSafe(f"{len(threads)} threads are running after the imports")


def resident_file_pages() -> list[tuple[int, int]]:
    """(address, length) of every run of file-backed pages mapped in this process.

    A fork copies only the anonymous part of the page table: the libraries' pages the
    imports touched (~300 MB with torch) are missing from the child's, and would fault
    in during its trial, as resident-memory growth that a Popen child, which touched
    them while importing, does not have. The child maps them back (see
    :func:`map_back`) so its baseline and peak mean what they mean in a fresh process.
    """
    runs: list[tuple[int, int]] = []
    with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or fields[4] == "0" or not fields[1].startswith("r"):
                continue  # anonymous, unreadable, or a kernel area ([vdso]...)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // PAGE * 8)
            entries = memoryview(pagemap.read((end - start) // PAGE * 8)).cast("Q")
            run_start = None
            for i, entry in enumerate(entries):
                present = entry >> 63
                if present and run_start is None:
                    run_start = i
                elif not present and run_start is not None:
                    runs.append((start + run_start * PAGE, (i - run_start) * PAGE))
                    run_start = None
            if run_start is not None:
                runs.append((start + run_start * PAGE, (len(entries) - run_start) * PAGE))
    return runs


def map_back(runs: list[tuple[int, int]]) -> None:
    """Map the zygote's resident file pages into this child (from the page cache)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for address, length in runs:
        if libc.madvise(address, length, MADV_POPULATE_READ) != 0:  # older kernels
            for page in range(address, address + length, PAGE):
                ctypes.string_at(page, 1)


def serve(control: socket.socket) -> _Job | None:
    """Fork a child per request until the parent closes ``control``.

    Returns None in the zygote (time to exit) and a :class:`_Job` in a new child.
    """
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGCHLD, _wake)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    children: dict[int, _Child] = {}
    own = [control, wake_r, wake_w]
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is control:
                try:
                    message, fds, _, _ = socket.recv_fds(control, 1 << 20, 8)
                except OSError:
                    message, fds = b"", []
                if not message:
                    _end_children(children)
                    return None
                job = _fork(message, fds, children, selector, own)
                if job is not None:  # in the child
                    selector.close()
                    return job
            elif key.fileobj is wake_r:
                with contextlib.suppress(BlockingIOError):
                    while wake_r.recv(4096):
                        pass
            else:
                _status_readable(key.data, children, selector)
        _collect(children, selector)


def _wake(signum: int, frame: object) -> None:
    """SIGCHLD: the wake-up descriptor has already woken the loop."""


def _fork(
    message: bytes,
    fds: list[int],
    children: dict[int, _Child],
    selector: selectors.BaseSelector,
    own: list[socket.socket],
) -> _Job | None:
    if len(fds) != 4:
        for fd in fds:
            os.close(fd)
        return None
    status_fd, stdin_fd, event_fd, log_fd = fds
    status = socket.socket(fileno=status_fd)
    try:
        header = json.loads(message)
        pid = os.fork()
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            status.sendall(json.dumps({"error": f"fork failed: {exc}"}).encode() + b"\n")
        for fd in (stdin_fd, event_fd, log_fd):
            os.close(fd)
        status.close()
        return None
    if pid == 0:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sock in [*own, status, *(child.status for child in children.values())]:
            sock.close()
        return _Job(header, stdin_fd, event_fd, log_fd)
    for fd in (stdin_fd, event_fd, log_fd):  # the child's now: its EOF is the parent's
        os.close(fd)
    children[pid] = _Child(status)
    selector.register(status, selectors.EVENT_READ, data=pid)
    try:
        status.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    except OSError:
        children[pid].parent_done = True
    return None


def _status_readable(
    pid: int, children: dict[int, _Child], selector: selectors.BaseSelector
) -> None:
    """The parent closed a child's status socket: it has the status, or gave up on it."""
    child = children[pid]
    try:
        data = child.status.recv(4096)
    except OSError:
        data = b""
    if not data:
        selector.unregister(child.status)
        child.parent_done = True


def _collect(children: dict[int, _Child], selector: selectors.BaseSelector) -> None:
    """Report each exited child's status; reap it once its parent has read it."""
    for pid, child in list(children.items()):
        if not child.exited:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is None:
                continue
            child.exited = True
            returncode = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
            if not child.parent_done:
                with contextlib.suppress(OSError):
                    child.status.sendall(json.dumps({"returncode": returncode}).encode() + b"\n")
        if child.parent_done:
            os.waitpid(pid, 0)
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(child.status)
            child.status.close()
            del children[pid]


def _end_children(children: dict[int, _Child]) -> None:
    """The parent is gone: so must every child still running be."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def become_child(job: _Job, zygote_pid: int, resident: list[tuple[int, int]]) -> int:
    """In a new child: take the request's place in the world, then run the trial child."""
    os.setsid()
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != zygote_pid:  # the zygote died before the signal was armed
        return 1
    map_back(resident)
    os.dup2(job.stdin_fd, 0)
    os.dup2(job.log_fd, 1)
    os.dup2(job.log_fd, 2)
    for fd in (job.stdin_fd, job.log_fd):
        if fd > 2:
            os.close(fd)
    env = {str(k): str(v) for k, v in job.header["env"].items()}
    os.environ.clear()
    os.environ.update(env)
    if MMAP_THRESHOLD_ENV in env:
        _set_mmap_threshold(int(env[MMAP_THRESHOLD_ENV]))
    zygote_cwd = os.getcwd()
    os.chdir(job.header["cwd"])
    # ``python -m`` puts the working directory first on the path: the request's, here
    if sys.path and sys.path[0] in (zygote_cwd, ""):
        sys.path[0] = job.header["cwd"]
    importlib.invalidate_caches()  # files written since the zygote started must be found
    if "numpy" in sys.modules:  # a fresh process would draw its own seed
        sys.modules["numpy"].random.seed()
    from batchscope.run import child

    sys.argv = [child.__file__ or "child.py", str(job.event_fd)]
    return child.main(sys.argv)


def _set_mmap_threshold(value: int) -> None:
    """What ``MALLOC_MMAP_THRESHOLD_`` does at start-up, done after it (glibc ``mallopt``).

    A fixed threshold also stops glibc adjusting the trim threshold, which stays at its
    default in a fresh process; the zygote's may have grown, so it is reset, and the
    top of the heap inherited from the imports is given back now.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, value)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[1]))
    try:
        preload()
        check_fork_safe()
    except BaseException as exc:
        traceback.print_exc()
        with contextlib.suppress(OSError):
            control.send(json.dumps({"ready": False, "reason": f"{exc}"}).encode())
        return 1
    # what the imports made is never collected: a child's collections would otherwise
    # walk (and so copy, page by page) the whole inherited heap
    gc.freeze()
    resident = resident_file_pages()
    zygote_pid = os.getpid()
    control.send(json.dumps({"ready": True, "pid": zygote_pid}).encode())
    job = serve(control)
    if job is None:  # the parent is gone or done: no need to tear the imports down
        os._exit(0)
    _exit(_run_job(job, zygote_pid, resident))


def _run_job(job: _Job, zygote_pid: int, resident: list[tuple[int, int]]) -> int:
    """The child's exit status, as ``python -m batchscope.run.child`` would end."""
    try:
        return become_child(job, zygote_pid, resident)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        return 1


def _exit(code: int) -> NoReturn:
    """End the child: exit handlers and flushed output as at interpreter exit, without
    tearing down (and so copying) every object it inherited from the zygote."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code < 0:  # died of a signal, as an uncaught KeyboardInterrupt does
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
