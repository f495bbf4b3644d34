"""The measured peak cached in the results store: hits, keys, read-only stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchscope.errors import StoreError
from batchscope.hardware.peak import PeakResult
from batchscope.run import peak_cache
from batchscope.run.peak_cache import cache_key, cached_peak, peak_for
from batchscope.run.store import Store


def fake_peak(device: str, dtype: str, flops: float = 1e11) -> PeakResult:
    return PeakResult(
        device=device, dtype=dtype, threads=2, tf32=None, flops_per_s=flops,
        flops_per_s_low=0.9 * flops, flops_per_s_high=1.1 * flops,
        sizes=[{"n": 512, "flops_per_s": flops, "low": 0.9 * flops, "high": 1.1 * flops}],
        copy_bytes_per_s=1e10, copy_bytes_per_s_low=9e9, copy_bytes_per_s_high=1.1e10,
        fingerprint="f", measured_at="2026-01-01T00:00:00+00:00",
    )  # fmt: skip


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int | None]]:
    """Replace the child process with a counter: each call is one measurement."""
    calls: list[tuple[str, str, int | None]] = []

    def measure(device: str, dtype: str = "fp32", threads: int | None = None, **_: object):  # type: ignore[no-untyped-def]
        calls.append((device, dtype, threads))
        return fake_peak(device, dtype, 1e11 * len(calls))

    monkeypatch.setattr(peak_cache, "measure_in_child", measure)
    return calls


def test_a_cache_hit_returns_the_stored_peak_without_measuring(
    tmp_path: Path, measured: list[tuple[str, str, int | None]]
) -> None:
    with Store(tmp_path / "s.db") as store:
        first = peak_for(store, "cpu", "fp32", 2)
        again = peak_for(store, "cpu", "fp32", 2)
        assert again == first and len(measured) == 1
        peak_for(store, "cpu", "bf16", 2)  # another dtype, another key
        peak_for(store, "cpu", "fp32", 1)  # other threads too
        assert len(measured) == 3
        fresh = peak_for(store, "cpu", "fp32", 2, refresh=True)
        assert len(measured) == 4 and fresh.flops_per_s == 4e11
        assert peak_for(store, "cpu", "fp32", 2) == fresh  # the refresh replaced it
    with Store(tmp_path / "s.db", readonly=True) as store:  # it is in the file
        assert cached_peak(store, "cpu", "fp32", 2) == fresh


def test_the_key_names_fingerprint_device_dtype_threads_and_tf32() -> None:
    key = cache_key("cuda", "bf16", 4)
    assert key.startswith("peak/") and key.endswith("/cuda:0/bf16/any/ieee")
    assert cache_key("cpu", "fp32", None).endswith("/cpu/fp32/default/none")
    assert cache_key("cpu", "fp32", 2) != cache_key("cpu", "fp32", 1)


def test_a_read_only_store_is_read_but_not_written(
    tmp_path: Path, measured: list[tuple[str, str, int | None]]
) -> None:
    Store(tmp_path / "s.db").close()
    with Store(tmp_path / "s.db", readonly=True) as store:
        assert peak_for(store, "cpu").flops_per_s == 1e11
        assert peak_for(store, "cpu").flops_per_s == 2e11  # nothing was cached
        with pytest.raises(StoreError, match="read-only"):
            store.put_meta("peak/x", "{}")
    assert peak_for(None, "cpu").flops_per_s == 3e11  # no store: always measures


def test_meta_keys_of_the_store_itself_cannot_be_written(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        assert store.get_meta("nothing") is None
        store.put_meta("peak/a", "1")
        store.put_meta("peak/a", "2")
        assert store.get_meta("peak/a") == "2"
        with pytest.raises(StoreError, match="belongs to the store"):
            store.put_meta("schema_version", "9")
        assert store.get_meta("schema_version") == "1"


def test_a_damaged_entry_is_measured_again(
    tmp_path: Path, measured: list[tuple[str, str, int | None]]
) -> None:
    with Store(tmp_path / "s.db") as store:
        store.put_meta(cache_key("cpu", "fp32", 2), "not json")
        assert peak_for(store, "cpu", "fp32", 2).flops_per_s == 1e11
        assert len(measured) == 1
