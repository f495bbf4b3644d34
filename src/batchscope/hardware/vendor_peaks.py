"""Vendor datasheet peaks of common NVIDIA GPUs: dense, for comparison only.

batchscope measures a device's peak (:mod:`batchscope.hardware.peak`) and computes
every MFU against that measured figure. The datasheet figure is printed beside it, never
instead of it: clocks, power limits, cooling and the libraries decide what a given card
reaches, and a datasheet cannot know them.

Figures are in FLOP/s, dense (without the 2:4 structured-sparsity doubling that the
datasheets print with an asterisk), from NVIDIA's datasheets. Only cards and figures we
are sure of are listed; a card not listed (or a variant such as H100 NVL or H200 NVL,
whose clocks differ) has no vendor figure, which is said as "no vendor figure".
"""

from __future__ import annotations

from dataclasses import dataclass

TERA = 1e12


@dataclass(frozen=True)
class VendorFigures:
    """One card's datasheet peaks (dense FLOP/s; None where it has no such unit)."""

    #: what the card is called in the output, e.g. "NVIDIA H100 SXM"
    name: str
    #: lower-case substrings of the CUDA device name that all must occur in it
    match: tuple[str, ...]
    #: lower-case substrings that must not occur (variants with other clocks)
    exclude: tuple[str, ...]
    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float | None

    def for_dtype(self, dtype: str, tf32: bool | None = None) -> float | None:
        """The figure a matmul in ``dtype`` is compared with (fp32 with TF32 on: TF32)."""
        if dtype == "fp32":
            return self.tf32 if tf32 and self.tf32 is not None else self.fp32
        if dtype == "bf16":
            return self.bf16
        if dtype == "fp16":
            return self.fp16
        return None


#: Most specific first: the first entry whose substrings all match wins.
VENDOR_FIGURES: tuple[VendorFigures, ...] = (
    # H200 SXM: same compute as H100 SXM (the memory differs)
    VendorFigures("NVIDIA H200 SXM", ("h200",), ("nvl",), 67 * TERA, 494.7 * TERA,
                  989.4 * TERA, 989.4 * TERA),
    VendorFigures("NVIDIA H100 PCIe", ("h100", "pcie"), (), 51 * TERA, 378 * TERA,
                  756 * TERA, 756 * TERA),
    # H100 SXM5 reports itself as "NVIDIA H100 80GB HBM3"
    VendorFigures("NVIDIA H100 SXM", ("h100",), ("nvl", "pcie"), 67 * TERA, 494.7 * TERA,
                  989.4 * TERA, 989.4 * TERA),
    # A100: the same peaks for SXM4 and PCIe, 40 GB and 80 GB
    VendorFigures("NVIDIA A100", ("a100",), (), 19.5 * TERA, 156 * TERA, 312 * TERA,
                  312 * TERA),
    VendorFigures("NVIDIA L4", ("l4",), (), 30.3 * TERA, 60 * TERA, 121 * TERA,
                  121 * TERA),
    # V100 (Volta): FP16 tensor cores only, no TF32 or BF16
    VendorFigures("NVIDIA V100S PCIe", ("v100s",), (), 16.4 * TERA, None, None, 130 * TERA),
    VendorFigures("NVIDIA V100 PCIe", ("v100", "pcie"), ("v100s",), 14 * TERA, None, None,
                  112 * TERA),
    VendorFigures("NVIDIA V100 SXM2", ("v100",), ("v100s", "pcie"), 15.7 * TERA, None, None,
                  125 * TERA),
    # T4 (Turing): FP16 tensor cores (mixed precision), no TF32 or BF16
    VendorFigures("NVIDIA T4", ("t4",), (), 8.1 * TERA, None, None, 65 * TERA),
)  # fmt: skip


def _words(name: str) -> str:
    return " " + name.lower().replace("-", " ").replace("_", " ") + " "


def vendor_figures(gpu_name: str | None) -> VendorFigures | None:
    """The datasheet entry for a CUDA device name ("NVIDIA H200", "Tesla T4"), or None."""
    if not gpu_name:
        return None
    text = _words(gpu_name)
    for entry in VENDOR_FIGURES:
        if all(_has(text, m) for m in entry.match) and not any(
            _has(text, x) for x in entry.exclude
        ):
            return entry
    return None


def _has(text: str, part: str) -> bool:
    """``part`` in ``text``; a short one ("l4", "t4") only as a whole word."""
    return f" {part} " in text if len(part) <= 2 else part in text


def vendor_peak(
    gpu_name: str | None, dtype: str, tf32: bool | None = None
) -> tuple[str, float] | None:
    """(card name, dense datasheet FLOP/s) for a matmul in ``dtype`` on ``gpu_name``.

    None for an unknown card, a CPU (no name), or a dtype the card has no figure for.
    """
    entry = vendor_figures(gpu_name)
    if entry is None:
        return None
    value = entry.for_dtype(dtype, tf32)
    if value is None:
        return None
    kind = "TF32 tensor" if dtype == "fp32" and tf32 and entry.tf32 is not None else dtype.upper()
    if dtype in ("bf16", "fp16"):
        kind += " tensor"
    return f"{entry.name} datasheet, dense {kind}", value
