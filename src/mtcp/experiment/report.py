"""The study report: ``EXPERIMENTS.md`` and its plots, generated from the result files only.

Re-generating from the same result files gives the same bytes (no dates, no absolute paths),
so the report can be checked against the committed command with ``--report-only``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtcp.errors import MtcpError
from mtcp.experiment import aggregate as agg
from mtcp.experiment import plots
from mtcp.experiment.runner import TEST_SET_FILE
from mtcp.experiment.study import Study
from mtcp.experiment.tables import (
    fmt,
    fmt_value,
    label_of,
    markdown_table,
    summary_keys,
)
from mtcp.experiment.verdicts import claim_lines, convergence_lines
from mtcp.io import atomic_write_bytes, atomic_write_text, read_json

PLOTS_DIR = "plots"


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _setup(study: Study, results: Mapping[str, Mapping[int, Any]], test: Mapping) -> list[str]:
    base = study.base()
    d, o = base.data, base.optim
    n_val = max(1, round(d.val_fraction * d.synthetic_scenes))
    steps = sorted({r["steps"] for seeds in results.values() for r in seeds.values()})
    lines = [
        f"- **Data**: synthetic scenes with tasks {', '.join(d.tasks)} at {d.size[0]}×{d.size[1]} "
        f"pixels; per seed {d.synthetic_scenes - n_val} training and {n_val} validation scenes "
        "(the seed also picks the scene family, so every configuration of a seed sees the same "
        f"scenes in the same order); a held-out test set of {study.test_scenes} scenes of "
        f"family {study.test_seed + 1}, the same for every run.",
        f"- **Training**: {base.trainer.max_epochs} epochs of batch {d.batch_size} "
        f"({', '.join(map(str, steps)) or '–'} optimizer steps per model), AdamW lr {o.lr:g}, "
        f"weight decay {o.weight_decay:g}, {o.schedule} schedule; the checkpoint with the best "
        "validation score (`val/gm_error`) is evaluated on the test set.",
        f"- **Seeds**: {', '.join(map(str, study.seeds))} (model initialisation, batch order, "
        "training scenes).",
        "- **Metrics**: MTI-Net protocol (SPEC §6); edge odsF with 99 thresholds and the NYUD "
        "tolerance; coherence metrics of SPEC §7 on the predictions.",
        f"- **Δm**: per seed, against `{study.reference}` of the same seed (main metrics "
        "semseg mIoU, depth RMSE, normals mean angle, edge odsF), then mean over seeds.",
        "- **Spread** (±): sample standard deviation over seeds (n − 1); none with one seed.",
        "- **Train time**: sum of the training steps' wall time (forward, backward, optimizer; "
        "no data loading or validation), all models of the configuration together; wall time "
        "depends on the machine and on its load while the run trained.",
    ]
    if test:
        lines.append(
            "- **Attainable coherence** (the test targets themselves): depth–normal "
            f"{fmt_value(test.get('depth_normal_mean'))}°, "
            f"boundary F {fmt_value(test.get('boundary_F'))}."
        )
    return lines


def _config_section(
    study: Study, name: str, values: Mapping[str, Mapping[int, float]], tasks: Sequence[str]
) -> list[str]:
    conf = study.configurations[name]
    seeds = sorted({s for per in values.values() for s in per})
    overrides = ", ".join(f"`{k}={v}`" for k, v in conf.overrides.items()) or "none"
    order = ["delta_m", *(f"delta_m/{t}" for t in tasks)]
    order += [k for k in values if k.split("/")[0] in tasks]
    order += [k for k in values if k.startswith("coherence/")]
    order += ["params", "train_seconds", "seconds_per_step"]
    rows = []
    for key in order:
        if key not in values:
            continue
        per = values[key]
        cells = [fmt(key, agg.Stats.of({s: per[s]})) if s in per else "–" for s in seeds]
        rows.append([label_of(key), fmt(key, agg.Stats.of(per)), *cells])
    header = ["metric", "mean ± std", *(f"seed {s}" for s in seeds)]
    what = f"Overrides of the base configuration: {overrides}" + (
        "; one model per task." if conf.per_task else "."
    )
    if conf.refine_of is not None:
        options = ", ".join(f"`{k}={v}`" for k, v in (conf.refine or {}).items()) or "defaults"
        what = (
            f"The models of `{conf.refine_of}` (same runs, not trained again); their test depth "
            f"and normals refined to agree (`mtcp.inference.refine`, {options})."
        )
    return [
        f"### {conf.label} (`{name}`)",
        "",
        what,
        "",
        *markdown_table(header, rows),
        "",
    ]


def write_plots(
    study: Study, results: Mapping[str, Mapping[int, Any]], plot_dir: Path
) -> list[tuple[str, Path]]:
    """Learning curves per configuration group and the loss weights; ``[(title, path)]``."""
    labels = {n: c.label for n, c in study.configurations.items()}
    tasks = study.tasks
    written = []
    groups: dict[str, list[str]] = {}
    for name, conf in study.configurations.items():
        if conf.refine_of is not None:  # the same training as its parent: no curve of its own
            continue
        for group in conf.groups:
            groups.setdefault(group, []).append(name)
    for group, names in groups.items():
        runs = {n: results[n] for n in names if n in results}
        if not runs:
            continue
        title = f"learning curves: {group} (mean over seeds, band = min–max)"
        path = plot_dir / f"curves_{group}.png"
        atomic_write_bytes(path, plots.curves_plot(runs, labels, tasks, title))
        written.append((title, path))
    adaptive = {
        n: seeds
        for n, seeds in results.items()
        if _weights_change(seeds.values()) and study.configurations[n].refine_of is None
    }
    if adaptive:
        title = "loss weights over training (per-task w_t at each window end)"
        path = plot_dir / "loss_weights.png"
        atomic_write_bytes(path, plots.weights_plot(adaptive, labels, title))
        written.append((title, path))
    return written


def _weights_change(runs: Any) -> bool:
    """True when some run's loss weights took more than one value over training."""
    return any(len({str(r.get("w")) for r in run.get("weights_history") or []}) > 1 for run in runs)


