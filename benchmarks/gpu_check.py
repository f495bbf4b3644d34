"""Prove every CUDA path of batchscope in one call, on a GPU machine that is lent for minutes.

batchscope's CUDA code is written and tested on machines without a GPU; a GPU machine
is lent only now and then, for about 15 minutes, so everything that needs one must be
ready to run as ONE prepared command that leaves a readable record behind:

    make gpu-check                                   # or, where no venv can be built:
    python3 benchmarks/gpu_check.py [--out DIR] [--only NAME[,NAME]] [--list] [--budget-s 480]

Each item is a subprocess (the ``batchscope`` CLI, a Python snippet or pytest) with its own
timeout, run in its own folder under the output folder (default
``gpu-check-results/<UTC time>/``), with a results store there (``--store``) so nothing
mixes with the user's store. After every item, ``summary.md`` in the output folder is
rewritten: per item pass/fail/skip, wall time, the command, the tail of what it printed
(its table), the last lines of stderr on failure and the JSON it wrote. The exit status
is 1 if any item failed.

Without a CUDA GPU it prints one line and exits 0, so it is harmless anywhere. The
children run with this checkout's ``src`` first on PYTHONPATH and with the interpreter
that runs this script, so it also works with a machine's own python that has torch but
no batchscope installed (packages missing there, e.g. fastai or keras, skip their items).

Deliberately torch-free at import time: ``--list`` and the tests that inspect the item
list must not pay for a torch import.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
EXAMPLES = REPO / "examples"
NO_GPU_LINE = "gpu-check: no CUDA GPU here (torch sees none): nothing to check"
DEFAULT_BUDGET_S = 480.0
#: how much of an item's output the summary keeps
STDOUT_TAIL_LINES = 60
STDERR_TAIL_LINES = 30
JSON_CHARS = 6000

#: a check looks at an item's combined output and its JSON; it returns what is wrong, or None
Check = Callable[[str, Any], "str | None"]


@dataclass(frozen=True)
class Item:
    """One thing to prove on the GPU: a command, its time limit and what its output must show."""

    name: str
    why: str
    #: "cli": argv after ``batchscope``; "python": argv after the interpreter
    kind: str
    argv: tuple[str, ...]
    timeout_s: float
    #: the file (in the item's folder) whose JSON the checks read and the summary shows
    json_name: str | None = None
    checks: tuple[Check, ...] = ()
    #: Python modules the item needs; missing ones skip it (the reason is recorded)
    requires: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    #: run in the repository root (pytest needs its rootdir) instead of the item's folder
    in_repo: bool = False


@dataclass
class ItemResult:
    """What running one item gave, everything the summary shows about it."""

    name: str
    status: str  # "pass", "fail" or "skip"
    command: str
    why: str = ""
    wall_s: float | None = None
    returncode: int | None = None
    reason: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    json_text: str | None = None
    json_path: str | None = None
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- checks


def stdout_matches(pattern: str, what: str) -> Check:
    """The output must contain ``pattern`` (a regex): a line the command must have printed."""

    def check(output: str, _data: Any) -> str | None:
        return None if re.search(pattern, output) else f"no {what} in the output (/{pattern}/)"

    return check


def _trials(data: Any) -> list[dict[str, Any]]:
    """The trial dicts of a results JSON (``batchscope.results/1``), [] if it has none."""
    trials = data.get("trials") if isinstance(data, dict) else None
    return [t for t in trials if isinstance(t, dict)] if isinstance(trials, list) else []


def trials_ok(least: int, **equal: Any) -> Check:
    """At least ``least`` trials, every one ``ok``, and each with the given field values."""

    def check(_output: str, data: Any) -> str | None:
        trials = _trials(data)
        if len(trials) < least:
            return f"{len(trials)} trials in the JSON, expected at least {least}"
        bad = [
            f"{t.get('device')} b={t.get('batch_size')} {t.get('precision')}: {t.get('status')}"
            f" {t.get('error') or ''}".strip()
            for t in trials
            if t.get("status") != "ok"
        ]
        if bad:
            return "trials not ok: " + "; ".join(bad)
        for key, value in equal.items():
            wrong = [t.get(key) for t in trials if t.get(key) != value]
            if wrong:
                return f"{key} should be {value!r} in every trial, got {wrong!r}"
        return None

    return check


def trials_cover(key: str, values: Sequence[Any]) -> Check:
    """Some trial has each of ``values`` in field ``key`` (e.g. every device or precision)."""

    def check(_output: str, data: Any) -> str | None:
        seen = {str(t.get(key)) for t in _trials(data)}
        missing = [v for v in values if not any(s.startswith(str(v)) for s in seen)]
        return f"no trial with {key} {missing} (saw {sorted(seen)})" if missing else None

    return check


def trials_set(*keys: str) -> Check:
    """Every trial has a value (not None) for each of ``keys``: a GPU reading that must exist."""

    def check(_output: str, data: Any) -> str | None:
        empty = [k for k in keys for t in _trials(data) if t.get(k) is None]
        return f"trials without {sorted(set(empty))}" if empty else None

    return check


def json_set(*dotted: str) -> Check:
    """Each ``a.b`` path of the JSON holds a value (not None, not missing)."""

    def check(_output: str, data: Any) -> str | None:
        missing = []
        for path in dotted:
            node = data
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                missing.append(path)
        return f"not set in the JSON: {missing}" if missing else None

    return check


def has_json() -> Check:
    """The command wrote a JSON file that parses (its absence is a failure of its own)."""

    def check(_output: str, data: Any) -> str | None:
        return None if data is not None else "no JSON was written (or it does not parse)"

    return check


# ---------------------------------------------------------------- the items

#: a short GPU job for ``batchscope watch``: ~6 s of bf16 matmuls, so NVML sees load and power
WATCH_JOB = """\
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
t0 = time.perf_counter(); n = 0
while time.perf_counter() - t0 < 6.0:
    for _ in range(20):
        b = a @ a
    torch.cuda.synchronize(); n += 20
