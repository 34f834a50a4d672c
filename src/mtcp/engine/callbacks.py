"""Training callbacks and reports: loss-weight history (CSV + plot), prediction pictures and
the before/after metric table.

Files written into the run folder (atomically, by process 0 only):

* ``loss_weights.csv``: one row per update window of the weighting scheme (for LPS: per-task
  ``lbar`` = mean of ``log(1 + L_t)`` over the window, ``r`` = progress ratio, ``w`` = weight
  used from the next window on);
* ``loss_weights.png``: the weights (and, for LPS, the progress ratios) over training;
* ``predictions.png``: image, prediction and target of every task for a few validation images.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from mtcp import viz
from mtcp.engine.module import is_count
from mtcp.inference.maps import to_numpy_maps
from mtcp.io import atomic_write_bytes, atomic_write_text
from mtcp.tasks import IMAGENET_MEAN, IMAGENET_STD, TASKS, get_task

# --- loss weights ----------------------------------------------------------------------------


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """``{"w": {"semseg": 1.2}, "epoch": 3}`` → ``{"w/semseg": 1.2, "epoch": 3}``."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            out.update({f"{key}/{k}": v for k, v in value.items()})
        elif value is not None:
            out[key] = value
    return out


def weights_csv(history: Sequence[Mapping[str, Any]]) -> str:
    """The weighting history as CSV text (one row per window; empty cells for missing values)."""
    rows = [flatten_record(r) for r in history]
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def weights_plot(history: Sequence[Mapping[str, Any]], title: str = "loss weights") -> bytes:
    """PNG bytes of the per-task weights ``w`` (and ratios ``r`` when present) per window."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    panels = [k for k in ("w", "r", "lbar") if any(isinstance(r.get(k), Mapping) for r in history)]
    labels = {"w": "weight w_t", "r": "progress ratio r_t", "lbar": "mean log(1 + L_t)"}
    fig = Figure(figsize=(5.0, 2.4 * max(len(panels), 1)), dpi=100)
    axes = [fig.add_subplot(len(panels) or 1, 1, i + 1) for i in range(len(panels) or 1)]
    for ax, key in zip(axes, panels):
        tasks = next(r[key] for r in history if isinstance(r.get(key), Mapping)).keys()
        for task in tasks:
            points = [
                (r.get("epoch", i), r[key][task])
                for i, r in enumerate(history)
                if isinstance(r.get(key), Mapping)
            ]
            ax.plot(*zip(*points), marker="o", markersize=3, label=task)
        ax.set_ylabel(labels[key])
        ax.grid(alpha=0.3)
    axes[0].set_title(title)
    axes[-1].set_xlabel("epoch")
    if panels:
        axes[0].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class LossWeightsReport(L.Callback):
    """Writes ``loss_weights.csv`` and ``loss_weights.png`` after every weighting update."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def _write(self, pl_module: L.LightningModule) -> None:
        scheme = pl_module.weighting
        history = list(scheme.history)
        if not history:
            return
        atomic_write_text(self.out_dir / "loss_weights.csv", weights_csv(history))
        title = f"{scheme.name} weighting"
        atomic_write_bytes(self.out_dir / "loss_weights.png", weights_plot(history, title))

    # the module updates the weights in its own on_train_epoch_end, which runs after this
    # callback's; so the report is refreshed when the next epoch starts and when fitting ends
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.current_epoch > 0:
            self._write(pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._write(pl_module)


# --- prediction pictures -----------------------------------------------------------------------


def denormalize(image: torch.Tensor) -> np.ndarray:
    """Normalised ``[3, H, W]`` image → ``uint8 [H, W, 3]`` RGB."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * std + mean).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def target_maps(batch: Mapping[str, Any], tasks: Mapping[str, int], i: int) -> dict:
    """Sample ``i`` of a tensor batch → numpy targets in the same layout as predictions."""
    maps: dict[str, np.ndarray] = {}
    for task in tasks:
        value = batch[task][i].detach().cpu()
        kind = get_task(task).kind
        if kind == "normals":
            maps[task] = value.permute(1, 2, 0).numpy()
        elif kind == "classes":
            maps[task] = value.numpy()
        else:
            maps[task] = value[0].numpy()
    return maps


@torch.no_grad()
def prediction_picture(
    model: torch.nn.Module,
    batch: Mapping[str, Any],
    tasks: Mapping[str, int],
    class_names: Mapping[str, list[str]] | None = None,
) -> np.ndarray:
    """One panel row per image: the image and every task's prediction, then its targets; each
    map with its scale underneath (one depth range for a prediction and its target)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = model(batch["image"].to(device))
    model.train(was_training)
    rows = []
    for i, pred in enumerate(to_numpy_maps(outputs, tasks)):
        target = target_maps(batch, tasks, i)
        depth_range = {}
        if "depth" in target and (target["depth"] > 0).any():
            valid = target["depth"][target["depth"] > 0]
            depth_range = {"vmin": float(valid.min()), "vmax": float(valid.max())}
        image = denormalize(batch["image"][i])
        blank = np.full_like(image, 255)
        for first, maps in (({"image": image}, pred), ({"target": blank}, target)):
            pics = first | {t: _colour(t, maps[t], tasks[t], depth_range) for t in tasks}
            legends = {
                t: viz.legend(
                    t,
                    maps[t],
                    image.shape[1],
                    tasks[t],
                    (class_names or {}).get(t),
                    **(depth_range if t == "depth" else {}),
                )
                for t in tasks
            }
            rows.append(viz.panel(pics, legends=legends))
    return viz.stack(rows)


def _colour(task: str, value: np.ndarray, channels: int, depth_range: dict) -> np.ndarray:
    kwargs = depth_range if task == "depth" else {}
    return viz.colorize(task, value, n_classes=channels, **kwargs)


class PredictionPicture(L.Callback):
    """After every validation, draws a few validation images into ``predictions.png``
    (and TensorBoard's image tab)."""

    def __init__(self, out_dir: str | Path, batch: Mapping[str, Any]) -> None:
        self.path = Path(out_dir) / "predictions.png"
        self.batch = batch

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        picture = prediction_picture(
            pl_module.model, self.batch, pl_module.tasks, getattr(pl_module, "class_names", None)
        )
        viz.save_png(self.path, picture)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("predictions", picture, trainer.global_step, dataformats="HWC")


# --- metric tables -------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def metrics_table(columns: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Text table of ``{column: {group: {metric: value}}}`` (e.g. "before" / "after").

    Rows are ``group/metric`` in the order first seen (counters ``n_*`` left out); the arrow
    says which direction is better for the main metric of each task.
    """
    names = list(columns)
    rows: list[tuple[str, ...]] = []
    seen: list[tuple[str, str]] = []
    for results in columns.values():
        for group, values in results.items():
            seen += [(group, m) for m in values if (group, m) not in seen and not is_count(m)]
    for group, metric in seen:
        label = f"{group}/{metric}"
        spec = _spec(group)
        if spec is not None and metric == spec.main_metric:
            label += " ↑" if spec.higher_is_better else " ↓"
        rows.append((label, *(_fmt(columns[c].get(group, {}).get(metric)) for c in names)))
    header = ("metric", *names)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths), "  ".join("-" * w for w in widths)]
    lines += [_row(row, widths) for row in rows]
    return "\n".join(lines)


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first = cells[0].ljust(widths[0])
    return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))])


def _spec(group: str) -> Any:
    return TASKS.get(group)
