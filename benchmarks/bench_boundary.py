"""Speed of the BSDS boundary metric (``mtcp.metrics.boundary.BoundaryF``) on NYUD-sized maps.

Synthetic pairs at 480x640: the target is the 1-px boundary map of a random Voronoi partition;
the prediction follows the boundaries of a smoothly warped copy of the partition (≈2 px off)
with varying strength, plus spurious edges. Two cases:

* ``worst``: blurred (σ = 2 px) over a textured background of ≈0.05, so nearly every pixel is
  above the lowest thresholds (as with class-balanced BCE) and the low thresholds thin and
  match huge regions;
* ``realistic``: a trained network's look: soft ridges (σ = 1 px) around the boundaries and a
  low-noise background (≈0–0.02).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_boundary.py [--n 8] [--case both] [--no-thin]
Prints, per case and thread count, images/s, the extrapolated time for the 654 NYUD test images
and the CPU time per image (less sensitive to other processes sharing the cores than wall
time). The first call (numba JIT compile, or loading numba's on-disk cache) is timed
separately; run with ``NUMBA_CACHE_DIR=$(mktemp -d)`` to time a cold compile.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from mtcp.metrics.boundary import BoundaryF, boundary_counts, default_workers


def _boundaries(labels: np.ndarray) -> np.ndarray:
    b = np.zeros(labels.shape, dtype=bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1] |= labels[:-1] != labels[1:]
    return b


def _voronoi(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    _, lab = cKDTree(rng.random((n, 2)) * [h, w]).query(np.stack([yy.ravel(), xx.ravel()], 1))
    return lab.reshape(h, w)


def make_pair(
    seed: int, h: int = 480, w: int = 640, case: str = "worst"
) -> tuple[np.ndarray, np.ndarray]:
    """(edge probability float32 [H, W], binary target uint8 [H, W]) for ``case``."""
    rng = np.random.default_rng(seed)
    labels = _voronoi(rng, h, w, 30)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    warp = [ndimage.gaussian_filter(rng.normal(size=(h, w)), 20) for _ in range(2)]
    warp = [2.0 * d / d.std() for d in warp]
    warped = ndimage.map_coordinates(labels, [yy + warp[0], xx + warp[1]], order=0)
    evidence = _boundaries(warped) * (0.4 + 1.2 * ndimage.gaussian_filter(rng.random((h, w)), 15))
    evidence += 0.5 * _boundaries(_voronoi(rng, h, w, 15))  # spurious edges
    texture = ndimage.gaussian_filter(rng.random((h, w)), 2)
    if case == "worst":
        evidence = ndimage.gaussian_filter(evidence, 2.0)
        prob = np.clip(1.3 * (evidence / evidence.max()) ** 0.8 + 0.4 * (texture - 0.4), 0, 1)
        prob *= 0.95
    else:
        ridge = ndimage.gaussian_filter(evidence, 1.0)
        noise = (texture - texture.min()) / (texture.max() - texture.min())
        prob = np.clip(2.5 * ridge / ridge.max(), 0, 0.98) + 0.02 * noise**2
    return prob.astype(np.float32), _boundaries(labels).astype(np.uint8)


def _time(pairs, thin: bool, workers: int, batch: int) -> tuple[float, float, dict]:
    metric = BoundaryF(max_dist=0.011, thin=thin, num_workers=workers)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(pairs), batch):
        probs = torch.stack([torch.from_numpy(p) for p, _ in pairs[i : i + batch]])[:, None]
        targets = torch.stack([torch.from_numpy(t) for _, t in pairs[i : i + batch]])[:, None]
        metric.update(probs, targets)
    result = metric.compute()
    return time.perf_counter() - start, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="images to time per case")
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--case", choices=("worst", "realistic", "both"), default="both")
    parser.add_argument("--workers", type=int, default=default_workers(), help="threads")
    parser.add_argument("--no-thin", action="store_true", help="skip the thinning")
    args = parser.parse_args()
    thin = not args.no_thin
    start = time.perf_counter()
    boundary_counts(*make_pair(0, 48, 64), thin=thin)
    print(f"first call (JIT compile or cache load): {time.perf_counter() - start:.2f} s")
    cases = ("worst", "realistic") if args.case == "both" else (args.case,)
    for case in cases:
        pairs = [make_pair(i, *args.size, case=case) for i in range(args.n)]
        above = np.mean([(p >= 0.01).mean() for p, _ in pairs])
        print(
            f"\n{case}: {args.n} images {args.size[0]}x{args.size[1]}, thin={thin}, "
            f"{above:.0%} of pixels >= 0.01"
        )
        for workers in sorted({1, args.workers}):
            elapsed, cpu, result = _time(pairs, thin, workers, batch=max(workers, 1) * 2)
            print(
                f"  {workers} thread(s): {args.n / elapsed:.2f} images/s, 654 NYUD images ≈ "
                f"{654 * elapsed / args.n:.0f} s; CPU {cpu / args.n:.3f} s/image; "
                + str({k: round(float(v), 4) for k, v in result.items()})
            )


if __name__ == "__main__":
    main()