def _best(study: Study, table: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """One line naming the configuration with the best mean of each quality column."""
    parts = []
    for key in keys:
        if key in ("params", "train_seconds"):
            continue
        means = {n: agg.Stats.of(v.get(key)).mean for n, v in table.items()}
        means = {n: m for n, m in means.items() if math.isfinite(m)}
        if key == "delta_m":
            means.pop(study.reference, None)
        if means:
            pick = max if agg.higher_is_better(key) else min
            name = pick(means, key=means.get)
            parts.append(f"{label_of(key)[:-2]}: `{name}` ({fmt_value(means[name])})")
    return [f"Best mean per column — {'; '.join(parts)}.", ""] if parts else []


def render(
    study: Study,
    out_dir: str | Path,
    report_path: str | Path,
    command: str,
) -> str:
    """Write the plots into ``out_dir/plots`` and return the Markdown of the report."""
    out_dir, report_path = Path(out_dir), Path(report_path)
    results = agg.collect(study, out_dir)
    source_version([r for seeds in results.values() for r in seeds.values()])  # one version
    table = agg.per_seed(study, results)
    tasks = study.tasks
    test = read_json(out_dir / TEST_SET_FILE) or {}
    verdicts = [agg.judge(c, study, results) for c in study.claims]
    figures = write_plots(study, results, out_dir / PLOTS_DIR)
    lines = [
        f"# Experiments: {study.name}" + (" (quick subset)" if study.is_quick else ""),
        "",
        f"Generated by `{command}` from the result files in "
        f"`{_rel(out_dir, report_path.parent)}/`; do not edit by hand. Add `--report-only` "
        "to re-generate it from those files without training; runs whose result file exists "
        "are skipped when the command is run again.",
        "",
    ]
    if study.is_quick:
        lines += [
            "**This is the `--quick` subset (a few steps, one seed): a smoke test of the "
            "pipeline, not a result.**",
            "",
        ]
    lines += ["## Setup", "", *_setup(study, results, test), ""]
    keys = summary_keys(tasks)
    rows = [
        [f"{study.configurations[n].label} (`{n}`)"]
        + [fmt(k, agg.Stats.of(table.get(n, {}).get(k))) for k in keys]
        + [str(len(results.get(n, {})))]
        for n in study.configurations
    ]
    lines += [
        "## Results (test set, mean ± std over seeds)",
        "",
        *markdown_table(["configuration", *(label_of(k) for k in keys), "seeds"], rows),
        "",
        *_best(study, table, keys),
    ]
    missing = [
        f"`{n}` seed {s}"
        for s in study.seeds
        for n in study.configurations
        if s not in results.get(n, {})
    ]
    if missing:
        lines += [f"Not run (yet): {', '.join(missing)}.", ""]
    lines += ["## Which claims hold at this scale", "", *claim_lines(verdicts), ""]
    lines += ["## Did training converge?", "", *convergence_lines(study, results)]
    if figures:
        lines += ["## Plots", ""]
        for title, path in figures:
            lines += [f"![{title}]({_rel(path, report_path.parent)})", ""]
    lines += ["## Per configuration", ""]
    for name in study.configurations:
        if name in table:
            lines += _config_section(study, name, table[name], tasks)
    lines += _runtime(results)
    return "\n".join(lines).rstrip() + "\n"


def _runtime(results: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> list[str]:
    every = [r for seeds in results.values() for r in seeds.values()]
    runs = [r for r in every if r.get("refine_of") is None]  # refined: same training
    if not runs:
        return []
    total = sum(r["wall_seconds"] for r in runs) + sum(r.get("eval_seconds", 0) for r in every)
    env = runs[0].get("environment", {})
    lines = [
        "## Runtime",
        "",
        f"{len(runs)} runs took {total / 60:.1f} min of wall time in all (training, validation "
        f"and test evaluation), on {env.get('cpu_count')} CPU cores with "
        f"{env.get('torch_threads')} torch thread(s) (torch {env.get('torch')}, "
        f"GPU: {env.get('cuda') or 'none'}).",
        "",
    ]
    refined = sorted({r["configuration"] for r in every if r.get("refine_of")})
    for name in refined:
        done = [r for r in every if r["configuration"] == name]
        images = sum(len(next(iter(r["per_image"].values()), [])) for r in done)
        seconds = sum(r.get("eval_seconds", 0.0) for r in done)
        lines += [
            f"`{name}`: evaluating with the refinement took {seconds:.1f} s for {images} test "
            f"images ({seconds / max(images, 1):.3f} s per image, network and metrics included).",
            "",
        ]
    lines += [f"All results come from mtcp source version `{source_version(every)}`.", ""]
    if not any(r.get("environment", {}).get("cuda") for r in runs):
        lines += [
            "Scale: every run used the CPU. The NYUD scale (480×640 images, `mtcp_base`) on a "
            "GPU is untested by this study.",
            "",
        ]
    return lines


def source_version(results: Sequence[Mapping[str, Any]]) -> str:
    """The one mtcp source version of ``results``; :class:`MtcpError` when they mix versions."""
    sources = sorted({str(r.get("environment", {}).get("mtcp_source")) for r in results})
    if len(sources) > 1:
        raise MtcpError(
            f"the result files come from {len(sources)} mtcp source versions "
            f"({', '.join(sources)}): a report judges results of one version only; re-run "
            "the study on one version"
        )
    return sources[0]


#: a line in the report after which the sections are written by hand and kept by every run
HAND_WRITTEN = (
    "<!-- written by hand below this line: kept when mtcp experiment rewrites the file -->"
)


def keep_hand_written(old: str, new: str) -> str:
    """``new`` followed by the hand-written part of ``old`` (from :data:`HAND_WRITTEN` on)."""
    if HAND_WRITTEN not in old:
        return new
    return new.rstrip("\n") + "\n\n" + old[old.index(HAND_WRITTEN) :]


def write_report(study: Study, out_dir: str | Path, report_path: str | Path, command: str) -> Path:
    """Write the plots and ``report_path`` (atomically), keeping its hand-written sections;
    returns ``report_path``."""
    report_path = Path(report_path)
    old = report_path.read_text(encoding="utf-8") if report_path.is_file() else ""
    text = keep_hand_written(old, render(study, out_dir, report_path, command))
    atomic_write_text(report_path, text)
    return report_path
