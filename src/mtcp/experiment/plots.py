"""Figures of a study report (PNG bytes, matplotlib without pyplot state).

* :func:`curves_plot`: learning curves of a group of configurations — the summed raw task
  losses ``Σ_t L_t`` over the training epochs, ``val/gm_error`` (its last fifth, the window of
  the convergence check, shaded) and each task's validation main metric — as the mean over
  seeds with a min–max band.
* :func:`weights_plot`: the per-task loss weights over training steps, one panel per
  configuration, one line style per seed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from mtcp.tasks import get_task

SEED_STYLES = ("-", "--", ":", "-.")


def _figure(n_panels: int, cols: int, title: str) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    rows = (n_panels + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=100)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    fig.suptitle(title)
    return fig, axes


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def seed_series(result: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, dict[int, float]]:
    """``{series: {epoch: value}}`` of one run: ``"train_loss"`` (Σ_t L_t over every model of
    the run, epochs where all tasks are known) and ``"<task>/<main metric>"`` (validation)."""
    losses: dict[int, dict[str, float]] = {}
    series: dict[str, dict[int, float]] = {}
    for curve in result["curves"]:
        for rec in curve["epochs"]:
            losses.setdefault(rec["epoch"], {}).update(rec["train_loss"])
            for task in curve["tasks"]:
                key = f"{task}/{get_task(task).main_metric}"
                if key in rec["val"]:
                    series.setdefault(key, {})[rec["epoch"]] = rec["val"][key]
    series["train_loss"] = {
        e: sum(v[t] for t in tasks) for e, v in losses.items() if all(t in v for t in tasks)
    }
    # val/gm_error of the run: the geometric mean over its models (one per task or one)
    gm: dict[int, list[float]] = {}
    for curve in result["curves"]:
        for rec in curve["epochs"]:
            if "gm_error" in rec["val"]:
                gm.setdefault(rec["epoch"], []).append(rec["val"]["gm_error"])
    n_models = len(result["curves"])
    series["gm_error"] = {
        e: math.exp(sum(math.log(max(v, 1e-12)) for v in vals) / len(vals))
        for e, vals in gm.items()
        if len(vals) == n_models
    }
    return series


def curves_plot(
    runs: Mapping[str, Mapping[int, Mapping[str, Any]]],
    labels: Mapping[str, str],
    tasks: Sequence[str],
    title: str,
) -> bytes:
    """PNG of the learning curves of ``runs`` (``{configuration: {seed: result}}``)."""
    keys = ["train_loss", "gm_error", *(f"{t}/{get_task(t).main_metric}" for t in tasks)]
    last_epoch = 0
    fig, axes = _figure(len(keys), 3, title)
    for colour, (name, seeds) in enumerate(runs.items()):
        per_seed = [seed_series(r, tasks) for r in seeds.values()]
        for ax, key in zip(axes, keys):
            epochs = sorted(set.intersection(*(set(s.get(key, {})) for s in per_seed)))
            if not epochs:
                continue
            last_epoch = max(last_epoch, epochs[-1])
            values = [[s[key][e] for s in per_seed] for e in epochs]
            mean = [sum(v) / len(v) for v in values]
            ax.plot(epochs, mean, color=f"C{colour}", label=labels[name], marker=".")
            if len(per_seed) > 1:
                low, high = [min(v) for v in values], [max(v) for v in values]
                ax.fill_between(epochs, low, high, color=f"C{colour}", alpha=0.15, lw=0)
    for ax, key in zip(axes, keys):
        if key == "train_loss":
            ax.set_ylabel("train Σ_t L_t (epoch mean)")
            ax.set_yscale("log")
        elif key == "gm_error":
            ax.set_ylabel("val/gm_error ↓ (model selection)")
            if last_epoch > 1:  # the window of the convergence check
                k = max(1, round(last_epoch / 5))
                ax.axvspan(last_epoch - k, last_epoch, color="0.85", lw=0, label="last fifth")
        else:
            task = key.split("/")[0]
            arrow = "↑" if get_task(task).higher_is_better else "↓"
            ax.set_ylabel(f"val {key} {arrow}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _png(fig)


def weights_plot(
    runs: Mapping[str, Mapping[int, Mapping[str, Any]]],
    labels: Mapping[str, str],
    title: str,
) -> bytes:
    """PNG of the loss-weight histories of ``runs`` (those with a ``weights_history``)."""
    runs = {n: s for n, s in runs.items() if any(r.get("weights_history") for r in s.values())}
    fig, axes = _figure(max(len(runs), 1), 2 if len(runs) > 1 else 1, title)
    for ax, (name, seeds) in zip(axes, runs.items()):
        for style, (seed, result) in zip(SEED_STYLES, sorted(seeds.items())):
            history = [r for r in result.get("weights_history") or [] if r.get("w")]
            if not history:
                continue
            for colour, task in enumerate(history[0]["w"]):
                steps = [r["step"] for r in history]
                weights = [r["w"][task] for r in history]
                label = f"{task}, seed {seed}"
                ax.plot(steps, weights, style, color=f"C{colour}", label=label, marker=".")
        ax.set_title(labels[name], fontsize=9)
        ax.set_xlabel("optimizer step (end of the weight window)")
        ax.set_ylabel("weight w_t")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    return _png(fig)
