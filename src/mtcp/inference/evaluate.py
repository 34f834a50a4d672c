"""One evaluation loop: :func:`evaluate` scores a model (or several) on a dataset split.

>>> import mtcp
>>> report = mtcp.evaluate("runs/synthetic_tiny/version_0/checkpoints/best.ckpt", limit=8)
>>> report["metrics"]["depth"]["rmse"]                   # metres

The model is anything :func:`mtcp.load` accepts (``.ckpt``, ``.safetensors``, ``.onnx``), a
:class:`~mtcp.inference.predictor.Predictor`, or a list of predictors whose outputs are scored
jointly (e.g. one single-task model per task). Images go through the resize policy of
:mod:`mtcp.inference.predictor`: fed at the network's input size, the outputs resized back to
each label map's own size before scoring (the release's protocol).

The data is the checkpoint's own source by default (its ``data.source``; an exported file does
not record it, so ``data`` is needed), ``"synthetic"``, a dataset folder (layout detected), a
``Dataset`` of tensor samples, or an iterable of batches already in memory.

Two optional reports (issue 17): ``groups`` (a CSV of image id → group,
:mod:`mtcp.inference.groups`) adds every metric per group and the gaps between groups;
``review`` adds the review score report of :mod:`mtcp.inference.review_check` (ranking of the
images by their real error, flag rates, and with ``"all"`` the corruption and
real-photograph checks).

Two options of the study (issue 15): ``refine`` scores depth and normals after the joint
refinement of :mod:`mtcp.inference.refine` (with each batch's camera, ``batch["intrinsics"]``,
else the training camera scaled to the image), and ``per_image=True`` adds
``report["per_image"]``, the per-image values of :class:`mtcp.metrics.per_image.PerImageValues`
(in evaluation order).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from mtcp.errors import MtcpError
from mtcp.inference.predictor import Predictor, load
from mtcp.inference.refine import refine_options, refine_outputs


def target_coherence_metrics(tasks: Mapping[str, int]) -> Any:
    """Coherence metrics scored on the *targets* (the attainable level, SPEC §7), or None.

    ``update(outputs, batch)`` ignores ``outputs``; ``compute()`` gives ``{"coherence": ...}``
    with the same keys as the validation metrics.
    """
    # lazy: numba kernels and torchmetrics load only when scoring, keeps `mtcp --help` fast
    from mtcp.metrics import MultiTaskMetrics, coherence_metrics

    extra = coherence_metrics(tasks, from_targets=True)
    return MultiTaskMetrics({}, extra) if extra else None


def target_coherence(batches: Iterable[Mapping], tasks: Mapping[str, int]) -> dict[str, Any]:
    """Coherence of the targets of ``batches`` as floats (``{}`` when the tasks have none)."""
    from mtcp.metrics import to_floats  # lazy: as above

    metrics = target_coherence_metrics(tasks)
    if metrics is None:
        return {}
    for batch in batches:
        metrics.update({}, batch)
    return to_floats(metrics.compute())


def _predictors(
    model: Any, device: str | torch.device, trust: bool, precision: str | None
) -> list[Predictor]:
    if isinstance(model, Predictor):
        return [model]
    if isinstance(model, (str, os.PathLike)):
        return [load(model, device=device, trust=trust, precision=precision)]
    items = list(model)
    if not items or not all(isinstance(p, Predictor) for p in items):
        raise MtcpError(
            "evaluate: model must be a file mtcp.load accepts, a Predictor or a list of them"
        )
    return items


def _setting(config: Mapping[str, Any] | None, section: str, key: str) -> Any:
    return ((config or {}).get(section) or {}).get(key)


def _check_tasks(data_tasks: Mapping[str, int], tasks: Mapping[str, int], where: str, source: Any):
    for task, channels in tasks.items():
        if task not in data_tasks:
            raise MtcpError(
                f"{where}: the model predicts {task!r}, which {source} has no labels for"
            )
        if data_tasks[task] != channels:
            raise MtcpError(
                f"{where}: task {task!r} has {channels} classes in the model but "
                f"{data_tasks[task]} in {source}; evaluate on data with the same task set"
            )


def _dataset(
    predictor: Predictor,
    source: str,
    split: str,
    tasks: Mapping[str, int],
    where: str,
    scenes: int | None = None,
) -> Dataset:
    from mtcp.data.build import build_dataset  # lazy: the readers, keeps `mtcp --help` fast

    config = predictor.config
    synthetic = source == "synthetic"
    options = {
        "val_fraction": _setting(config, "data", "val_fraction"),
        "seed": _setting(config, "trainer", "seed"),
        # the training pool's size; the test pool has its own (see build_dataset) unless
        # ``scenes`` sets it
        "n": (scenes if split == "test" else _setting(config, "data", "synthetic_scenes"))
        if synthetic
        else None,
    }
    # synthetic scenes are rendered at the network's size; real data keeps its own size
    dataset = build_dataset(
        source,
        split,
        tasks,
        recipe=None,
        size=predictor.size if synthetic else None,
        **{k: v for k, v in options.items() if v is not None},
    )
    _check_tasks(dict(getattr(dataset, "tasks", tasks)), tasks, where, source)
    return dataset


@torch.no_grad()
def score(
    predictors: Sequence[Predictor],
    batches: Iterable[Mapping[str, Any]],
    metrics: Any,
    targets: Any = None,
    grouped: Any = None,
    ids: set[str] | None = None,
    refine: Mapping[str, Any] | None = None,
    per_image: Any = None,
) -> int:
    """Update ``metrics`` (and the target-coherence ``targets``, the per-group ``grouped``
    metrics, the :class:`~mtcp.metrics.per_image.PerImageValues` ``per_image``) with the joint
    predictions of ``predictors`` on every batch, their depth and normals refined with the
    options ``refine`` when given (:func:`refine_outputs`); returns the number of images seen.
    ``ids`` collects the ids of the images seen (for the groups check)."""
    n_images = 0
    for batch in batches:
        outputs: dict[str, torch.Tensor] = {}
        for predictor in predictors:
            outputs.update(predictor.forward(batch["image"]))
        if refine is not None:
            outputs = refine_outputs(outputs, batch, predictors, refine)
        metrics.update(outputs, batch)
        if per_image is not None:
            per_image.update(outputs, batch)
        if grouped is not None:
            grouped.update(outputs, batch)
        if ids is not None and "id" in batch:
            ids.update(str(i) for i in batch["id"])
        if targets is not None:
            targets.update({}, batch)
        n_images += batch["image"].shape[0]
    return n_images


def evaluate(
    model: str | os.PathLike[str] | Predictor | Sequence[Predictor],
    data: str | os.PathLike[str] | Dataset | Iterable[Mapping[str, Any]] | None = None,
    *,
    split: str = "test",
    protocol: str | None = None,
    metric_dataset: str | None = None,
    references: str | Mapping[str, Any] | None = None,
    batch_size: int = 4,
    limit: int | None = None,
    trust: bool = False,
    device: str | torch.device = "cpu",
    precision: str | None = None,
    targets: bool = True,
    groups: str | os.PathLike[str] | None = None,
    scenes: int | None = None,
    review: str = "none",
    review_rate: float | None = None,
    review_threshold: float | None = None,
    refine: bool | Mapping[str, Any] | None = None,
    per_image: bool = False,
) -> dict[str, Any]:
    """Every metric of the model's tasks, coherence and (with references) Δm.

    Args:
        model: see the module docstring.
        data: see the module docstring; ``None`` = the checkpoint's training source.
        split: ``"test"`` (default), ``"val"`` (carved from train as in training) or
            ``"train"``; for data given as a source.
        protocol: ``"mtinet"`` or ``"atrc"``; default: the checkpoint's, else ``"mtinet"``.
        metric_dataset: ``"nyud"`` or ``"pascal"`` (boundary tolerance); default from the
            detected layout.
        references: single-task results (JSON file, folder or mapping) for Δm.
        batch_size: images per forward pass (synthetic data and in-memory datasets; real
            folders are read one image at a time, their sizes may differ).
        limit: score only the first ``limit`` images.
        trust, device, precision: passed to :func:`mtcp.load` when ``model`` is a file.
        targets: also score the coherence of the targets (``report["targets"]``).
        groups: a groups CSV (:mod:`mtcp.inference.groups`): ``report["groups"]`` holds every
            metric per group and the gaps.
        scenes: synthetic data: the number of held-out test scenes (default 16).
        review: ``"all"`` (with the corruption and real-photograph checks), ``"basic"``
            (ranking and flag rates) or ``"none"`` (default): ``report["review"]``
            (:mod:`mtcp.inference.review_check`; one model and a dataset only).
        review_rate, review_threshold: the review budget (default: the model's calibration).
        refine: score depth and normals refined to agree: True (the defaults) or keyword
            arguments of :func:`mtcp.inference.refine.refine_depth_normals`; needs both tasks.
        per_image: add ``report["per_image"]``, ``{key: [value per image]}``
            (:class:`mtcp.metrics.per_image.PerImageValues`).

    Returns:
        the JSON-ready report: ``checkpoint``, ``model``, ``data``, ``split``, ``n_images``,
        ``protocol``, ``seconds``, ``metrics`` (``{task: {metric: value}, "coherence": ...}``,
        counters included), ``details``, ``targets`` and, with references, ``delta_m`` (%) and
        ``delta_m_terms``; ``groups``, ``review``, ``per_image`` and ``refine`` (the
        refinement's options) when asked for.
    """
    # lazy: numba kernels and torchmetrics load only when scoring, keeps `mtcp --help` fast
    from mtcp.metrics import build_metrics, delta_m, delta_m_terms, load_references, to_floats

    predictors = _predictors(model, device, trust, precision)
    where = str(model) if isinstance(model, (str, os.PathLike)) else "model"
    tasks: dict[str, int] = {}
    for predictor in predictors:
        tasks.update(predictor.tasks)
    first = predictors[0]
    protocol = protocol or _setting(first.config, "eval", "protocol") or "mtinet"
    if data is None:
        data = _setting(first.config, "data", "source")
        if data is None:
            raise MtcpError(
                f"{where}: the file does not record its training data (an exported "
                ".safetensors / .onnx, or a hand-made checkpoint); choose the data: "
                "--data synthetic or --data FOLDER (Python: data=...)"
            )
    source = str(data) if isinstance(data, (str, os.PathLike)) else None
    if source is not None:
        dataset: Any = _dataset(first, source, split, tasks, where, scenes)
        if source != "synthetic":
            batch_size = 1
    else:
        dataset = data
    inner = getattr(dataset, "dataset", dataset)  # a Subset's dataset
    if limit:
        if not isinstance(dataset, Dataset):
            raise MtcpError("evaluate: limit needs a dataset, not an iterable of batches")
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    batches = DataLoader(dataset, batch_size=batch_size) if isinstance(dataset, Dataset) else data
    metric_dataset = metric_dataset or getattr(inner, "metrics_dataset", "nyud")
    metrics = build_metrics(tasks, protocol, dataset=metric_dataset)
    refining = refine_options(refine)
    if refining is not None and not {"depth", "normals"} <= set(tasks):
        raise MtcpError(f"evaluate: refine needs depth and normals; the model predicts {tasks}")
    values = None
    if per_image:
        from mtcp.metrics.per_image import PerImageValues

        values = PerImageValues(tasks, protocol, metric_dataset)
    target_metrics = target_coherence_metrics(tasks) if targets else None
    grouped, seen_ids, assignment = None, set(), {}
    if groups is not None:
        from mtcp.inference.groups import GroupedMetrics, read_groups

        assignment = read_groups(groups)
        grouped = GroupedMetrics(
            assignment, lambda: build_metrics(tasks, protocol, dataset=metric_dataset)
        )
    if review not in ("all", "basic", "none"):
        raise MtcpError(f"evaluate: review must be 'all', 'basic' or 'none', got {review!r}")
    if review != "none" and (len(predictors) != 1 or not isinstance(dataset, Dataset)):
        raise MtcpError("evaluate: the review report needs one model and a dataset")
    start = time.monotonic()
    n_images = score(
        predictors,
        batches,
        metrics,
        target_metrics,
        grouped,
        seen_ids,
        refine=refining,
        per_image=values,
    )
    results = to_floats(metrics.compute())
    report: dict[str, Any] = {
        "checkpoint": where if isinstance(model, (str, os.PathLike)) else None,
        "model": first.name if len(predictors) == 1 else [p.name for p in predictors],
        "data": source if source is not None else type(data).__name__,
        "split": split,
        "precision": first.precision if len(predictors) == 1 else [p.precision for p in predictors],
        "n_images": n_images,
        "protocol": metrics.describe(),
        "seconds": round(time.monotonic() - start, 2),
        "metrics": results,
        "details": metrics.details(),
        "targets": to_floats(target_metrics.compute()) if target_metrics is not None else {},
    }
    if refining is not None:
        report["refine"] = refining
    if values is not None:
        report["per_image"] = values.values(metrics)
    if grouped is not None:
        from mtcp.inference.groups import check_groups

        check_groups(assignment, seen_ids, groups)
        report["groups"] = grouped.compute()
    if review != "none":
        from mtcp.inference.review_check import review_check

        report["review"] = review_check(
            first.forward_network,
            dataset,
            first.tasks,
            first.size,
            first.intrinsics,
            first.review_calibration,
            protocol=protocol,
            metric_dataset=metric_dataset,
            corruptions=review == "all",
            photos=review == "all",
            rate=review_rate,
            threshold=review_threshold,
            batch_size=batch_size,
        )
    if references:
        refs = load_references(references)
        report["delta_m"] = delta_m(results, refs, tasks=list(tasks))
        report["delta_m_terms"] = delta_m_terms(results, refs, tasks=list(tasks))
    return report