dt = time.perf_counter() - t0
print(f"{n} matmuls in {dt:.1f} s: {2 * 8192**3 * n / dt / 1e12:.0f} TFLOP/s")
"""

#: ``batchscope.measure`` around seed 001's own loop on cuda (argv: store path, JSON path)
MEASURE_SNIPPET = """\
import json, sys, torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
import batchscope
from batchscope.workloads.simplecnn import SimpleCNN
store, out = sys.argv[1], sys.argv[2]
gen = torch.Generator().manual_seed(0)
data = TensorDataset(torch.randn(4096, 3, 32, 32, generator=gen),
                     torch.randint(0, 10, (4096,), generator=gen))
rows = []
for bs in (64, 256):
    torch.manual_seed(0)
    model = SimpleCNN().to("cuda")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(data, batch_size=bs, shuffle=True, generator=gen)
    with batchscope.measure(batch_size=bs, run="gpu-check-measure", device="cuda",
                            warmup=3, store=store, model=model) as m:
        while m.steps < 23:
            for x, y in m.batches(loader):
                x, y = x.to("cuda"), y.to("cuda")
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                m.step(loss)
                if m.steps >= 23:
                    break
    r = m.result
    rows.append(r.to_dict())
    print(f"b={bs}: {r.status} {r.device} {r.samples_per_s} samples/s, peak {r.peak_memory_bytes}")
json.dump({"trials": rows}, open(out, "w"), indent=1, default=str)
"""

#: the sweeps' short limits: a trial stops after 4 s or 6 measured steps, whichever is later
SHORT = ("--max-time", "4s", "--min-steps", "6", "--warmup", "2", "-q", "--no-report")


def sweep_argv(folder: Path, *args: str, report: bool = False) -> tuple[str, ...]:
    """A ``sweep`` command writing its JSON and store into the item's folder."""
    short = SHORT if not report else tuple(a for a in SHORT if a != "--no-report")
    outputs = ("--json", str(folder / "results.json"), "--store", str(folder.parent / "store.db"))
    if report:
        outputs += ("--out", str(folder / "report"))
    return (*args, *short, *outputs)


