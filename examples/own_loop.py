"""Keep your own training loop and let batchscope time it: ``batchscope.measure``.

Seed 001's loop — SimpleCNN on 32×32×3 random images, CrossEntropyLoss,
Adam(lr=0.001) — at batch sizes 16, 32, 64, 128 and 256. Each batch size is one
``with batchscope.measure(...)`` block; all of them go into one stored run, so
the CLI can show and report it afterwards:

    python examples/own_loop.py
    batchscope show seed001-own-loop
    batchscope report seed001-own-loop

Smaller or quicker: ``python examples/own_loop.py --steps 5 --batch-sizes 16,64``.
``--store PATH`` writes somewhere other than ``batchscope-results/batchscope.db``.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import batchscope
from batchscope.workloads.simplecnn import SimpleCNN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="16,32,64,128,256")
    parser.add_argument("--steps", type=int, default=30, help="measured steps per batch size")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--images", type=int, default=5000, help="random training images")
    parser.add_argument("--run", default="seed001-own-loop", help="the stored run's name")
    parser.add_argument("--store", default=None, help="results store (default: the CLI's)")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (args.images,), generator=gen)
    dataset = TensorDataset(images, labels)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    for bs in batch_sizes:
        torch.manual_seed(0)  # every batch size starts from the same weights
        model = SimpleCNN().to(device)
        criterion = nn.CrossEntropyLoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
        loader = DataLoader(dataset, batch_size=bs, shuffle=True, generator=gen)

        # ---- seed 001's loop, with the three batchscope lines marked ----
        with batchscope.measure(  # 1
            batch_size=bs,
            run=args.run,
            workload="simplecnn (own loop)",
            device=device,
            warmup=args.warmup,
            store=args.store,
            model=model,
        ) as m:
            while m.steps < args.warmup + args.steps:  # epochs until enough steps
                for inputs, targets in m.batches(loader):  # 2 (optional: times data waits)
                    inputs, targets = inputs.to(device), targets.to(device)
                    optimizer.zero_grad()
                    outputs = model(inputs)
                    loss = criterion(outputs, targets)
                    loss.backward()
                    optimizer.step()
                    m.step(loss)  # 3
                    if m.steps >= args.warmup + args.steps:
                        break

        r = m.result
        assert r is not None
        if r.step_time_s is not None and r.samples_per_s is not None:
            print(
                f"batch size {bs:>4}: {r.samples_per_s:>8,.0f} samples/s, "
                f"{r.step_time_s.median * 1e3:7.1f} ms per step (median of {r.step_time_s.n})"
            )
        else:
            print(f"batch size {bs:>4}: {r.status} {r.error or '; '.join(r.notes)}")

    store = f" --store {args.store}" if args.store else ""
    print(f"\nstored as run {m.run_id}; look further with:")
    print(f"  batchscope show {m.run_id}{store}")
    print(f"  batchscope report {m.run_id}{store}")


if __name__ == "__main__":
    main()
