"""fp32 vs bf16 vs int8 inference side by side: time, peak memory, agreement and task metrics.

:func:`compare_precisions` measures each (model, size, precision) case in its own process
(``python -m mtcp.benchmark.precision case ...``), so that each peak resident set holds only
that case's weights and activations. Per case:

- time per image: median wall time of ``repeats`` forwards of one image after ``warmup``;
- peak memory: the process's peak resident set during those forwards (``VmHWM``, see
  :class:`mtcp.benchmark.timing.PeakMemory`; it includes Python and the libraries);
- agreement with fp32 on held-out synthetic scenes at the case's size (random weights, the
  same seed in every process): semseg argmax agreement, median relative depth difference,
  median angle between the normals (:func:`agreement`).

``"bf16"`` is :mod:`mtcp.inference.precision` (autocast, bf16 weights, fp32 norms and heads);
``"int8"`` is the static onnxruntime quantization of :mod:`mtcp.export.quantize`, calibrated
on synthetic training scenes; fp32 is PyTorch eager. :func:`precision_metrics` scores a trained
checkpoint on held-out synthetic scenes in each precision.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtcp.benchmark.model import NYUD_TASKS
from mtcp.benchmark.table import markdown_table
from mtcp.benchmark.timing import PeakMemory, time_runs
from mtcp.errors import MtcpError
from mtcp.inference import precision as prec
from mtcp.tasks import get_task

BENCH_PRECISIONS = ("fp32", "bf16", "int8")


@dataclass
class PrecisionCase:
    """One measurement. ``size`` is ``(H, W)``; ``calibration``: int8 calibration scenes;
    ``scenes``: held-out scenes the outputs are compared on."""

    model: str = "mtcp_tiny"
    size: tuple[int, int] = (240, 320)
    precision: str = "fp32"
    tasks: dict[str, int] = field(default_factory=lambda: dict(NYUD_TASKS))
    warmup: int = 1
    repeats: int = 3
    seed: int = 0
    calibration: int = 8
    scenes: int = 2
    threads: int | None = None

    @property
    def slug(self) -> str:
        return f"{self.model}_{self.size[0]}x{self.size[1]}"


def held_out_scenes(size: Sequence[int], tasks: Mapping[str, int], n: int) -> Tensor:
    """``n`` synthetic test-pool scenes (never trained on), normalised ``[n, 3, H, W]``."""
    from mtcp.data.build import build_dataset

    dataset = build_dataset("synthetic", "test", tasks, size=(int(size[0]), int(size[1])), n=n)
    return torch.stack([dataset[i]["image"] for i in range(n)])


def agreement(
    outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Agreement of raw outputs ``{task: [B, C, H, W]}`` with the fp32 ``reference``:
    ``<task>_argmax`` (fraction of equal class ids), ``<task>_rel`` (median
    ``|d - d_ref| / |d_ref|``), ``<task>_deg`` (median angle in degrees)."""
    out: dict[str, float] = {}
    for task, ref in reference.items():
        got, kind = outputs[task], get_task(task).kind
        if kind == "classes":
            out[f"{task}_argmax"] = float((got.argmax(1) == ref.argmax(1)).mean())
        elif kind == "depth":
            rel = np.abs(got - ref) / np.maximum(np.abs(ref), 1e-6)
            out[f"{task}_rel"] = float(np.median(rel))
        elif kind == "normals":
            a = F.normalize(torch.from_numpy(got), dim=1)
            b = F.normalize(torch.from_numpy(ref), dim=1)
            cos = (a * b).sum(1).clamp(-1, 1)
            out[f"{task}_deg"] = float(torch.rad2deg(torch.acos(cos)).median())
    return out


def _model(case: PrecisionCase) -> torch.nn.Module:
    from mtcp.models import create_model

    torch.manual_seed(case.seed)
    return create_model(case.model, case.tasks, depth_init=3.0).eval()


def write_int8(case: PrecisionCase, path: Path) -> Path:
    """The int8 graph of ``case``'s model (same seed), calibrated on synthetic train scenes."""
    from mtcp.export.quantize import calibration_images, export_int8

    images = calibration_images("synthetic", case.size, case.tasks, n=case.calibration)
    note = f"{len(images)} synthetic train scenes"
    # not verified against PyTorch here: the agreement with the fp32 case is measured anyway
    model = _model(case)
    return export_int8(model, path, case.size, images, calibration_note=note, verify=False)