def _sweep_items(out: Path) -> list[Item]:
    """Items 1-4: the engine's cuda paths (cuda against cpu, precisions, channels-last)."""
    resnet_small = ("resnet18", "--image-size", "64", "--images", "400")
    return [
        Item(
            "sweep-cuda-cpu",
            "cuda and cpu trials side by side, and the speedup lines between them",
            "cli",
            # one batch-size list serves both devices; the CPU side is kept small by the
            # image size (64 px) and the short limits (the brief's --rounds is --repeats,
            # left at its default of 1 round)
            sweep_argv(
                out / "sweep-cuda-cpu",
                "sweep",
                *resnet_small,
                *("--devices", "cuda,cpu", "-b", "16..256", "--trial-timeout", "60"),
                report=True,
            ),
            timeout_s=200,
            json_name="results.json",
            checks=(
                has_json(),
                trials_ok(10),
                trials_cover("device", ["cuda", "cpu"]),
                stdout_matches(r"cuda:\d+ ran .*faster than cpu", "speedup line (cuda vs cpu)"),
                stdout_matches(r"best against best", "best-vs-best speedup line"),
            ),
        ),
        Item(
            "precision",
            "autocast fp32, bf16 and fp16 (with the gradient scaler) on cuda",
            "cli",
            sweep_argv(
                out / "precision",
                "sweep",
                *resnet_small,
                *("--devices", "cuda", "-b", "64,256", "--precision", "fp32,bf16,fp16"),
                "--trial-timeout",
                "60",
            ),
            timeout_s=150,
            json_name="results.json",
            checks=(has_json(), trials_ok(6), trials_cover("precision", ["fp32", "bf16", "fp16"])),
        ),
        Item(
            "channels-last",
            "the model and inputs in channels_last memory format on cuda",
            "cli",
            sweep_argv(
                out / "channels-last",
                "sweep",
                *resnet_small,
                *("--devices", "cuda", "-b", "64,256", "--channels-last", "--trial-timeout", "60"),
            ),
            timeout_s=90,
            json_name="results.json",
            checks=(has_json(), trials_ok(2, channels_last=True)),
        ),
    ]


def _compile_item(out: Path) -> Item:
    """Item 4: torch.compile on one size (the slowest item: inductor compiles for ~1 min)."""
    return Item(
        "compile",
        "torch.compile on cuda, one batch size; compile_time_s reported apart",
        "cli",
        sweep_argv(
            out / "compile",
            "sweep",
            *("resnet18", "--image-size", "64", "--images", "400"),
            *("--devices", "cuda", "-b", "64", "--compile", "--trial-timeout", "240"),
        ),
        timeout_s=270,
        json_name="results.json",
        checks=(has_json(), trials_ok(1, compile=True), trials_set("compile_time_s")),
    )


