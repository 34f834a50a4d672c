"""CPU figures of the mtcp models against the release (SPEC §8).

Each case runs in its own subprocess so that its peak resident memory (``ru_maxrss``) is its
own. Cases:

- ``paper_forward``: ``mtcp_paper`` (NYUD 3 tasks) inference, 448x576, batch 1
  (release: 18.6 s, 4.5 GiB RSS).
- ``paper_train``: one training step (forward, loss, backward, AdamW) of ``mtcp_paper``
  with ``grad_checkpointing=True`` (``--no-checkpointing`` to switch off), 448x576, batch 1
  (release: 76 s, 13 GiB RSS; target <= 76 s and <= 6.5 GiB).
- ``cfm_attention``: one CFM attention forward + backward, N = 19,200 (120x160 tokens),
  batch 2, Q/K 512 wide, S 256 wide, fp32 (target < 2 GiB).
- ``tiny_inference``: ``mtcp_tiny`` (NYUD 3 tasks) inference at 240x320, batch 1, median of
  several runs (target <= 100 ms).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_model_cpu.py                  # all cases
    python benchmarks/bench_model_cpu.py --cases tiny_inference,cfm_attention --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mtcp.models.attention import DEFAULT_CHUNK

NYUD = {"semseg": 40, "depth": 1, "normals": 3}


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class _Timer:
    """Wall and process CPU seconds of a block. On a shared machine ``cpu / threads`` is the
    better estimate of the wall time the block would take with its cores to itself."""

    def __enter__(self) -> _Timer:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def figures(self) -> dict:
        return {"seconds": self.wall, "cpu_seconds": self.cpu}


def _loss(outputs, tasks):
    import torch
    import torch.nn.functional as F

    total = torch.zeros(())
    for name, pred in outputs.items():
        task = name.split("_s")[0]
        if tasks[task] > 1 and task != "normals":
            target = torch.randint(0, tasks[task], (pred.shape[0], *pred.shape[-2:]))
            total = total + F.cross_entropy(pred, target)
        else:
            total = total + (pred - torch.rand_like(pred)).abs().mean()
    return total


def case_paper_forward(args) -> dict:
    import torch

    from mtcp.models import create_model

    model = create_model("mtcp_paper", NYUD).eval()
    image = torch.randn(1, 3, 448, 576)
    before = _rss_gib()
    with torch.inference_mode(), _Timer() as timer:
        model(image)
    return {**timer.figures(), "rss_before_gib": before, "peak_rss_gib": _rss_gib()}


def case_paper_train(args) -> dict:
    import torch

    from mtcp.models import create_model

    model = create_model("mtcp_paper", NYUD, grad_checkpointing=args.checkpointing).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    image = torch.randn(1, 3, 448, 576)
    before = _rss_gib()
    with _Timer() as timer:
        loss = _loss(model(image), NYUD)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {
        **timer.figures(),
        "grad_checkpointing": args.checkpointing,
        "rss_before_gib": before,
        "peak_rss_gib": _rss_gib(),
    }


def case_cfm_attention(args) -> dict:
    import torch

    from mtcp.models.attention import coherence_attention

    b, n = 2, 120 * 160
    base = _rss_gib()  # libraries only: the op's figure includes its inputs, as on a GPU
    q = torch.randn(b, n, 512, requires_grad=True)
    k = torch.randn(b, n, 512, requires_grad=True)
    v = torch.randn(b, n, 256, requires_grad=True)
    grad = torch.randn(b, n, 256)
    before = _rss_gib()
    with _Timer() as timer:
        coherence_attention(q, k, v, "chunked", args.chunk).backward(grad)
    return {
        **timer.figures(),
        "chunk": args.chunk,
        "rss_libraries_gib": base,
        "rss_inputs_gib": before,
        "peak_rss_gib": _rss_gib(),
        "op_peak_gib": _rss_gib() - base,
    }


def case_tiny_inference(args) -> dict:
    import torch

    from mtcp.models import create_model

    model = create_model("mtcp_tiny", NYUD).eval()
    image = torch.randn(1, 3, 240, 320)
    walls, cpus = [], []
    with torch.inference_mode():
        for i in range(args.repeats + 3):
            with _Timer() as timer:
                model(image)
            if i >= 3:  # warm-up
                walls.append(1000 * timer.wall)
                cpus.append(1000 * timer.cpu)
    return {
        "ms_median": statistics.median(walls),
        "ms_min": min(walls),
        "cpu_ms_median": statistics.median(cpus),
        "repeats": args.repeats,
        "peak_rss_gib": _rss_gib(),
    }


CASES: dict[str, Callable[[argparse.Namespace], dict]] = {
    "paper_forward": case_paper_forward,
    "paper_train": case_paper_train,
    "cfm_attention": case_cfm_attention,
    "tiny_inference": case_tiny_inference,
}


def _run_case(name: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--chunk",
        str(args.chunk),
        "--repeats",
        str(args.repeats),
        "--checkpointing" if args.checkpointing else "--no-checkpointing",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument(
        "--chunk", type=int, default=DEFAULT_CHUNK, help="CFM attention query chunk"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of tiny_inference")
    parser.add_argument(
        "--checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="paper_train with grad_checkpointing (default: on)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    if args.child:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
        print(json.dumps(CASES[args.child](args)))
        return 0

    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; accepted: {', '.join(CASES)}")
    results = {
        "torch": torch.__version__,
        "threads": int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "cases": {},
    }
    for name in names:
        results["cases"][name] = _run_case(name, args)
        print(f"{name:15s} {json.dumps(results['cases'][name])}", flush=True)
    if args.json:
        with tempfile.NamedTemporaryFile(
            "w", dir=args.json.parent or ".", delete=False, suffix=".tmp"
        ) as tmp:
            json.dump(results, tmp, indent=2)
        os.replace(tmp.name, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