def _forward(case: PrecisionCase, work: Path) -> tuple[Callable[[Tensor], dict], str]:
    if case.precision == "int8":
        from mtcp.inference.onnx_runtime import OnnxModel

        runner = OnnxModel(work / f"{case.slug}.int8.onnx", threads=torch.get_num_threads())
        return runner, "int8"
    model = _model(case)
    precision = prec.resolve_precision(case.precision, "cpu")
    prec.prepare_model(model, precision)

    def run(x: Tensor) -> dict:
        with torch.inference_mode(), prec.autocast(precision):
            return {k: v.float() for k, v in model(x).items()}

    return run, precision


def run_case(case: PrecisionCase, work: Path) -> dict[str, Any]:
    """Measure ``case`` in this process; raw outputs on the held-out scenes go to
    ``work/<slug>.<precision>.npz``. Returns the JSON-ready result."""
    if case.threads:
        torch.set_num_threads(case.threads)
    scenes = held_out_scenes(case.size, case.tasks, case.scenes)
    forward, precision = _forward(case, work)
    image, last = scenes[:1], []

    def timed() -> None:
        last[:] = [forward(image)]

    with PeakMemory("cpu") as mem:
        runs = time_runs(timed, "cpu", case.warmup, case.repeats)
    outputs = last + [forward(scenes[i : i + 1]) for i in range(1, len(scenes))]
    raw = {t: torch.cat([o[t] for o in outputs]).numpy() for t in case.tasks}
    npz = work / f"{case.slug}.{case.precision}.npz"
    np.savez(npz, **raw)
    return {
        "case": asdict(case),
        "precision": precision,
        "ms_per_image": statistics.median(runs["ms"]),
        "ms_min": min(runs["ms"]),
        "cpu_s": statistics.median(runs["cpu_s"]),
        "peak_gib": mem.gib,
        "outputs": str(npz),
    }


