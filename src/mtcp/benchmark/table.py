"""Markdown reports of :func:`~mtcp.benchmark.model.run_benchmark` results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtcp.benchmark.machine import machine_lines
from mtcp.benchmark.model import PHASES


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


RESULT_COLUMNS = (
    "model",
    "size",
    "batch",
    "device",
    "precision",
    "compile",
    "channels-last",
    "params (M)",
    "GFLOPs/img",
    "train img/s",
    "train ms/step",
    "train CPU-s/step",
    "train peak GiB",
    "infer img/s",
    "infer ms/img",
    "infer CPU-s/batch",
    "infer peak GiB",
)


def result_row(result: Mapping[str, Any]) -> list[str]:
    """One table row (:data:`RESULT_COLUMNS`) of a :func:`run_benchmark` result."""
    c = result["config"]
    train, infer = result.get("train", {}), result.get("inference", {})
    model = c["model"] + "".join(f" {k}={v}" for k, v in c.get("model_args", {}).items())
    return [
        model,
        "x".join(map(str, c["size"])),
        str(c["batch"]),
        c["device"],
        c["precision"],
        "yes" if c["compile"] else "no",
        "yes" if c["channels_last"] else "no",
        _fmt(result["parameters"] / 1e6, 1),
        _fmt(result.get("gflops_per_image"), 1),
        _fmt(train.get("img_per_s")),
        _fmt(train.get("ms_median"), 1),
        _fmt(train.get("cpu_s_median")),
        _fmt(train.get("peak_memory_gib")),
        _fmt(infer.get("img_per_s")),
        _fmt(infer.get("ms_per_image"), 1),
        _fmt(infer.get("cpu_s_median")),
        _fmt(infer.get("peak_memory_gib")),
    ]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """Machine description (of the first result) and one table row per result."""
    if not results:
        return ""
    lines = machine_lines(results[0]["machine"])
    first = results[0]["config"]
    mem = ", ".join(sorted({r[p]["memory"] for r in results for p in PHASES if p in r}))
    timing = "CUDA events" if first["device"] == "cuda" else "wall clock; CPU-s = process CPU time"
    lines.append(
        f"- medians of {first['repeats']} timed run(s) after {first['warmup']} warm-up; "
        f"time: {timing}; memory: {mem}"
    )
    table = markdown_table(RESULT_COLUMNS, [result_row(r) for r in results])
    return "\n".join(lines) + "\n\n" + table
