"""``batchscope peak`` end to end: one real measurement in a child, the cache, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchscope.cli.main import main
from conftest import run_cli


def test_peak_json_measures_once_then_reads_the_cache(tmp_path: Path) -> None:
    code, out, err = run_cli(
        "peak", "--min-run-time", "0.02", "--store", "s.db", "--json", "-", "-q", cwd=tmp_path
    )
    assert code == 0, err
    data = json.loads(out)  # stdout is exactly the JSON; the summary went to stderr
    assert data["cached"] is False and data["device"] == "cpu" and data["threads"] >= 1
    assert 0 < data["flops_per_s_low"] <= data["flops_per_s"] <= data["flops_per_s_high"]
    assert data["copy_bytes_per_s"] > 0 and len(data["sizes"]) == 4
    assert "cpu fp32 matmul peak: " in err and "copy bandwidth: " in err
    code, out, err = run_cli("peak", "--store", "s.db", cwd=tmp_path)
    assert code == 0, err
    assert "cpu fp32 matmul peak: " in out and "from the cache" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--device", "tpu"), "unknown device 'tpu': use cpu, cuda, cuda:N or mps"),
        (("--dtype", "int8"), "unknown dtype 'int8': use fp32, bf16, fp16"),
        (("--store", "s.db", "--no-store"), "--store and --no-store contradict each other"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...], message: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["peak", *args])
    out, err = capsys.readouterr()
    assert done.value.code == 2 and out == ""
    assert err.strip().splitlines() == [f"batchscope: error: {message}"]


def test_the_childs_user_error_comes_back_as_the_same_one_line_error() -> None:
    from batchscope.errors import DeviceError
    from batchscope.run.peak_cache import measure_in_child

    # "tpu" fails in the child before torch is imported: cheap, and the same path an
    # absent GPU or an unsupported dtype takes
    with pytest.raises(DeviceError, match=r"^unknown device 'tpu': use cpu, cuda, cuda:N or mps$"):
        measure_in_child("tpu")


def test_the_help_says_what_it_measures_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["peak", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "<bool>" not in out
    assert "MFU" in out and "blocked_autorange" in out and "--refresh" in out
