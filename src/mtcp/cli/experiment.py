"""``mtcp experiment STUDY [--quick] [--out DIR] [--seeds S ...] [--report-only]``.

Trains and evaluates every configuration of a study over its seeds (same data, steps and
seeds for all), stores one JSON per run under ``DIR/results/`` and writes the report
(``EXPERIMENTS.md``, with plots under ``DIR/plots/``). Runs already finished with the same
settings are skipped, so an interrupted study resumes where it stopped. ``STUDY`` is a YAML
file or a packaged study (``synthetic_ablation``: the ablations and weighting comparison of
MT-CP on synthetic scenes). ``--report-only`` re-generates the report from the stored results.

Example::

    mtcp experiment synthetic_ablation --out docs/experiments/synthetic_ablation \\
        --report EXPERIMENTS.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="run a study of several configurations and seeds, write EXPERIMENTS.md",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("study", metavar="STUDY", help="study YAML file or packaged study name")
    parser.add_argument(
        "--quick", action="store_true", help="the study's quick subset (a few steps, one seed)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results folder (default: experiments/<study name>[-quick])",
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds instead of the study's")
    parser.add_argument(
        "--report-only", action="store_true", help="only re-generate the report from results"
    )
    parser.add_argument("--report", type=Path, help="report file (default: OUT/EXPERIMENTS.md)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="scratch folder for checkpoints and logs, emptied after each run "
        "(default: the system's temporary folder)",
    )
    parser.set_defaults(run=run)


def _command(args: argparse.Namespace, out: Path, report: Path) -> str:
    """The command that reproduces the report (paths relative to the working directory)."""
    words = ["mtcp", "experiment", args.study]
    if args.quick:
        words.append("--quick")
    words += ["--out", _shown(out), "--report", _shown(report)]
    if args.seeds:
        words += ["--seeds", *map(str, args.seeds)]
    return shlex.join(words)


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def run(args: argparse.Namespace) -> int:
    import time

    from mtcp.experiment import load_study, run_study, write_report

    study = load_study(args.study)
    if args.quick:
        study = study.quick_variant()
    if args.seeds:
        study.seeds = list(args.seeds)
    out = args.out or Path("experiments") / (study.name + ("-quick" if args.quick else ""))
    report = args.report or out / "EXPERIMENTS.md"
    start = time.monotonic()
    if not args.report_only:
        run_study(study, out, args.work_dir, progress=lambda line: print(line, flush=True))
    write_report(study, out, report, _command(args, out, report))
    minutes = (time.monotonic() - start) / 60
    print(f"report: {report}  (results in {out}, {minutes:.1f} min)", file=sys.stdout)
    return 0
