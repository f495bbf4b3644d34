"""Small helpers several commands share: threads, workload options, devices, the store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from batchscope.errors import UsageError


def default_threads() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def given_params(ctx: typer.Context) -> set[str]:
    """The parameters the user typed (not defaults): what a resume must check.

    Compared by the enum member's name: typer vendors its own click, whose
    ``ParameterSource`` is not click's.
    """
    typed = {"COMMANDLINE", "ENVIRONMENT"}
    return {
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", None) in typed
    }


#: the built-in workloads that read --image-size
IMAGE_SIZE_WORKLOADS = ("resnet18",)
#: the built-in workloads with a sequence: they read --seq-lens, --layers, --width, --heads
SEQUENCE_WORKLOADS = ("gpt",)


def check_sequence_workload(workload: str | None, flags: list[str]) -> None:
    """Refuse sequence/transformer flags for a built-in workload that has none.

    A ``module:function`` workload may have a sequence (``Workload.seq_len``): the probe
    decides for it. ``workload`` None (a resumed run): the stored plan decides.
    """
    if not flags or workload is None or ":" in workload or workload in SEQUENCE_WORKLOADS:
        return
    raise UsageError(
        f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} for sequence workloads "
        f"({', '.join(SEQUENCE_WORKLOADS)}): {workload!r} has no sequence"
    )


def workload_options(
    data: str | None,
    weights: str | None,
    images: int | None,
    seed: int,
    image_size: int | None = None,
    workload: str | None = None,
    model_size: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """The workload's options as plain JSON; ``--image-size`` and a transformer's size
    (``model_size``: ``layers``, ``width``, ``heads`` for gpt) travel in ``extra``."""
    from batchscope.workloads import WorkloadOptions

    if data is not None:
        data = str(Path(data).expanduser())
    if weights is not None:
        weights = str(Path(weights).expanduser())
    extra: dict[str, Any] = {}
    if image_size is not None:
        if workload is not None and workload not in IMAGE_SIZE_WORKLOADS:
            raise UsageError(
                f"--image-size is for {', '.join(IMAGE_SIZE_WORKLOADS)}; "
                f"{workload!r} sets its own input size"
            )
        extra["image_size"] = image_size
    sizes = {k: v for k, v in (model_size or {}).items() if v is not None}
    check_sequence_workload(workload, [f"--{k}" for k in sizes])
    extra.update(sizes)
    return WorkloadOptions(
        data=data, weights=weights, images=images, seed=seed, extra=extra
    ).to_dict()


def resolve_devices(text: str, available: list[str]) -> list[str]:
    from batchscope.core.plan import parse_devices

    return parse_devices(text, available)  # "best": the fastest device present


def open_store(store_path: str | None, no_store: bool) -> Any:
    from batchscope.run.store import DEFAULT_STORE, Store

    if no_store:
        return None
    if store_path:
        return Store(Path(store_path).expanduser())
    return Store(DEFAULT_STORE, create_parent=True)


def store_for_reading(store_path: str | None) -> Any:
    """The store opened read-only: a store the user may read but not write still reads."""
    from batchscope.run.store import DEFAULT_STORE, Store

    path: Path = Path(store_path).expanduser() if store_path else Path(DEFAULT_STORE)
    if not path.exists():
        raise UsageError(f"no results store at {str(path)!r}: run a sweep first, or give --store")
    return Store(path, readonly=True)
