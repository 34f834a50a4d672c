"""Speed of the BSDS boundary metric (``mtcp.metrics.boundary.BoundaryF``) on NYUD-sized maps.

Synthetic, random-ish pairs at 480x640: the target is the 1-px boundary map of a random Voronoi
partition; the prediction looks like a trained edge network's output: the boundaries of a
smoothly warped copy of the partition (≈2 px off) with varying strength, a few spurious edges,
blurred (σ = 2 px), over a textured background of ≈0.05 (so nearly every pixel is above the
lowest threshold 0.01, as with class-balanced BCE).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_boundary.py [--n 8] [--no-thin]
Prints images/s and the extrapolated time for the 654 NYUD test images, and the CPU time per
image (less sensitive to other processes sharing the cores than wall time).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from mtcp.metrics.boundary import BoundaryF


def _boundaries(labels: np.ndarray) -> np.ndarray:
    b = np.zeros(labels.shape, dtype=bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1] |= labels[:-1] != labels[1:]
    return b


def _voronoi(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    _, lab = cKDTree(rng.random((n, 2)) * [h, w]).query(np.stack([yy.ravel(), xx.ravel()], 1))
    return lab.reshape(h, w)


def make_pair(seed: int, h: int = 480, w: int = 640) -> tuple[np.ndarray, np.ndarray]:
    """(edge probability float32 [H, W], binary target uint8 [H, W])."""
    rng = np.random.default_rng(seed)
    labels = _voronoi(rng, h, w, 30)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    warp = [ndimage.gaussian_filter(rng.normal(size=(h, w)), 20) for _ in range(2)]
    warp = [2.0 * d / d.std() for d in warp]
    warped = ndimage.map_coordinates(labels, [yy + warp[0], xx + warp[1]], order=0)
    evidence = _boundaries(warped) * (0.4 + 1.2 * ndimage.gaussian_filter(rng.random((h, w)), 15))
    evidence += 0.5 * _boundaries(_voronoi(rng, h, w, 15))  # spurious edges
    evidence = ndimage.gaussian_filter(evidence, 2.0)
    texture = ndimage.gaussian_filter(rng.random((h, w)), 2)
    prob = np.clip(1.3 * (evidence / evidence.max()) ** 0.8 + 0.4 * (texture - 0.4), 0, 1) * 0.95
    return prob.astype(np.float32), _boundaries(labels).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="images to time")
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--no-thin", action="store_true", help="skip the thinning")
    args = parser.parse_args()
    pairs = [make_pair(i, *args.size) for i in range(args.n)]
    metric = BoundaryF(max_dist=0.011, thin=not args.no_thin)
    start, cpu = time.perf_counter(), time.process_time()
    for prob, target in pairs:
        metric.update(torch.from_numpy(prob)[None, None], torch.from_numpy(target)[None, None])
    result = metric.compute()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    above = np.mean([(p >= 0.01).mean() for p, _ in pairs])
    print(
        f"{args.n} images {args.size[0]}x{args.size[1]}, thin={not args.no_thin}, "
        f"torch threads {torch.get_num_threads()}, {above:.0%} of pixels >= 0.01"
    )
    print({k: round(v, 4) for k, v in result.items()})
    print(f"{args.n / elapsed:.2f} images/s; 654 NYUD test images ≈ {654 * elapsed / args.n:.0f} s")
    print(f"CPU time {cpu / args.n:.2f} s/image (wall time grows when the machine is shared)")


if __name__ == "__main__":
    main()