def _tool_items(out: Path) -> list[Item]:
    """Items 5, 6, 8, 9: maxbs, watch (NVML), batchscope.measure and peak on cuda."""
    watch_dir = out / "watch"
    return [
        Item(
            "maxbs",
            "the largest batch size within a 4 GiB budget on cuda (peak reserved memory)",
            "cli",
            # maxbs has no --store: it keeps nothing but its --json
            (
                *("maxbs", "resnet18", "--device", "cuda", "--memory-limit", "4GiB"),
                *("--trial-timeout", "60", "-q", "--json", str(out / "maxbs" / "maxbs.json")),
            ),
            timeout_s=180,
            json_name="maxbs.json",
            checks=(has_json(), json_set("max_batch_size", "budget_bytes")),
        ),
        Item(
            "watch",
            "NVML utilisation, memory, power and energy recorded around a GPU job",
            "cli",
            (
                *("watch", "--out", str(watch_dir), "--sample-interval", "0.1", "--"),
                *(sys.executable, "-c", WATCH_JOB),
            ),
            timeout_s=90,
            json_name="summary.json",
            checks=(
                has_json(),
                json_set(
                    "summary.gpu_utilization_percent_mean",
                    "summary.gpu_utilization_percent_max",
                    "summary.gpu_memory_used_bytes_max",
                    "summary.gpu_power_w_mean",
                    "summary.gpu_energy_j",
                ),
                stdout_matches(r"GPU utilisation: mean", "GPU utilisation line"),
            ),
        ),
        Item(
            "measure",
            "batchscope.measure around a hand-written loop on cuda (own-loop API)",
            "python",
            ("-c", MEASURE_SNIPPET, str(out / "store.db"), str(out / "measure" / "measure.json")),
            timeout_s=120,
            json_name="measure.json",
            checks=(has_json(), trials_ok(2), trials_cover("device", ["cuda:"])),
        ),
        Item(
            "peak",
            "the measured peak matmul FLOP/s and copy bandwidth of the GPU (fp32)",
            "cli",
            # the brief's `peak --device cuda --json` takes a FILE ('-' is stdout): a file
            # here, so the summary goes to stderr and the JSON is kept whole
            (
                *("peak", "--device", "cuda", "--refresh", "-q"),
                *("--store", str(out / "store.db"), "--json", str(out / "peak" / "peak.json")),
            ),
            timeout_s=90,
            json_name="peak.json",
            checks=(has_json(),),
        ),
        Item(
            "peak-bf16",
            "the same peak in bf16 (tensor cores)",
            "cli",
            (
                *("peak", "--device", "cuda", "--dtype", "bf16", "--refresh", "-q"),
                *("--store", str(out / "store.db"), "--json", str(out / "peak-bf16" / "peak.json")),
            ),
            timeout_s=90,
            json_name="peak.json",
            checks=(has_json(),),
        ),
    ]


def framework_argv(folder: Path, *args: str) -> tuple[str, ...]:
    """A fastai/Keras ``sweep``: their protocol (--fit, --epochs) fixes what a trial runs, so
    the adaptive limits of SHORT are refused there; JSON and store as for the others."""
    store = str(folder.parent / "store.db")
    return (*args, "-q", "--no-report", "--json", str(folder / "results.json"), "--store", store)


def _framework_items(out: Path) -> list[Item]:
    """Item 7: the fastai and Keras integrations on cuda (skipped where not installed)."""
    return [
        Item(
            "fastai",
            "a fastai Learner swept on cuda (examples/fastai_pets.py, small photos)",
            "cli",
            framework_argv(
                out / "fastai",
                "sweep",
                *("--fastai", f"{EXAMPLES / 'fastai_pets.py'}:make_learner"),
                *("--devices", "cuda", "-b", "16,64", "--fit", "fine_tune(1)"),
                *("--trial-timeout", "90"),
            ),
            timeout_s=180,
            json_name="results.json",
            checks=(has_json(), trials_ok(2), trials_cover("device", ["cuda"])),
            requires=("fastai",),
            env=(
                ("BATCHSCOPE_FASTAI_IMAGES", "200"),
                ("BATCHSCOPE_FASTAI_SIZE", "64"),
                ("BATCHSCOPE_FASTAI_WORKERS", "0"),
            ),
        ),
        Item(
            "keras",
            "a Keras 3 model (PyTorch backend) swept on cuda (examples/keras_linear.py)",
            "cli",
            framework_argv(
                out / "keras",
                "sweep",
                *("--keras", f"{EXAMPLES / 'keras_linear.py'}:make_model"),
                *("--devices", "cuda", "-b", "32,256", "--epochs", "1", "--trial-timeout", "60"),
            ),
            timeout_s=120,
            json_name="results.json",
            checks=(has_json(), trials_ok(2), trials_cover("device", ["cuda"])),
            requires=("keras",),
            env=(("KERAS_BACKEND", "torch"), ("KERAS_LINEAR_N", "5000")),
        ),
    ]


def _pytest_item() -> Item:
    """Item 10: the suite's own GPU tests (``-m gpu``), in the repository root."""
    return Item(
        "pytest-gpu",
        "the test suite's GPU-marked tests",
        "python",
        # --continue-on-collection-errors: a test module that needs a package this python
        # lacks must not hide the GPU tests of the others
        (
            *("-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider"),
            *("--continue-on-collection-errors", "tests"),
        ),
        timeout_s=240,
        checks=(stdout_matches(r"\d+ passed", "passed GPU test"),),
        in_repo=True,
    )


