"""``batchscope maxbs`` vs Lightning's batch-size finder, on the same task and budget.

Run by hand (not part of the tests; Lightning is not a dependency)::

    .venv/bin/pip install "pytorch-lightning==2.6.6" "torch==2.14.1"
    .venv/bin/python benchmarks/maxbs_vs_lightning.py --json /tmp/maxbs_vs_lightning.json

The task: ResNet-18 with a 2-class head on the built-in 192×192 photo crops
(``batchscope.workloads.resnet18.build``, 600 images → 480 train / 120 validation),
Adam(lr=1e-3), cross-entropy, CPU, a 4 GiB memory budget, ``torch.set_num_threads(2)``.

* batchscope: ``batchscope maxbs resnet18 --device cpu --memory-limit 4GiB`` (its
  default attempt: 2 training steps — the peak comes once Adam's state exists — + 1
  validation step, each in a fresh process judged on its measured peak memory: growth of
  resident memory over the post-setup baseline; the answer verified once unless the
  boundary looks unrepeatable).
* Lightning: ``Tuner(trainer).scale_batch_size(model, mode="binsearch")`` with its
  defaults (init_val=2, steps_per_trial=3, max_trials=25, margin=0.05), in ONE child
  process, as Lightning runs it. On the CPU nothing fails unless memory is capped, so
  the budget is enforced the way batchscope's hard stop works: after the model, data
  and Trainer are built (torch, Lightning and the data already mapped), the child sets
  ``RLIMIT_AS`` to its current virtual size + 4 GiB. An allocation beyond that raises
  torch's "DefaultCPUAllocator: can't allocate memory", which Lightning recognises as
  an OOM. The child runs with ``MALLOC_MMAP_THRESHOLD_=65536``, as batchscope's CPU
  children do under a memory limit, so freed memory leaves the address space.

``--batchscope-lightning`` also runs ``batchscope maxbs --lightning
benchmarks/maxbs_vs_lightning.py:make_lightning`` — the search on the very
LightningModule the finder scales (its own loaders read ``self.batch_size``), each
attempt a Trainer fit of 2 steps and 1 validation batch in a fresh process — so the
two finders answer on one module. A small configuration that takes minutes, not the
full comparison's 20 (``--skip-batchscope`` leaves out the engine's search)::

    python benchmarks/maxbs_vs_lightning.py --image-size 32 --budget 268435456 \
        --skip-batchscope --batchscope-lightning --json /tmp/small.json

Afterwards each answer is re-run in a fresh process with batchscope's criterion (3 steps
— one more than a maxbs attempt, so a stricter check — + 1 validation step, peak memory
≤ 4 GiB) to say whether it runs
within the budget; ``--check-cap`` also re-runs each under Lightning's criterion (a
fresh Lightning fit of 3 steps under the same address-space cap).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
GiB = 1024**3
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


# ---------------------------------------------------------------- the Lightning side


def _lightning_module(images: int, image_size: int, batch_size: int, threads: int) -> Any:
    """The LightningModule both finders search (its own loaders read ``self.batch_size``)."""
    import pytorch_lightning as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from batchscope.workloads import WorkloadOptions
    from batchscope.workloads.resnet18 import build

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    workload = build(WorkloadOptions(images=images, seed=0, extra={"image_size": image_size}))

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.batch_size = batch_size
            self.model = workload.model()
            self.loss = nn.CrossEntropyLoss()
            self.val_batches = 0
            self.train_batches = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            self.train_batches += 1
            x, y = batch
            return self.loss(self(x), y)

        def validation_step(self, batch: Any, _: int) -> None:
            self.val_batches += 1
            x, y = batch
            self.loss(self(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(workload.train_dataset, batch_size=self.batch_size, shuffle=True)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(workload.val_dataset, batch_size=self.batch_size)

    return Module()


def make_lightning(batch_size: int) -> Any:
    """``batchscope maxbs --lightning benchmarks/maxbs_vs_lightning.py:make_lightning``: the
    same module; the task's size comes from the environment the benchmark sets."""
    return _lightning_module(
        int(os.environ["MAXBS_IMAGES"]),
        int(os.environ["MAXBS_IMAGE_SIZE"]),
        batch_size,
        int(os.environ["MAXBS_THREADS"]),
    )


def _lightning_setup(images: int, image_size: int, batch_size: int, threads: int) -> Any:
    import pytorch_lightning as pl

    module = _lightning_module(images, image_size, batch_size, threads)
    root = tempfile.mkdtemp(prefix="lightning-maxbs-")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    return module, trainer


def _cap_address_space(budget: int) -> int:
    import resource

    import psutil

    mapped = psutil.Process().memory_info().vms
    cap = mapped + budget
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return int(mapped)


