"""``mtcp benchmark``: parameters, GFLOPs, training and inference speed, peak memory."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from mtcp.errors import MtcpError
from mtcp.io import write_json


def parse_model_arg(text: str) -> tuple[str, Any]:
    """``"key=value"`` → ``(key, value)`` with the value read as JSON when it parses
    (``true``, ``1024``, ``[1, 2]``), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise MtcpError(f"--model-arg must look like KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="measure a model's speed and memory",
        description="Measure a registered model on random inputs: parameters, GFLOPs per image "
        "(PyTorch's flop counter), training step (forward, loss, backward, AdamW) and inference "
        "images/s (medians after warm-up), and peak memory; prints a Markdown table.",
    )
    parser.add_argument("--model", default="mtcp_tiny", help="preset (default mtcp_tiny)")
    parser.add_argument("--size", default="240x320", help="image size HxW (default 240x320)")
    parser.add_argument("--batch", type=int, default=1, help="images per batch (default 1)")
    parser.add_argument(
        "--tasks", nargs="+", default=None, help="tasks (default: NYUD semseg depth normals)"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "bf16", "int8"],
        help="fp32 (default) or bf16 (autocast) for training and inference; several, or int8: "
        "inference only, side by side, each in its own process, with the agreement with fp32",
    )
    parser.add_argument("--compile", action="store_true", help="run the model under torch.compile")
    parser.add_argument(
        "--channels-last", action="store_true", help="channels-last model and input"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model override, repeatable (e.g. grad_checkpointing=true, attention_chunk=2048)",
    )
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--no-inference", action="store_true", help="skip inference")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.set_defaults(run=run)


def command_line(args: argparse.Namespace) -> str:
    """The ``mtcp benchmark`` command that reproduces ``args`` (all settings spelled out)."""
    words = ["mtcp", "benchmark", "--model", args.model, "--size", args.size]
    words += ["--batch", str(args.batch), "--device", args.device, "--precision", *args.precision]
    words += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    if args.tasks:
        words += ["--tasks", *args.tasks]
    flags = ("compile", "channels_last", "no_train", "no_inference")
    words += ["--" + f.replace("_", "-") for f in flags if getattr(args, f)]
    if args.threads:
        words += ["--threads", str(args.threads)]
    for arg in args.model_arg:
        words += ["--model-arg", arg]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from mtcp.benchmark import (
        NYUD_TASKS,
        BenchmarkConfig,
        format_markdown,
        num_threads,
        run_benchmark,
    )
    from mtcp.sizes import parse_size

    if len(args.precision) > 1 or args.precision == ["int8"]:
        return run_precisions(args, parse_size(args.size, "--size"))
    config = BenchmarkConfig(
        model=args.model,
        size=parse_size(args.size, "--size"),
        batch=args.batch,
        tasks=args.tasks or dict(NYUD_TASKS),
        device=args.device,
        precision=args.precision[0],
        compile=args.compile,
        channels_last=args.channels_last,
        warmup=args.warmup,
        repeats=args.repeats,
        train=not args.no_train,
        inference=not args.no_inference,
        model_args=dict(parse_model_arg(a) for a in args.model_arg),
    )
    with num_threads(args.threads):
        result = run_benchmark(config, command=command_line(args))
    print(format_markdown([result]))
    if args.json is not None:
        write_json(args.json, result)
    return 0


def run_precisions(args: argparse.Namespace, size: tuple[int, int]) -> int:
    """``--precision`` with several values or int8: the side-by-side inference comparison."""
    from mtcp.benchmark import NYUD_TASKS, machine_info, machine_lines
    from mtcp.benchmark.precision import compare_precisions, format_precision_table
    from mtcp.tasks import resolve_tasks

    if args.device != "cpu" or args.batch != 1 or args.compile or args.channels_last:
        raise MtcpError(
            "the precision comparison runs on the CPU, batch 1, eager: drop --device, --batch, "
            "--compile and --channels-last"
        )
    if args.model_arg:
        raise MtcpError("--model-arg is not supported with several precisions or int8")
    results = compare_precisions(
        [(args.model, size)],
        args.precision,
        tasks=resolve_tasks(args.tasks or dict(NYUD_TASKS)),
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
    )
    machine = machine_info("cpu", command_line(args))
    print("\n".join(machine_lines(machine)) + "\n\n" + format_precision_table(results))
    if args.json is not None:
        write_json(args.json, {"machine": machine, "results": results})
    failed = [r for r in results if "error" in r]
    return 1 if failed else 0