def build_items(out: Path) -> list[Item]:
    """Every item, in the order they run: the core paths first, the slowest (compile) last,
    so that an exhausted --budget-s skips the least."""
    return [
        *_sweep_items(out),
        *_tool_items(out),
        _pytest_item(),
        *_framework_items(out),
        _compile_item(out),
    ]


# ---------------------------------------------------------------- running one item


def child_env(item: Item) -> dict[str, str]:
    """This checkout's package first on the path, a wide plain terminal, the item's extras."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.update(COLUMNS="160", NO_COLOR="1", PYTHONUNBUFFERED="1")
    env.pop("FORCE_COLOR", None)
    env.update(dict(item.env))
    return env


def full_argv(item: Item) -> list[str]:
    """What is executed: ``python -m batchscope ARGS`` for the CLI (no console script needed)."""
    if item.kind == "cli":
        return [sys.executable, "-m", "batchscope", *item.argv]
    return [sys.executable, *item.argv]


def shown_command(item: Item) -> str:
    """The command as a user would type it (``batchscope ...``, ``python ...``), one line."""
    head = ["batchscope"] if item.kind == "cli" else ["python"]
    args = [
        f"<the {len(a.splitlines())}-line script in benchmarks/gpu_check.py>" if "\n" in a else a
        for a in item.argv
    ]
    text = shlex.join([*head, *args])
    return text if len(text) <= 600 else text[:597] + "..."


def tail(text: str, lines: int) -> str:
    """The last ``lines`` lines: what a failed or finished command said last."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_process(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> tuple:
    """Run one child in its own process group, killing the whole group on timeout: the CLI's
    trial processes must not outlive the item. Returns (returncode or None, stdout, stderr)."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        try:  # a grandchild in a session of its own may still hold the pipes: wait a little
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = "", "(output lost: a process outside the group kept the pipes open)"
        return None, out, err


#: the fields of a trial that say whether its GPU path worked (the rest stays in the file)
TRIAL_FIELDS = (
    "device",
    "batch_size",
    "precision",
    "channels_last",
    "compile",
    "status",
    "samples_per_s",
    "measured_steps",
    "stopped_by",
    "peak_memory_bytes",
    "peak_memory_kind",
    "peak_allocated_bytes",
    "utilization",
    "power_w_mean",
    "energy_j",
    "compile_time_s",
    "setup_time_s",
    "error",
    "notes",
)


def slim(obj: Any) -> Any:
    """The JSON without its bulk (timelines, per-step times, long lists): the summary shows
    what a reader checks, and points at the file for the rest."""
    bulky = {"timeline", "step_times_s", "samples", "epochs", "environment", "hardware"}
    if isinstance(obj, dict):
        return {
            k: "…" if k in bulky and isinstance(v, (list, dict)) else slim(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        head = [slim(v) for v in obj[:12]]
        return head + ([f"… {len(obj) - 12} more"] if len(obj) > 12 else [])
    return obj


def digest(data: Any) -> Any:
    """A results JSON (or measure's trial list) cut to each trial's telling fields and the
    speedups; any other JSON slimmed as it is."""
    trials = _trials(data)
    if not trials:
        return slim(data)
    step = {"step_time_median_s": lambda t: (t.get("step_time_s") or {}).get("median")}
    rows = [
        {**{k: t.get(k) for k in TRIAL_FIELDS if k in t}, **{k: f(t) for k, f in step.items()}}
        for t in trials
    ]
    analysis = data.get("analysis") if isinstance(data.get("analysis"), dict) else {}
    extra = {k: analysis[k] for k in ("speedups", "best_vs_best") if analysis.get(k)}
    head = {k: data[k] for k in ("schema", "run_id") if k in data}
    return slim({**head, "trials": rows, **extra})


def read_json(path: Path | None) -> tuple[Any, str | None]:
    """(parsed JSON or None, its slimmed text for the summary or None)."""
    if path is None or not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"(unreadable: {exc})"
    text = json.dumps(digest(data), indent=1, default=str)
    if len(text) > JSON_CHARS:
        text = text[:JSON_CHARS] + f"\n… (truncated; whole file: {path})"
    return data, text


def missing_modules(item: Item) -> list[str]:
    """The item's required modules this interpreter cannot import."""
    return [m for m in item.requires if importlib.util.find_spec(m) is None]


def run_item(item: Item, out: Path, timeout_s: float) -> ItemResult:
    """Run one item, apply its checks, and say pass or fail (with every reason found)."""
    result = ItemResult(item.name, "fail", shown_command(item), why=item.why)
    missing = missing_modules(item)
    if missing:
        result.status = "skip"
        result.reason = f"not installed in {sys.executable}: {', '.join(missing)}"
        return result
    folder = out / item.name
    folder.mkdir(parents=True, exist_ok=True)
    cwd = REPO if item.in_repo else folder
    start = time.monotonic()
    code, stdout, stderr = run_process(full_argv(item), cwd, child_env(item), timeout_s)
    result.wall_s = time.monotonic() - start
    result.returncode = code
    (folder / "stdout.txt").write_text(stdout, encoding="utf-8")
    (folder / "stderr.txt").write_text(stderr, encoding="utf-8")
    json_path = folder / item.json_name if item.json_name else None
    data, result.json_text = read_json(json_path)
    result.json_path = str(json_path) if result.json_text else None
    result.stdout_tail = tail(stdout, STDOUT_TAIL_LINES)
    if code is None:
        result.problems.append(f"timed out after {timeout_s:.0f} s (process group killed)")
    elif code != 0:
        result.problems.append(f"exit status {code}")
    output = stdout + "\n" + stderr
    result.problems += [p for p in (check(output, data) for check in item.checks) if p]
    result.status = "fail" if result.problems else "pass"
    if result.status == "fail":
        result.stderr_tail = tail(stderr, STDERR_TAIL_LINES)
    return result


# ---------------------------------------------------------------- the summary


def _fence(text: str, lang: str = "") -> list[str]:
    """A fenced block that survives backticks inside the text."""
    ticks = "````" if "```" in text else "```"
    return [f"{ticks}{lang}", text.rstrip() or "(nothing)", ticks]


def render_item(r: ItemResult) -> list[str]:
    """One item's section: status, time, command, and what it printed or wrote."""
    wall = f"{r.wall_s:.1f} s" if r.wall_s is not None else "—"
    lines = [f"## {r.name}: {r.status.upper()}", "", f"{r.why}", ""]
    lines += [f"- wall time: {wall}", f"- command: `{r.command}`"]
    if r.returncode is not None:
        lines.append(f"- exit status: {r.returncode}")
    if r.reason:
        lines.append(f"- skipped: {r.reason}")
    lines += [f"- problem: {p}" for p in r.problems]
    lines.append("")
    if r.status == "skip":
        return lines
    lines += ["Output (tail):", "", *_fence(r.stdout_tail), ""]
    if r.status == "fail":
        lines += ["stderr (last lines):", "", *_fence(r.stderr_tail), ""]
    if r.json_text is not None:
        lines += [f"JSON (`{r.json_path}`, its telling fields):", ""]
        lines += [*_fence(r.json_text, "json"), ""]
    return lines


def render_summary(results: Sequence[ItemResult], header: dict[str, str]) -> str:
    """The whole ``summary.md``: the machine, a one-line-per-item table, then each item."""
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    lines = ["# batchscope GPU check", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [
        f"- result: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped",
        "",
        "| item | status | wall time | note |",
        "|---|---|---|---|",
    ]
    for r in results:
        wall = f"{r.wall_s:.1f} s" if r.wall_s is not None else "—"
        note = r.reason or (r.problems[0] if r.problems else "")
        lines.append(f"| {r.name} | {r.status} | {wall} | {note.replace('|', '/')} |")
    lines.append("")
    for r in results:
        lines += render_item(r)
    return "\n".join(lines).rstrip() + "\n"


#: the distributions whose versions the summary records (a lent machine has its own python)
PACKAGES = ("typer", "rich", "nvidia-ml-py", "psutil", "torchvision", "fastai", "keras")


def package_versions() -> str:
    """``name version`` of each of PACKAGES, ``name missing`` where absent: a failure that is
    an environment difference (another typer, no fastai) shows at a glance."""
    from importlib import metadata

    parts = []
    for name in PACKAGES:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} missing")
    return ", ".join(parts)


def machine_header() -> dict[str, str]:
    """What the summary says about where it ran (torch is imported by now: a GPU is there)."""
    import torch

    props = torch.cuda.get_device_properties(0)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "started (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "GPU": f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()}×",
        "torch": f"{torch.__version__} (CUDA {torch.version.cuda})",
        "python": f"{sys.version.split()[0]} ({sys.executable})",
        "packages": package_versions(),
        "CPU cores": str(os.cpu_count()),
        "checkout": f"{REPO} {commit or '(no git)'}",
    }


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options: where to write, which items, how long in all."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="output folder (default gpu-check-results/<UTC>/)")
    p.add_argument("--only", help="comma list of item names to run (see --list)")
    p.add_argument("--list", action="store_true", help="print the items and exit")
    p.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="total seconds; items not started by then are skipped (default %(default)s)",
    )
    return p.parse_args(argv)


