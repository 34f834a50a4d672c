"""Latency of an exported model under onnxruntime vs PyTorch eager, on the CPU.

    OMP_NUM_THREADS=1 python benchmarks/bench_onnx.py --threads 1
    python benchmarks/bench_onnx.py --model mtcp_tiny --size 240x320 --threads 2 --repeats 30

Both backends run the same random-weight model on the same batch-1 image with the same
number of intra-op threads; the figure is the median wall time of ``--repeats`` calls after
``--warmup`` calls. Prints one markdown table row per backend.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

import mtcp
from mtcp.benchmark import cpu_model, time_runs
from mtcp.export import export_onnx, relative_error
from mtcp.inference.onnx_runtime import OnnxModel
from mtcp.sizes import parse_size


def median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    return statistics.median(time_runs(fn, "cpu", warmup, repeats)["ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mtcp_tiny")
    parser.add_argument("--tasks", default="semseg,depth,normals,edge")
    parser.add_argument("--size", default="240x320", help="HxW")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, both backends")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    size = parse_size(args.size, "--size")
    model = mtcp.create_model(args.model, tasks=args.tasks.split(",")).eval()
    image = torch.randn(1, 3, *size)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", size=size)
        runner = OnnxModel(path, threads=args.threads)
        with torch.no_grad():
            expected = model(image)
            eager = median_ms(lambda: model(image), args.warmup, args.repeats)
        onnx = median_ms(lambda: runner(image), args.warmup, args.repeats)
        actual = runner(image)
    err = max(relative_error(actual[t], expected[t]) for t in model.tasks)

    print(
        f"{args.model} ({args.tasks}), batch 1, {size[0]}x{size[1]}, {args.threads} thread(s), "
        f"median of {args.repeats}; torch {torch.__version__}, {cpu_model()}"
    )
    print("| backend | latency (ms) | speed-up |")
    print("|---|---|---|")
    print(f"| PyTorch eager | {eager:.1f} | 1.00x |")
    print(f"| onnxruntime | {onnx:.1f} | {eager / onnx:.2f}x |")
    print(f"max relative difference over tasks: {err:.1e}")


if __name__ == "__main__":
    main()
