"""The public API: ``__all__`` is complete and resolvable, and importing is fast (no torch)."""

from __future__ import annotations

import batchscope
from conftest import run_python


def test_all_names_resolve() -> None:
    for name in batchscope.__all__:
        assert getattr(batchscope, name) is not None, name


def test_all_is_unique_and_matches_what_is_exported() -> None:
    assert len(set(batchscope.__all__)) == len(batchscope.__all__)
    # every lazily exported name is public, and every public name is exported
    assert set(batchscope._LAZY) | {"__version__"} == set(batchscope.__all__)


def test_public_names_have_public_modules() -> None:
    for name in batchscope.__all__:
        value = getattr(batchscope, name)
        module = getattr(value, "__module__", None)
        if module is not None:  # __version__ is a str
            assert module.startswith("batchscope"), (name, module)


def test_dir_lists_the_public_api() -> None:
    assert set(batchscope.__all__) <= set(dir(batchscope))


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        batchscope.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("batchscope.no_such_name did not raise")


def test_core_types_are_the_real_ones() -> None:
    from batchscope.core.plan import Plan
    from batchscope.core.results import RunResult
    from batchscope.errors import BatchscopeError
    from batchscope.workloads import Workload

    assert batchscope.Plan is Plan
    assert batchscope.RunResult is RunResult
    assert batchscope.Workload is Workload
    assert batchscope.BatchscopeError is BatchscopeError
    assert callable(batchscope.sweep) and callable(batchscope.run_sweep)


def test_sweep_stays_the_function_when_its_module_is_imported() -> None:
    # importing the submodule of the same name must not replace the one-call API
    import importlib

    module = importlib.import_module("batchscope.run.sweep")
    from batchscope.run.sweep import run_sweep  # noqa: F401

    assert batchscope.sweep is module.sweep
    assert batchscope.run_sweep is module.run_sweep


NO_TORCH = "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"


def test_import_batchscope_does_not_import_torch() -> None:
    code, out, err = run_python(f"import sys, batchscope\n{NO_TORCH}\nprint('ok')")
    assert code == 0, err
    assert out.strip() == "ok"


def test_help_does_not_import_torch() -> None:
    script = f"""
import sys
from batchscope.cli import main as cli
try:
    cli.main(["--help"])
except SystemExit as stop:
    assert stop.code in (0, None), stop.code
{NO_TORCH}
print("ok")
"""
    code, out, err = run_python(script)
    assert code == 0, err
    assert "sweep" in out  # the help was printed
    assert out.rstrip().endswith("ok")


def test_sweep_help_does_not_import_torch() -> None:
    script = f"""
import sys
from batchscope.cli import main as cli
try:
    cli.main(["sweep", "--help"])
except SystemExit as stop:
    assert stop.code in (0, None), stop.code
{NO_TORCH}
print("ok")
"""
    code, out, err = run_python(script)
    assert code == 0, err
    assert "--batch-sizes" in out
    assert out.rstrip().endswith("ok")
