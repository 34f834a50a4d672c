"""Synthetic scene rendering speed on one core: prints scenes/s (target >= 100 at 240x320).

Usage: python benchmarks/bench_synthetic.py [--size 240x320] [--n 200] [--person-prob 0]
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy/torch start their thread pools

import argparse
import time

import torch

from mtcp.data.synthetic import render_scene
from mtcp.sizes import parse_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="240x320", help="HxW (default 240x320)")
    parser.add_argument("--n", type=int, default=200, help="scenes to render (default 200)")
    parser.add_argument("--person-prob", type=float, default=0.0, help="share of people")
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = parse_size(args.size, "--size")
    for i in range(5):  # warm-up
        render_scene(1, i, size, person_prob=args.person_prob)
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(args.n):
        render_scene(0, i, size, person_prob=args.person_prob)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start  # less sensitive to other jobs on a shared machine
    print(
        f"render_scene {size[0]}x{size[1]}, person_prob {args.person_prob}, 1 thread, "
        f"n={args.n}: {args.n / elapsed:.1f} scenes/s wall ({1000 * elapsed / args.n:.2f} "
        f"ms/scene), {args.n / cpu:.1f} scenes/s of CPU time"
    )


if __name__ == "__main__":
    main()
