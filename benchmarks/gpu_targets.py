"""Every GPU target of issue 8 in one run (< 5 minutes on an H100), printed as Markdown.

Usage (repository root, on the GPU machine)::

    python3 benchmarks/gpu_targets.py [--json gpu_targets.json] [--compile]

Measures, for ``mtcp_paper`` (NYUD 3 tasks, random weights) at 480x640, batch 2, bf16 autocast:
training step img/s (forward, MultiTaskLoss, backward, fused AdamW; CUDA events, medians),
inference img/s, training peak memory (``torch.cuda.max_memory_allocated``), host
synchronisations inside one training step, and the fraction of the card's bf16 matmul rate
(measured here with 8192^3 bf16 matmuls) that the step reaches — with the model's FLOPs
(3 x the forward's, the usual convention) and with the FLOPs the step executes (flop counter,
recomputation included). Rows with ``grad_checkpointing`` and in fp32 follow for comparison,
then the CFM attention alone (B = 2, N = 19,200, Q/K 512 wide, V 256 wide; SPEC §8): dense,
chunked (mtcp) and ``scaled_dot_product_attention``, forward + backward and forward only.

Environment (assumptions, not testable without a GPU): the machine has the repository and a
Python with a CUDA build of torch but maybe no venv and no network. The script
1. uses the running interpreter when ``torch``, ``timm`` and ``transformers`` import there;
2. otherwise creates ``.venv`` (git-ignored) with ``--system-site-packages``, so the torch wheels
   already installed are reused, and runs ``pip install -e .[mask2former]`` in it (needs the
   network or a pip cache/wheelhouse configured via ``PIP_FIND_LINKS``/``PIP_NO_INDEX``), then
   re-runs itself there;
3. imports ``mtcp`` from ``src/`` when it is not installed (no build step needed).
``--smoke`` runs every code path on the CPU with ``mtcp_tiny`` at 64x96 and a small attention
(a check of the script, not a measurement). ``--compile`` adds a ``torch.compile`` row (the HF
Mask2Former alone compiled in ~220 s on an H100 per SPEC §8: beyond the 5-minute budget).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEEDED = ("torch", "timm", "transformers")
BOOTSTRAP_FLAG = "MTCP_GPU_TARGETS_BOOTSTRAPPED"
SIZE = (480, 640)
BATCH = 2
RELEASE = "release (SPEC §8): bf16 train 3.06 img/s, 29.6 GiB; bf16 inference 6.19 img/s"


def _missing() -> list[str]:
    return [m for m in NEEDED if importlib.util.find_spec(m) is None]


def ensure_environment(argv: list[str]) -> None:
    """Make torch, timm, transformers and mtcp importable, or exit with the reason."""
    if str(REPO / "src") not in sys.path and importlib.util.find_spec("mtcp") is None:
        sys.path.insert(0, str(REPO / "src"))
    missing = _missing()
    if not missing:
        return
    if os.environ.get(BOOTSTRAP_FLAG):
        sys.exit(f"gpu_targets: still missing {missing} after setting up {REPO / '.venv'}")
    venv = REPO / ".venv"
    python = venv / "bin" / "python"
    print(f"gpu_targets: {missing} not importable; setting up {venv}", file=sys.stderr)
    if not python.exists():
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True
        )
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    if subprocess.run([*pip, "-e", f"{REPO}[mask2former]"], check=False).returncode != 0:
        # offline: at least register mtcp itself, reusing whatever the system site has
        subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(REPO)], check=False)
    env = {**os.environ, BOOTSTRAP_FLAG: "1"}
    os.execve(str(python), [str(python), str(Path(__file__).resolve()), *argv], env)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row (slow)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per row")
    parser.add_argument("--smoke", action="store_true", help="check the script on the CPU")
    args = parser.parse_args(argv)
    ensure_environment(argv)

    import torch

    from mtcp.benchmark import (
        BenchmarkConfig,
        attention_benchmark,
        count_host_syncs,
        counted_gflops,
        format_markdown,
        machine_info,
        machine_lines,
        make_train_step,
        markdown_table,
        matmul_tflops,
        random_batch,
        run_benchmark,
    )
    from mtcp.io import write_json
    from mtcp.models import create_model

    device, preset, size, tokens, n = "cuda", "mtcp_paper", SIZE, 19_200, 8192
    if args.smoke:
        device, preset, size, tokens, n = "cpu", "mtcp_tiny", (64, 96), 256, 256
        args.repeats = 1
    elif not torch.cuda.is_available():
        sys.exit("gpu_targets: torch sees no CUDA GPU")

    def empty_cache() -> None:
        if device == "cuda":
            torch.cuda.empty_cache()

    start = time.perf_counter()
    command = shlex.join(["python3", "benchmarks/gpu_targets.py", *argv])
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 rows: as a user would run them
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    out: dict = {"machine": machine_info(device, command)}
    out["bf16_matmul_tflops"] = matmul_tflops(device, torch.bfloat16, n)
    log = lambda msg: print(f"[{time.perf_counter() - start:6.1f} s] {msg}", file=sys.stderr)  # noqa: E731
    log(f"bf16 matmul {out['bf16_matmul_tflops']:.0f} TFLOP/s")

    def bench(precision: str, train: bool = True, inference: bool = True, **kw) -> dict:
        compiled = kw.pop("compile", False)
        config = BenchmarkConfig(
            model=preset, size=size, batch=BATCH, device=device, precision=precision,
            train=train, inference=inference, warmup=1 if args.smoke else 3,
            repeats=args.repeats, compile=compiled,
            channels_last=kw.pop("channels_last", False), model_args=kw,
        )  # fmt: skip
        result = run_benchmark(config, command=command)
        empty_cache()
        log(f"{precision} {kw} compile={compiled}: done")
        return result

    rows = [bench("bf16")]
    main_row = rows[0]
    rows.append(bench("bf16", inference=False, grad_checkpointing=True))
    rows.append(bench("bf16", channels_last=True))
    rows.append(bench("fp32"))
    if args.compile:
        rows.append(bench("bf16", compile=True))
    out["model_rows"] = rows

    # FLOPs executed by one training step and host syncs inside it (default settings, bf16)
    model = create_model(preset, {"semseg": 40, "depth": 1, "normals": 3}).to(device).train()
    batch = random_batch(model.tasks, BATCH, size, device)
    step = make_train_step(model, batch, model.tasks, device, "bf16")
    step()  # optimizer state exists before counting
    out["train_step_gflops_per_image"] = counted_gflops(step) / BATCH
    out["host_syncs_per_train_step"] = count_host_syncs(step) if device == "cuda" else None
    del model, batch, step
    empty_cache()
    log("flop count and sync check: done")

    attn = []
    for dtype in (torch.bfloat16, torch.float32):
        for impl, chunk in (("dense", None), ("chunked", None), ("chunked", 2048), ("sdpa", None)):
            for backward in (True, False):
                attn.append(
                    attention_benchmark(
                        impl, 2, tokens, 512, 256, device, dtype, backward, chunk, 2, 5
                    )
                )
                empty_cache()
    out["attention"] = attn
    log("attention: done")

    rate = out["bf16_matmul_tflops"]
    train, infer = main_row["train"], main_row["inference"]
    model_tflops = 3 * main_row["gflops_per_image"] * train["img_per_s"] / 1000
    exec_tflops = out["train_step_gflops_per_image"] * train["img_per_s"] / 1000
    syncs = out["host_syncs_per_train_step"]
    yes = {True: "yes", False: "no", None: "–"}
    targets = [
        [
            f"training img/s (bf16, b{BATCH}, {size[0]}x{size[1]})",
            f"{train['img_per_s']:.2f}",
            ">= 30",
            yes[train["img_per_s"] >= 30],
        ],
        ["inference img/s", f"{infer['img_per_s']:.2f}", ">= 60", yes[infer["img_per_s"] >= 60]],
        [
            "training peak memory",
            f"{train['peak_memory_gib']:.2f} GiB",
            "<= 10 GiB",
            yes[train["peak_memory_gib"] <= 10],
        ],
        [
            "share of the measured bf16 matmul rate",
            f"{100 * model_tflops / rate:.1f}% (model FLOPs = 3 x fwd) / "
            f"{100 * exec_tflops / rate:.1f}% (executed)",
            f"report (rate {rate:.0f} TFLOP/s)",
            "–",
        ],
        [
            "host syncs in one training step",
            str(syncs),
            "0",
            yes[None if syncs is None else syncs == 0],
        ],
    ]
    attn_rows = [
        [
            a["impl"] + (f" {a['chunk_size']}" if "chunk_size" in a else ""),
            a["dtype"],
            "fwd+bwd" if a["backward"] else "fwd",
            f"{a['ms_median']:.2f}",
            f"{a['peak_memory_gib']:.2f}",
        ]
        for a in attn
    ]
    print("## GPU targets (issue 8)\n")
    print("\n".join(machine_lines(out["machine"])))
    print(f"- bf16 matmul rate (8192^3, median of 10): {rate:.0f} TFLOP/s")
    print(f"- training step FLOPs executed per image: {out['train_step_gflops_per_image']:,.0f}")
    print(f"- {RELEASE}\n")
    print(markdown_table(["target", "measured", "goal", "met"], targets))
    print(f"\n### {preset}, NYUD 3 tasks, {size[0]}x{size[1]}, batch {BATCH}\n")
    print(format_markdown(rows))
    print(f"\n### CFM attention alone: B = 2, N = {tokens:,}, Q/K 512, V 256 (SPEC §8)\n")
    print(markdown_table(["form", "dtype", "pass", "ms", "peak GiB"], attn_rows))
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
