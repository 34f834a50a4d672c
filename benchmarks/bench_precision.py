"""fp32 vs bf16 vs int8 CPU inference in one run (issue 18): time per image, peak memory and
agreement with fp32 for mtcp_tiny at 240x320, mtcp_base and mtcp_paper at 448x576 (random
weights, NYUD tasks), then each task's metric on held-out synthetic scenes with a trained
checkpoint in each precision.

    python benchmarks/bench_precision.py \
        --checkpoint runs/synthetic_tiny/version_0/checkpoints/best.ckpt \
        --threads 2 --json precision.json

Each case runs in its own process (peak resident memory of that case only). mtcp_paper needs
transformers; one fp32 forward takes ~15 s on 2 cores, so its repeats are kept low.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from mtcp.benchmark import machine_info, machine_lines
from mtcp.benchmark.precision import (
    BENCH_PRECISIONS,
    compare_precisions,
    format_metrics_table,
    format_precision_table,
    precision_metrics,
)
from mtcp.io import write_json

#: (size, warm-up runs, timed runs, held-out scenes compared, int8 calibration scenes)
CASES = {
    "mtcp_tiny": ((240, 320), 2, 10, 2, 8),
    "mtcp_base": ((448, 576), 1, 1, 1, 2),
    "mtcp_paper": ((448, 576), 0, 1, 1, 1),  # ~15 s (fp32, 2 idle cores) per forward
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--precisions", nargs="+", default=list(BENCH_PRECISIONS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default=None, help="trained mtcp train checkpoint")
    parser.add_argument("--scenes", type=int, default=16, help="held-out scenes for metrics")
    parser.add_argument("--timeout", type=float, default=1500, help="seconds per case")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/bench_precision.py", *(argv or sys.argv[1:])])
    machine = machine_info("cpu", command)
    print("\n".join(machine_lines(machine)), flush=True)
    start = time.monotonic()
    results = []
    for name in args.models:
        size, warmup, repeats, scenes, calibration = CASES[name]
        results += compare_precisions(
            [(name, size)],
            args.precisions,
            timeout=args.timeout,
            repeats=repeats,
            warmup=warmup,
            scenes=scenes,
            calibration=calibration,
            threads=args.threads,
        )
        print(f"\n{name} done after {time.monotonic() - start:.0f} s", flush=True)
    if results:
        print("\n" + format_precision_table(results), flush=True)
    report = {"machine": machine, "results": results}
    if args.checkpoint:
        metrics = precision_metrics(args.checkpoint, args.precisions, scenes=args.scenes)
        print(f"\nmetrics of {args.checkpoint} on {args.scenes} held-out synthetic scenes:\n")
        print(format_metrics_table(metrics))
        report["metrics"] = metrics
    print(f"\ntotal {time.monotonic() - start:.0f} s")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
