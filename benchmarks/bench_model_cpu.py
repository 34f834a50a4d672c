"""CPU figures of the mtcp models against the release (SPEC §8, issues 3 and 8).

Each case runs in its own subprocess (its own peak resident memory) through
:mod:`mtcp.benchmark`, and the script prints one Markdown table with the machine, the exact
command, wall seconds and process CPU seconds (on a shared machine ``CPU-s / threads`` is the
better estimate of the wall time on idle cores). Cases:

- ``paper_forward``: ``mtcp_paper`` (NYUD 3 tasks) inference, 448x576, batch 1
  (release: 18.6 s, 4.5 GiB RSS).
- ``paper_train``: one training step (forward, MultiTaskLoss, backward, AdamW) of ``mtcp_paper``
  with ``grad_checkpointing=True`` (``--no-checkpointing`` to switch off), 448x576, batch 1
  (release: 76 s, 13 GiB RSS; target <= 76 s and <= 6.5 GiB).
- ``cfm_attention``: one CFM attention forward + backward (chunked), N = 19,200 (120x160
  tokens), batch 2, Q/K 512 wide, S 256 wide, fp32 (target < 2 GiB above the libraries).
- ``tiny_inference``: ``mtcp_tiny`` (NYUD 3 tasks) inference at 240x320, batch 1, median of
  ``--repeats`` runs after 3 warm-up runs (target <= 100 ms).

Usage::

    python benchmarks/bench_model_cpu.py                                  # all cases, 2 threads
    python benchmarks/bench_model_cpu.py --cases tiny_inference,cfm_attention --json out.json

The heavy cases take ~100 CPU-s (paper_train), ~30 CPU-s (paper_forward) and ~50 CPU-s
(cfm_attention) on a 2-core AVX-512 EPYC. On an oversubscribed machine run with ``--threads 1``:
OpenMP threads that wait for a descheduled peer inflate both wall and CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAPER_SIZE = (448, 576)


def _model_case(model: str, size, train: bool, repeats: int, warmup: int, **model_args) -> dict:
    from mtcp.benchmark import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(
        model=model,
        size=size,
        batch=1,
        train=train,
        inference=not train,
        warmup=warmup,
        repeats=repeats,
        flops=False,
        model_args=model_args,
    )
    result = run_benchmark(config)
    phase = result["train" if train else "inference"]
    return {
        "seconds": phase["ms_median"] / 1000,
        "cpu_seconds": phase.get("cpu_s_median"),
        "peak_gib": phase["peak_memory_gib"],
        "runs": phase["runs"],
    }


def case_paper_forward(args) -> dict:
    return _model_case("mtcp_paper", PAPER_SIZE, False, 1, 0)


def case_paper_train(args) -> dict:
    return _model_case("mtcp_paper", PAPER_SIZE, True, 1, 0, grad_checkpointing=args.checkpointing)


def case_tiny_inference(args) -> dict:
    return _model_case("mtcp_tiny", (240, 320), False, args.repeats, 3)


def case_cfm_attention(args) -> dict:
    import torch

    from mtcp.benchmark import attention_benchmark

    out = attention_benchmark(
        "chunked", 2, 120 * 160, device="cpu", dtype=torch.float32, chunk_size=args.chunk,
        warmup=0, repeats=1,
    )  # fmt: skip
    return {
        "seconds": out["ms_median"] / 1000,
        "cpu_seconds": out["cpu_s_median"],
        "peak_gib": out["peak_memory_gib"],
        "added_gib": out["added_memory_gib"],
        "chunk": out["chunk_size"],
        "runs": out["runs"],
    }


CASES: dict[str, tuple[Callable[[argparse.Namespace], dict], str, str]] = {
    # name: (function, setting, release figure / target)
    "paper_forward": (case_paper_forward, "mtcp_paper inference 448x576 b1", "18.6 s, 4.5 GiB"),
    "paper_train": (
        case_paper_train,
        "mtcp_paper train step 448x576 b1",
        "76 s, 13 GiB (target <= 76 s, <= 6.5 GiB)",
    ),
    "cfm_attention": (
        case_cfm_attention,
        "CFM attention fwd+bwd B=2 N=19,200 fp32",
        "dense 11.5 GiB (target < 2 GiB)",
    ),
    "tiny_inference": (
        case_tiny_inference,
        "mtcp_tiny inference 240x320 b1",
        "target <= 100 ms",
    ),
}


def _child_argv(name: str, args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, __file__, "--child", name, "--threads", str(args.threads)]
    argv += ["--repeats", str(args.repeats)]
    argv += ["--checkpointing" if args.checkpointing else "--no-checkpointing"]
    if args.chunk:
        argv += ["--chunk", str(args.chunk)]
    return argv


def _run_case(name: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(
        _child_argv(name, args), capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        return {"error": " ".join(done.stderr.strip().splitlines()[-1:])}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(name: str, setting: str, reference: str, r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return [name, setting, "error: " + r["error"], "", "", "", reference]
    wall = r["seconds"]
    shown = f"{1000 * wall:.1f} ms" if wall < 1 else f"{wall:.1f} s"
    cpu = r.get("cpu_seconds")
    extra = f"chunk {r['chunk']}, +{r['added_gib']:.2f} GiB" if "chunk" in r else ""
    return [
        name,
        setting,
        shown,
        "–" if cpu is None else f"{cpu:.2f}",
        f"{r['peak_gib']:.2f}",
        extra or f"{r['runs']} run(s)",
        reference,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads (default 2)")
    parser.add_argument(
        "--chunk", type=int, default=None, help="CFM attention query chunk (default: automatic)"
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

    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(CASES[args.child][0](args)))
        return 0

    from mtcp.benchmark import machine_info, machine_lines, markdown_table
    from mtcp.io import write_json

    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; accepted: {', '.join(CASES)}")
    command = shlex.join(["python", "benchmarks/bench_model_cpu.py", *sys.argv[1:]])
    results: dict[str, Any] = {"machine": machine_info("cpu", command), "cases": {}}
    for name in names:
        results["cases"][name] = _run_case(name, args)
        print(f"{name}: {json.dumps(results['cases'][name])}", file=sys.stderr, flush=True)
    header = ["case", "setting", "wall", "CPU-s", "peak RSS GiB", "notes", "release / target"]
    rows = [_row(n, CASES[n][1], CASES[n][2], results["cases"][n]) for n in names]
    print("\n".join(machine_lines(results["machine"])))
    print(f"- checkpointing (paper_train): {args.checkpointing}\n")
    print(markdown_table(header, rows))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