def select(items: list[Item], only: str | None) -> list[Item]:
    """The items named by --only (in run order), all without it; an unknown name is an error."""
    if not only:
        return items
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    unknown = sorted(set(wanted) - {i.name for i in items})
    if unknown:
        raise SystemExit(f"gpu-check: unknown item(s) {unknown}; --list names them")
    return [i for i in items if i.name in wanted]


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (the one torch import of this process)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def run_all(items: list[Item], out: Path, budget_s: float) -> list[ItemResult]:
    """Run the items in order, rewriting summary.md after each; skip the rest once the
    budget is spent, and cut each item's timeout to what is left of it."""
    header = machine_header()
    header["output folder"] = str(out)
    results: list[ItemResult] = []
    start = time.monotonic()
    summary = out / "summary.md"
    for n, item in enumerate(items, 1):
        left = budget_s - (time.monotonic() - start)
        if left <= 5:
            r = ItemResult(item.name, "skip", shown_command(item), why=item.why)
            r.reason = f"--budget-s {budget_s:.0f} spent before it started"
        else:
            r = run_item(item, out, timeout_s=min(item.timeout_s, left))
        results.append(r)
        wall = f"{r.wall_s:6.1f} s" if r.wall_s is not None else "      —"
        detail = r.reason or "; ".join(r.problems)
        print(f"[{n:2}/{len(items)}] {r.status.upper():4} {wall}  {item.name}  {detail}".rstrip())
        summary.write_text(render_summary(results, header), encoding="utf-8")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """List, or check for a GPU and run the items; 1 if any failed."""
    args = parse_args(argv)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or REPO / "gpu-check-results" / stamp).resolve()
    items = select(build_items(out), args.only)
    if args.list:
        for item in items:
            print(f"{item.name:15} {item.timeout_s:4.0f} s  {item.why}")
        return 0
    if not cuda_available():
        print(NO_GPU_LINE)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    print(f"gpu-check: {len(items)} items, budget {args.budget_s:.0f} s; summary: {out}/summary.md")
    results = run_all(items, out, args.budget_s)
    failed = [r.name for r in results if r.status == "fail"]
    skipped = [r.name for r in results if r.status == "skip"]
    print(f"gpu-check: summary in {out / 'summary.md'}")
    passed = len(results) - len(failed) - len(skipped)
    said = [f"{passed} passed", f"{len(failed)} failed", f"{len(skipped)} skipped"]
    said[1] += f" ({', '.join(failed)})" if failed else ""
    said[2] += f" ({', '.join(skipped)})" if skipped else ""
    print("gpu-check: " + ", ".join(said))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