def _subprocess(command: str, case: PrecisionCase, work: Path, timeout: float | None) -> Any:
    args = [sys.executable, "-m", "mtcp.benchmark.precision", command]
    args += [json.dumps(asdict(case)), str(work)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_precisions(
    models: Sequence[tuple[str, tuple[int, int]]],
    precisions: Sequence[str] = BENCH_PRECISIONS,
    timeout: float | None = None,
    **case_options: Any,
) -> list[dict[str, Any]]:
    """Measure every ``(model, size)`` in every precision, each in its own process.

    ``case_options`` go to :class:`PrecisionCase` (repeats, warmup, calibration, threads...).
    Returns one result per case (``run_case``'s, or ``{"case", "error"}`` when it failed or
    ran past ``timeout`` seconds), with ``agreement`` with the fp32 case.
    """
    unknown = [p for p in precisions if p not in BENCH_PRECISIONS]
    if unknown:
        raise MtcpError(
            f"unknown precision {unknown[0]!r}; accepted: {', '.join(BENCH_PRECISIONS)}"
        )
    order = ["fp32"] + [p for p in precisions if p != "fp32"]
    results = []
    with tempfile.TemporaryDirectory(prefix="mtcp-precision-") as tmp:
        work = Path(tmp)
        for name, size in models:
            reference = None
            for precision in order:
                case = PrecisionCase(name, tuple(size), precision, **case_options)
                if precision == "int8":
                    made = _subprocess("int8", case, work, timeout)
                    if made and "error" in made:
                        results.append({"case": asdict(case), "error": made["error"]})
                        continue
                result = _subprocess("case", case, work, timeout)
                result.setdefault("case", asdict(case))
                if "error" not in result:
                    outputs = dict(np.load(result["outputs"]))
                    if precision == "fp32":
                        reference = outputs
                    if reference is not None:
                        result["agreement"] = agreement(outputs, reference)
                if precision in precisions:
                    results.append(result)
    return results


def precision_metrics(
    checkpoint: str | os.PathLike[str],
    precisions: Sequence[str] = BENCH_PRECISIONS,
    scenes: int = 16,
    calibration: int = 16,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{precision: {task: {metric: value}}}`` of an ``mtcp train`` checkpoint on ``scenes``
    held-out synthetic scenes at its training size (the MTI-Net protocol, no coherence). int8
    is its quantized graph, calibrated on ``calibration`` scenes of its training data.

    With fp32 among ``precisions``, each precision also has ``"agreement"``: :func:`agreement`
    of its raw outputs with fp32's on the same scenes (fp32's own: exact agreement), the
    figures of a trained model rather than of random weights."""
    from torch.utils.data import DataLoader

    from mtcp.data.build import build_dataset
    from mtcp.export.quantize import calibration_images, export_int8, training_source
    from mtcp.inference import Predictor, load_checkpoint_model
    from mtcp.inference.onnx_runtime import OnnxModel
    from mtcp.metrics import build_metrics, to_floats

    _, tasks, meta = load_checkpoint_model(checkpoint)
    size = tuple(meta["config"]["data"]["size"])
    dataset = build_dataset("synthetic", "test", tasks, size=size, n=scenes)
    results: dict[str, dict[str, dict[str, float]]] = {}
    raw: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="mtcp-precision-") as tmp:
        for precision in precisions:
            model, _, _ = load_checkpoint_model(checkpoint)
            if precision == "int8":
                source, seed = training_source(checkpoint)
                images = calibration_images(source, size, tasks, n=calibration, seed=seed)
                path = export_int8(model, Path(tmp) / "m.int8.onnx", size, images)
                predictor = Predictor(OnnxModel(path), tasks, size)
            else:
                predictor = Predictor(model, tasks, size, precision=precision)
            metrics = build_metrics(tasks, "mtinet", coherence=False)
            outputs: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
            for batch in DataLoader(dataset, batch_size=4):
                with torch.inference_mode(), prec.autocast(predictor.precision):
                    out = {t: v.float() for t, v in predictor.model(batch["image"]).items()}
                metrics.update({t: out[t] for t in tasks}, batch)
                for t in tasks:
                    outputs[t].append(out[t].numpy())
            results[precision] = to_floats(metrics.compute())
            raw[precision] = {t: np.concatenate(v) for t, v in outputs.items()}
    if "fp32" in raw:
        for precision in results:
            results[precision]["agreement"] = agreement(raw[precision], raw["fp32"])
    return results


def _fmt(value: float | None, digits: int = 1) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def format_precision_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row per case, time and memory relative to the model's fp32 case."""
    fp32 = {
        r["case"]["model"]: r
        for r in results
        if r["case"]["precision"] == "fp32" and "error" not in r
    }
    header = [
        "model",
        "size",
        "precision",
        "ms/img",
        "× fp32 time",
        "CPU-s/img",
        "peak GiB",
        "× fp32 peak",
        "semseg argmax agree",
        "depth median rel diff",
        "normals median °",
    ]
    rows = []
    for r in results:
        c = r["case"]
        size = "x".join(map(str, c["size"]))
        if "error" in r:
            rows.append([c["model"], size, c["precision"], f"failed: {r['error']}"] + [""] * 7)
            continue
        ref = fp32.get(c["model"])
        agree = r.get("agreement", {})
        label = (
            c["precision"]
            if r["precision"] == c["precision"]
            else (f"{c['precision']} (ran {r['precision']})")
        )
        rows.append(
            [
                c["model"],
                size,
                label,
                _fmt(r["ms_per_image"]),
                _fmt(r["ms_per_image"] / ref["ms_per_image"], 2) if ref else "–",
                _fmt(r["cpu_s"], 2),
                _fmt(r["peak_gib"], 2),
                _fmt(r["peak_gib"] / ref["peak_gib"], 2) if ref else "–",
                _fmt(100 * agree["semseg_argmax"], 2) + " %" if "semseg_argmax" in agree else "–",
                _fmt(100 * agree["depth_rel"], 3) + " %" if "depth_rel" in agree else "–",
                _fmt(agree.get("normals_deg"), 3),
            ]
        )
    return markdown_table(header, rows)


def format_metrics_table(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Markdown: one row per task metric, one column per precision plus the relative
    difference of each reduced precision from fp32."""
    precisions = list(metrics)
    ref = metrics.get("fp32")
    others = [p for p in precisions if p != "fp32"] if ref else []
    header = ["metric", *precisions, *[f"{p} vs fp32" for p in others]]
    rows = []
    first = metrics[precisions[0]]
    for task, values in first.items():
        for key in values:
            row = [f"{task}/{key}"] + [_fmt(float(metrics[p][task][key]), 4) for p in precisions]
            for p in others:
                a, b = float(metrics[p][task][key]), float(ref[task][key])
                row.append(f"{100 * (a - b) / abs(b):+.2f} %" if b else "–")
            rows.append(row)
    return markdown_table(header, rows)


def _main(argv: Sequence[str]) -> int:
    command, case_json, work = argv
    options = json.loads(case_json)
    options["size"] = tuple(options["size"])
    case = PrecisionCase(**options)
    if case.threads:
        torch.set_num_threads(case.threads)
    if command == "int8":
        write_int8(case, Path(work) / f"{case.slug}.int8.onnx")
        print(json.dumps({}))
    else:
        print(json.dumps(run_case(case, Path(work))))
    return 0


if __name__ == "__main__":  # one isolated case: python -m mtcp.benchmark.precision case JSON DIR
    sys.exit(_main(sys.argv[1:]))
