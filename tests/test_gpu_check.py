"""benchmarks/gpu_check.py, the one-call GPU check, tested where there is no GPU.

Its items only ever run on a lent GPU machine, so what can go wrong before then is
checked here: it is harmless without a GPU, ``--list`` is quick, the summary renders
every outcome, the runner judges exit status, timeouts and checks, and every item's
``batchscope`` command parses with the CLI as it is now (a renamed flag fails here,
not in the few minutes a GPU is lent).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import cli_env

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load() -> ModuleType:
    """The script as a module (benchmarks/ is no package); registered so dataclasses work."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


gc = _load()
ITEMS = gc.build_items(Path("/nonexistent/gpu-check-out"))
CLI_ITEMS = [i for i in ITEMS if i.kind == "cli"]


def _script(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ---------------------------------------------------------------- the script as a user runs it


def test_without_a_gpu_it_prints_one_line_and_exits_0(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the script would run the whole check")
    proc = _script("--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [gc.NO_GPU_LINE]
    assert not (tmp_path / "out").exists()  # nothing is written without a GPU


def test_list_names_every_item_without_importing_torch() -> None:
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{str(SCRIPT)!r}, '--list']\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch imported by --list'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines()]
    assert listed == [i.name for i in ITEMS]
    for name in ("sweep-cuda-cpu", "precision", "channels-last", "compile", "maxbs", "watch"):
        assert name in listed
    for name in ("fastai", "keras", "measure", "peak", "pytest-gpu"):
        assert name in listed


def test_only_picks_items_in_run_order_and_refuses_unknown_names() -> None:
    assert [i.name for i in gc.select(ITEMS, "watch,maxbs")] == ["maxbs", "watch"]
    assert gc.select(ITEMS, None) == ITEMS
    with pytest.raises(SystemExit, match="unknown item"):
        gc.select(ITEMS, "maxbs,no-such-item")


# ---------------------------------------------------------------- the items' commands


def _batchscope_command() -> Any:
    """The click command behind ``batchscope`` (importing main registers every command)."""
    import typer.main

    from batchscope.cli import main as cli_main

    return typer.main.get_command(cli_main.app)


@pytest.mark.parametrize("item", CLI_ITEMS, ids=[i.name for i in CLI_ITEMS])
def test_each_items_command_parses_with_the_cli(item: Any) -> None:
    """Every option is one the command has and every value converts (no command runs:
    make_context only parses)."""
    group = _batchscope_command()
    name, *args = item.argv
    command = group.commands.get(name)
    assert command is not None, f"batchscope has no command {name!r}"
    ctx = command.make_context(name, list(args))
    assert ctx.params, name


SWEEPS = [i for i in CLI_ITEMS if i.argv[0] == "sweep"]


@pytest.mark.parametrize("item", SWEEPS, ids=[i.name for i in SWEEPS])
def test_each_sweep_passes_the_sweeps_own_validation(item: Any, tmp_path: Path) -> None:
    """Past the parser: the checks ``sweep`` makes before it runs anything (options that
    contradict each other, --fit, durations, batch sizes, devices as on a 1-GPU machine)."""
    from batchscope.cli.common import given_params
    from batchscope.cli.request import build_sweep_request
    from batchscope.core.plan import parse_batch_sizes, parse_devices
    from batchscope.units import parse_duration

    item = next(i for i in gc.build_items(tmp_path) if i.name == item.name)
    (tmp_path / item.name).mkdir()
    sweep = _batchscope_command().commands["sweep"]
    ctx = sweep.make_context("sweep", list(item.argv[1:]))
    request = build_sweep_request(ctx.params, given_params(ctx))
    assert parse_batch_sizes(request.batch_sizes)
    assert "cuda:0" in parse_devices(request.devices, ["cpu", "cuda:0"])
    if ctx.params.get("max_time"):
        assert parse_duration(ctx.params["max_time"]) > 0


def test_maxbs_budget_parses() -> None:
    from batchscope.units import parse_bytes

    (item,) = [i for i in CLI_ITEMS if i.argv[0] == "maxbs"]
    limit = item.argv[item.argv.index("--memory-limit") + 1]
    assert parse_bytes(limit) == 4 * 2**30


def test_the_flag_check_catches_a_renamed_flag() -> None:
    group = _batchscope_command()
    with pytest.raises(Exception, match="No such option"):
        group.commands["sweep"].make_context("sweep", ["resnet18", "--rounds", "2"])


def test_every_item_writes_inside_its_output_folder_and_has_a_time_limit(tmp_path: Path) -> None:
    for item in gc.build_items(tmp_path):
        assert 0 < item.timeout_s <= 300, item.name
        paths = [a for a in item.argv if a.startswith("/") and not a.startswith(sys.executable)]
        outside = [p for p in paths if not (p.startswith(str(tmp_path)) or "examples" in p)]
        assert not outside, (item.name, outside)
        if item.kind == "cli" and item.argv[0] in ("sweep", "peak"):
            assert "--store" in item.argv, item.name  # never the user's store


# ---------------------------------------------------------------- running and judging


def test_an_item_passes_when_it_exits_0_and_its_checks_hold(tmp_path: Path) -> None:
    code = (
        "import json; print('cuda:0 ran 9× faster than cpu')\n"
        "json.dump({'trials': [{'device': 'cuda:0', 'status': 'ok'}]}, open('r.json', 'w'))"
    )
    item = gc.Item(
        "fake",
        "a fake item",
        "python",
        ("-c", code),
        timeout_s=30,
        json_name="r.json",
        checks=(gc.stdout_matches(r"faster than cpu", "speedup"), gc.trials_ok(1)),
    )
    r = gc.run_item(item, tmp_path, timeout_s=30)
    assert r.status == "pass", r.problems
    assert r.json_text is not None and "cuda:0" in r.json_text
    assert (tmp_path / "fake" / "stdout.txt").read_text().startswith("cuda:0 ran")


def test_an_item_fails_on_a_timeout_a_bad_exit_or_a_failed_check(tmp_path: Path) -> None:
    slow = gc.Item("slow", "sleeps", "python", ("-c", "import time; time.sleep(30)"), 1)
    r = gc.run_item(slow, tmp_path, timeout_s=1)
    assert r.status == "fail" and r.wall_s < 20 and "timed out" in r.problems[0]
    crash = gc.Item(
        "crash", "raises", "python", ("-c", "raise SystemExit('boom')"), 30, checks=(gc.has_json(),)
    )
    r = gc.run_item(crash, tmp_path, timeout_s=30)
    assert r.status == "fail" and r.returncode == 1 and "boom" in r.stderr_tail
    assert any("no JSON" in p for p in r.problems)
    needs = gc.Item("needs", "x", "python", ("-c", "pass"), 30, requires=("no_such_module_xyz",))
    r = gc.run_item(needs, tmp_path, timeout_s=30)
    assert r.status == "skip" and "no_such_module_xyz" in r.reason


def test_the_checks_read_results_json() -> None:
    data = {
        "trials": [
            {"device": "cuda:0", "status": "ok", "precision": "bf16", "compile_time_s": 3.0},
            {"device": "cpu", "status": "oom", "precision": "fp32", "error": "out of memory"},
        ],
        "summary": {"gpu_power_w_mean": 300.0, "gpu_energy_j": None},
    }
    assert "cpu b=None fp32: oom out of memory" in gc.trials_ok(2)("", data)
    assert "at least 3" in gc.trials_ok(3)("", data)
    assert gc.trials_cover("device", ["cuda", "cpu"])("", data) is None
    assert "fp16" in gc.trials_cover("precision", ["fp16"])("", data)
    assert "compile_time_s" in gc.trials_set("compile_time_s")("", data)
    assert gc.json_set("summary.gpu_power_w_mean")("", data) is None
    assert "summary.gpu_energy_j" in gc.json_set("summary.gpu_energy_j")("", data)


# ---------------------------------------------------------------- the summary


def _fake_results() -> list[Any]:
    ok = gc.ItemResult(
        "sweep-cuda-cpu",
        "pass",
        "batchscope sweep resnet18 --devices cuda,cpu",
        why="both devices",
        wall_s=93.25,
        returncode=0,
        stdout_tail="| 16 | 1.2 ms | ok |\ncuda:0 ran 41× faster than cpu at b=16 (per sample)",
        json_text='{"trials": []}',
        json_path="/out/sweep-cuda-cpu/results.json",
    )
    bad = gc.ItemResult(
        "maxbs",
        "fail",
        "batchscope maxbs resnet18 --device cuda",
        why="budget",
        wall_s=12.0,
        returncode=1,
        stdout_tail="",
        stderr_tail="Traceback (most recent call last):\nRuntimeError: CUDA error | ```",
        problems=["exit status 1", "no JSON was written (or it does not parse)"],
    )
    skipped = gc.ItemResult(
        "fastai", "skip", "batchscope sweep --fastai x", why="fastai", reason="not installed"
    )
    return [ok, bad, skipped]


def test_the_summary_renders_pass_fail_and_skip() -> None:
    md = gc.render_summary(_fake_results(), {"GPU": "NVIDIA H200, 140 GiB, 1×"})
    assert md.startswith("# batchscope GPU check\n")
    assert "- GPU: NVIDIA H200, 140 GiB, 1×" in md
    assert "- result: 1 passed, 1 failed, 1 skipped" in md
    assert "| sweep-cuda-cpu | pass | 93.2 s |  |" in md
    assert "| maxbs | fail | 12.0 s | exit status 1 |" in md
    assert "| fastai | skip | — | not installed |" in md
    ok, bad, skipped = md.split("\n## ")[1:]
    assert ok.startswith("sweep-cuda-cpu: PASS")
    assert "`batchscope sweep resnet18 --devices cuda,cpu`" in ok
    assert "cuda:0 ran 41× faster" in ok and "/out/sweep-cuda-cpu/results.json" in ok
    assert "stderr" not in ok  # only a failure shows stderr
    assert bad.startswith("maxbs: FAIL") and "- problem: no JSON was written" in bad
    assert "````\nTraceback" in bad  # a fence longer than the backticks inside
    assert "RuntimeError: CUDA error" in bad
    assert skipped.startswith("fastai: SKIP") and "- skipped: not installed" in skipped
    assert "Output" not in skipped
