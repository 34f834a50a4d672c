"""Loading speed: samples/s of one worker with the NYUD train recipe at 480x640.

Writes a NYUD_MT fixture with :func:`mtcp.data.synthetic.writer.write_layout` into a
temporary folder, then times ``dataset[i]`` (read + decode + checks + flip/zoom/resize +
tensors) in this one process, which is what each DataLoader worker does. Also reports the
time of each stage and, with ``--workers N``, a DataLoader run with N workers.

    OMP_NUM_THREADS=1 python benchmarks/bench_loading.py [--n 12] [--passes 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mtcp.data.build import build_dataset
from mtcp.data.sample import to_tensor
from mtcp.data.synthetic.writer import write_layout
from mtcp.data.transforms import build_recipe

SIZE = (480, 640)


def rate(fn, count: int) -> tuple[float, float]:
    """Calls of ``fn(i)`` (``i`` in ``range(count)``) per wall-clock second and per CPU second.

    On a shared machine the CPU-time rate is what one worker with a core of its own achieves.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="scenes written (all in train)")
    parser.add_argument("--passes", type=int, default=3, help="passes over the samples")
    parser.add_argument("--workers", type=int, default=0, help="also time a DataLoader")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = write_layout(Path(tmp) / "nyud", "nyud-mt", args.n, SIZE, val_fraction=0.0)
        print(f"wrote {args.n} NYUD_MT scenes at {SIZE[0]}x{SIZE[1]} "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        ds = build_dataset(root, "train_full", recipe="nyud_train", size=SIZE)
        n = len(ds)
        ds[0]  # warm up (imports, page cache)
        total = n * args.passes
        full = rate(lambda i: ds[i % n], total)
        raws = [ds.read(sid) for sid in ds.ids]
        read = rate(lambda i: ds.read(ds.ids[i % n]), total)
        recipe = build_recipe("nyud_train", SIZE)
        rng = np.random.default_rng(0)
        aug = rate(lambda i: recipe(raws[i % n], rng), total)
        tens = rate(lambda i: to_tensor(raws[i % n], ds.tasks), total)
        print(f"tasks: {', '.join(ds.tasks)}")
        print(f"per worker: {full[0]:.1f} samples/s wall clock, {full[1]:.1f} samples/s of CPU "
              f"time ({1000 / full[1]:.1f} ms CPU/sample)")  # fmt: skip
        print(f"  CPU ms/sample: read+decode+checks {1000 / read[1]:.1f}, nyud_train recipe "
              f"{1000 / aug[1]:.1f}, to_tensor {1000 / tens[1]:.1f}")  # fmt: skip
        if args.workers:
            loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=args.workers)
            next(iter(loader))
            start = time.perf_counter()
            seen = sum(len(b["id"]) for _ in range(args.passes) for b in loader)
            per_s = seen / (time.perf_counter() - start)
            print(f"DataLoader, {args.workers} workers, batch 2: {per_s:.1f} samples/s")


if __name__ == "__main__":
    main()