def lightning_child(args: argparse.Namespace) -> dict[str, Any]:
    """In the child: Lightning's binsearch under the address-space cap."""
    import logging

    from pytorch_lightning.tuner import Tuner
    from pytorch_lightning.tuner import batch_size_scaling as bss

    model, trainer = _lightning_setup(args.images, args.image_size, 2, args.threads)
    attempts: list[dict[str, Any]] = []
    original = bss._try_loop_run

    def counted(trainer_: Any, params: Any) -> None:  # records each attempt, changes nothing
        module = trainer_.lightning_module
        size = module.batch_size
        steps, vals = module.train_batches, module.val_batches
        start = time.perf_counter()
        try:
            original(trainer_, params)
        except BaseException as exc:
            attempts.append(
                {
                    "batch_size": size,
                    "outcome": "oom" if bss.is_oom_error(exc) else type(exc).__name__,
                    "error": str(exc).splitlines()[0][:200] if str(exc) else "",
                    "seconds": time.perf_counter() - start,
                    "training_steps": module.train_batches - steps,
                    "validation_batches": module.val_batches - vals,
                }
            )
            raise
        attempts.append(
            {
                "batch_size": size,
                "outcome": "ok",
                "seconds": time.perf_counter() - start,
                "training_steps": module.train_batches - steps,
                "validation_batches": module.val_batches - vals,
            }
        )

    bss._try_loop_run = counted
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    for name in ("pytorch_lightning", "lightning.pytorch"):
        logging.getLogger(name).addHandler(Keep())
        logging.getLogger(name).setLevel(logging.INFO)
    mapped = _cap_address_space(args.budget)
    start = time.perf_counter()
    error = None
    answer = None
    try:
        answer = Tuner(trainer).scale_batch_size(model, mode="binsearch")
    except BaseException as exc:  # a crash of the finder is a result too
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    seconds = time.perf_counter() - start
    before_margin = None
    for message in messages:
        if message.startswith("Applying margin"):
            # "Applying margin of 5.0%, reducing batch size from X to Y"
            before_margin = int(message.split("from ")[1].split(" to ")[0])
    return {
        "answer": answer,
        "answer_before_margin": before_margin,
        "attempts": attempts,
        "seconds": seconds,
        "mapped_before_cap_bytes": mapped,
        "error": error,
        "val_batches_run": model.val_batches,
    }


def lightning_check_child(args: argparse.Namespace) -> dict[str, Any]:
    """In the child: does a fresh Lightning fit of 3 steps at one size survive the cap?"""
    model, trainer = _lightning_setup(args.images, args.image_size, args.batch_size, args.threads)
    trainer.fit_loop.epoch_loop.max_steps = 3
    trainer.limit_val_batches = 1
    _cap_address_space(args.budget)
    start = time.perf_counter()
    try:
        trainer.fit(model)
        outcome = f"ok ({model.train_batches} training steps, {model.val_batches} validation)"
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return {"outcome": outcome, "seconds": time.perf_counter() - start}


