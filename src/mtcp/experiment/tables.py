"""Labels and number formats of the study report's tables (:mod:`.report`, :mod:`.verdicts`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mtcp.experiment import aggregate as agg
from mtcp.tasks import get_task

COHERENCE = {
    "coherence/depth_normal_mean": "depth–normal coherence (°)",
    "coherence/boundary_F": "boundary coherence F",
}
EXTRA_LABELS = {
    "delta_m": "Δm (%)",
    "delta_m_worst": "worst-task Δm term (%)",
    "params": "parameters (M)",
    "train_seconds": "train time (s)",
    "seconds_per_step": "s / step",
}


def label_of(key: str) -> str:
    """Column / row label of a value key, with ↑ or ↓ for its better direction."""
    text = COHERENCE.get(key) or EXTRA_LABELS.get(key) or key
    if key.startswith("delta_m/"):
        text = f"Δm term {key.split('/', 1)[1]} (%)"
    better = agg.direction(key)  # None: a setting such as edge/odsT, no arrow
    return text if better is None else f"{text} {'↑' if better else '↓'}"


def decimals(value: float) -> int:
    """Decimals shown for a value of this magnitude (3 below 10, 2 below 100, else 1)."""
    size = abs(value)
    return 3 if size < 10 else 2 if size < 100 else 1


def fmt_value(value: float | None) -> str:
    """One number with :func:`decimals` decimals (``–`` when missing or not finite)."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{decimals(value)}f}"


def fmt(key: str, stats: agg.Stats) -> str:
    """``mean ± std`` of ``stats`` (parameters in millions; ``–`` when no finite value)."""
    if stats.n == 0:
        return "–"
    if key == "params":
        return f"{stats.mean / 1e6:.3f}"
    d = decimals(stats.mean)
    if stats.std is None:
        return f"{stats.mean:.{d}f}"
    return f"{stats.mean:.{d}f} ± {stats.std:.{d}f}"


def summary_keys(tasks: Sequence[str]) -> list[str]:
    """Columns of the summary table: Δm, each task's main metric, coherence, cost."""
    mains = [f"{t}/{get_task(t).main_metric}" for t in tasks]
    return ["delta_m", *mains, *COHERENCE, "params", "train_seconds"]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table, first column left-aligned, the others right-aligned."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    return [_row(header), _row(align), *(_row(r) for r in rows)]