def _run_child(mode: str, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(MALLOC_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [
        sys.executable, str(HERE), mode, "--out", out, "--images", str(args.images),
        "--image-size", str(args.image_size), "--threads", str(args.threads),
        "--budget", str(args.budget), *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    try:
        return dict(json.loads(Path(out).read_text()))
    except (OSError, ValueError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"child exited {proc.returncode}: {' | '.join(tail)}"}
    finally:
        Path(out).unlink(missing_ok=True)


# ---------------------------------------------------------------- the batchscope side


def run_batchscope(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "maxbs.json"
        cmd = [
            sys.executable, "-m", "batchscope", "maxbs", "resnet18", "--device", "cpu",
            "--memory-limit", str(args.budget), "--threads", str(args.threads),
            "--images", str(args.images), "--json", str(out), "-q",
        ]  # fmt: skip
        if args.image_size != 192:  # the CLI has no image-size flag: the same call, by API
            options = {"images": args.images, "seed": 0, "extra": {"image_size": args.image_size}}
            cmd = [
                sys.executable, "-c",
                "import json, sys; from batchscope import find_max_batch_size as f; "
                f"r = f('resnet18', memory_limit_bytes={args.budget}, threads={args.threads}, "
                f"workload_options={options!r}); "
                "open(sys.argv[1], 'w').write(json.dumps(r.to_dict()))",
                str(out),
            ]  # fmt: skip
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p
        )
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-500:], "seconds": seconds}
        data = json.loads(out.read_text())
        print(proc.stdout, file=sys.stderr)
    return {
        "answer": data["max_batch_size"],
        "attempts": [
            {
                "batch_size": t["batch_size"],
                "outcome": "ok" if t["fits"] else t["status"],
                "reason": t["reason"],
                "peak_memory_bytes": t["peak_memory_bytes"],
                "seconds": t["seconds"],
            }
            for t in data["trials"]
        ],
        "seconds": seconds,  # the whole command, process start to exit
        "search_seconds": data["seconds"],
        "memory_fit": data["memory_fit"],
    }


def run_batchscope_lightning(args: argparse.Namespace) -> dict[str, Any]:
    """``batchscope maxbs --lightning`` on the very module Lightning's finder searches."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "maxbs.json"
        cmd = [
            sys.executable, "-m", "batchscope", "maxbs", "--lightning",
            f"{HERE}:make_lightning", "--device", "cpu", "--memory-limit", str(args.budget),
            "--threads", str(args.threads), "--json", str(out), "-q",
        ]  # fmt: skip
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p
        )
        env.update(
            MAXBS_IMAGES=str(args.images),
            MAXBS_IMAGE_SIZE=str(args.image_size),
            MAXBS_THREADS=str(args.threads),
        )
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-500:], "seconds": seconds}
        data = json.loads(out.read_text())
        print(proc.stdout, file=sys.stderr)
    return {
        "answer": data["max_batch_size"],
        "attempts": [
            {
                "batch_size": t["batch_size"],
                "outcome": "ok" if t["fits"] else t["status"],
                "reason": t["reason"],
                "peak_memory_bytes": t["peak_memory_bytes"],
                "seconds": t["seconds"],
            }
            for t in data["trials"]
        ],
        "seconds": seconds,
        "search_seconds": data["seconds"],
        "memory_fit": data["memory_fit"],
        "smallest_failure": data["smallest_failure"],
        "limited_by": data["limited_by"],
    }


def check_under_peak_budget(batch_size: int, args: argparse.Namespace) -> dict[str, Any]:
    """batchscope's criterion, in a fresh process: 3 steps + 1 validation step, peak ≤ budget."""
    from batchscope.core.plan import TrialSpec
    from batchscope.run.isolation import run_isolated

    spec = TrialSpec(
        workload="resnet18",
        workload_options={
            "data": None,
            "weights": None,
            "images": args.images,
            "seed": 0,
            "extra": {"image_size": args.image_size},
        },
        device="cpu",
        batch_size=batch_size,
        steps=3,
        warmup=0,
        threads=args.threads,
        validation_steps=1,
        memory_limit_bytes=args.budget,
    )
    start = time.perf_counter()
    trial = run_isolated(spec)
    return {
        "batch_size": batch_size,
        "status": trial.status,
        "peak_memory_bytes": trial.peak_memory_bytes,
        "error": trial.error,
        "seconds": time.perf_counter() - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="compare")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=int, default=4 * GiB)
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", default=None, help="write every figure here")
    parser.add_argument("--skip-batchscope", action="store_true")
    parser.add_argument("--skip-lightning", action="store_true")
    parser.add_argument(
        "--batchscope-lightning",
        action="store_true",
        help="also run 'batchscope maxbs --lightning' on the module Lightning's finder searches",
    )
    parser.add_argument("--check-cap", action="store_true")
    parser.add_argument("--skip-checks", action="store_true", help="do not re-run the answers")
    args = parser.parse_args()

    if args.mode in ("_lightning", "_lightning_check"):
        fn = lightning_child if args.mode == "_lightning" else lightning_check_child
        Path(args.out).write_text(json.dumps(fn(args)))
        return 0

    report: dict[str, Any] = {
        "task": {
            "workload": "resnet18 (2-class head)",
            "images": args.images,
            "image_size": args.image_size,
            "budget_bytes": args.budget,
            "threads": args.threads,
        }
    }
    if not args.skip_batchscope:
        print("batchscope maxbs …", file=sys.stderr, flush=True)
        report["batchscope"] = run_batchscope(args)
        print(json.dumps(report["batchscope"], indent=1), file=sys.stderr, flush=True)
    if args.batchscope_lightning:
        print("batchscope maxbs --lightning …", file=sys.stderr, flush=True)
        report["batchscope_lightning"] = run_batchscope_lightning(args)
        print(json.dumps(report["batchscope_lightning"], indent=1), file=sys.stderr, flush=True)
    if not args.skip_lightning:
        print("Lightning scale_batch_size(mode='binsearch') …", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = _run_child("_lightning", args, [])
        result["seconds_with_process"] = time.perf_counter() - start
        report["lightning"] = result
        print(json.dumps(result, indent=1), file=sys.stderr, flush=True)

    # does each answer run? (fresh processes)
    checks: dict[str, Any] = {}
    for who in () if args.skip_checks else ("batchscope", "batchscope_lightning", "lightning"):
        answers = report.get(who, {})
        for key in ("answer", "answer_before_margin"):
            size = answers.get(key)
            if not size or f"{size}" in checks:
                continue
            print(f"checking batch size {size} ({who} {key}) …", file=sys.stderr, flush=True)
            entry: dict[str, Any] = {"peak_budget": check_under_peak_budget(size, args)}
            if args.check_cap:
                entry["address_space_cap"] = _run_child(
                    "_lightning_check", args, ["--batch-size", str(size)]
                )
            checks[f"{size}"] = entry
            print(json.dumps(entry), file=sys.stderr, flush=True)
    report["checks"] = checks
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
