"""Run a study: train every (configuration, seed) with the engine, score it on the held-out
test set, and keep the result as JSON so that reports can be re-generated and interrupted
studies resumed.

Output folder (only small files; checkpoints and logs go to a scratch folder that is deleted
after each run):

=================================  =============================================================
``results/<name>/seed_<s>.json``   one run: test metrics, per-image values
                                   (:mod:`.per_image`, for re-judging claims), parameters,
                                   times, learning curves, loss-weight history, the engine
                                   configs, the source version and a fingerprint
``test_set.json``                  the test set and the coherence of its targets (attainable)
=================================  =============================================================

A run whose JSON exists with the same fingerprint (see :meth:`Study.fingerprint`) is skipped.
Runs are ordered seed by seed, so an interrupted study has complete seeds first. A
configuration with ``refine_of`` is written together with its parent's run (same models, test
maps refined). Results of another source version in the folder stop the study
(:func:`mtcp.experiment.provenance.check_sources`).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from mtcp.errors import MtcpError
from mtcp.experiment.provenance import check_sources, environment, source_hash
from mtcp.experiment.study import Study
from mtcp.io import read_json, write_json

RESULTS_DIR = "results"
TEST_SET_FILE = "test_set.json"
EVAL_BATCH = 16

log = logging.getLogger(__name__)


def result_path(out_dir: str | Path, name: str, seed: int) -> Path:
    """Where the result of configuration ``name`` with ``seed`` is stored."""
    return Path(out_dir) / RESULTS_DIR / name / f"seed_{seed}.json"


class RunRecorder(L.Callback):
    """Records what the run's result does not keep: the wall time of the training steps
    (forward, backward, optimizer; no data loading, no validation) in ``seconds``, their number
    in ``steps``, and the weighting history at the end of fitting in ``history`` (the final
    validation restores the best checkpoint, whose history may be shorter)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.steps = 0
        self.history: list[dict[str, Any]] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.seconds += time.perf_counter() - self._start
        self.steps += 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.history = copy.deepcopy(list(pl_module.weighting.history))


def test_batches(study: Study) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """``({task: channels}, batches)`` of the held-out test set, rendered once in memory.

    Scenes of family ``test_seed + 1`` (the synthetic test pool of
    :func:`mtcp.data.build.build_dataset`), never a training family.
    """
    from torch.utils.data import DataLoader

    from mtcp.data.build import build_dataset

    base = study.base()
    dataset = build_dataset(
        base.data.source,
        "test",
        base.data.tasks,
        "test",
        tuple(base.data.size),
        seed=study.test_seed,
        n=study.test_scenes,
    )
    return dict(dataset.tasks), list(DataLoader(dataset, batch_size=EVAL_BATCH))


def evaluate(
    models: Sequence[torch.nn.Module],
    batches: Sequence[Mapping[str, Any]],
    tasks: Mapping[str, int],
    refine: Mapping[str, Any] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Test metrics of the joint predictions of ``models`` (each predicts its ``.tasks``).

    Returns ``{task: {metric: value}, "coherence": {...}}`` (MTI-Net protocol, counters
    included) — for several single-task models, coherence compares their combined maps — and
    the per-image values (:class:`mtcp.metrics.per_image.PerImageValues`). ``refine``: keyword
    arguments of :func:`mtcp.inference.refine.refine_depth_normals`, applied to every batch's
    depth and normals (with its camera) before scoring; None = the network's maps. The loop is
    :func:`mtcp.inference.evaluate`'s; the test scenes are rendered at the training size, so
    the images reach the networks unresized.
    """
    from mtcp.inference import Predictor
    from mtcp.inference import evaluate as evaluate_models

    size = tuple(batches[0]["image"].shape[-2:])
    predictors = [Predictor(m, m.tasks, size, device=next(m.parameters()).device) for m in models]
    names = set().union(*(p.tasks for p in predictors))
    if names != set(tasks):
        raise MtcpError(f"the models predict {sorted(names)}, the test set has {sorted(tasks)}")
    report = evaluate_models(
        predictors,
        batches,
        protocol="mtinet",
        metric_dataset="nyud",
        targets=False,
        refine=None if refine is None else dict(refine),
        per_image=True,
    )
    return report["metrics"], report["per_image"]


def target_coherence(batches: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Coherence of the test targets themselves: the level a perfect prediction reaches."""
    from mtcp.metrics.coherence import BoundaryCoherence, DepthNormalCoherence

    depth_normal = DepthNormalCoherence(from_targets=True)
    boundary = BoundaryCoherence(from_targets=True)
    for batch in batches:
        depth_normal.update({}, batch)
        boundary.update({}, batch)
    return {
        "depth_normal_mean": float(depth_normal.compute()["mean"]),
        "boundary_F": float(boundary.compute()["F"]),
    }


def read_curves(csv_path: str | Path, max_epochs: int) -> list[dict[str, Any]]:
    """Per-epoch learning curves from the engine's ``csv/metrics.csv``.

    Returns ``[{"epoch": e (1-based), "step": global step at its end, "train_loss": {task:
    mean raw loss L_t over the epoch}, "val": {"<task>/<metric>" or "coherence/<name>":
    value}}]``. The validation the engine runs after fitting (on the best checkpoint, logged
    with epoch = max_epochs) is not part of the curve.
    """
    records: dict[int, dict[str, Any]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            if epoch >= max_epochs:
                continue
            rec = records.setdefault(
                epoch, {"epoch": epoch + 1, "step": 0, "train_loss": {}, "val": {}}
            )
            rec["step"] = max(rec["step"], int(float(row.get("step") or 0)) + 1)
            for key, value in row.items():
                if not value:
                    continue
                if key.startswith("train/loss/") and key.endswith("_epoch"):
                    rec["train_loss"][key[len("train/loss/") : -len("_epoch")]] = float(value)
                elif key.startswith("val/") and not key.startswith("val/loss/"):
                    rec["val"][key[len("val/") :]] = float(value)
    return [records[e] for e in sorted(records)]


def run_one(
    study: Study,
    name: str,
    seed: int,
    batches: Sequence[Mapping[str, Any]],
    tasks: Mapping[str, int],
    work_dir: str | Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Train configuration ``name`` with ``seed`` (one model, or one per task) and evaluate it.

    Checkpoints and logs are written to a temporary folder inside ``work_dir`` (default: the
    system's), deleted at the end. Returns the JSON-ready results ``{configuration: result}``:
    the run's own, and one per configuration refining its maps (``refine_of: name``; same
    model, same training figures, test maps refined, ``eval_seconds`` of the refined
    evaluation).
    """
    from mtcp.engine.training import train  # engine: trainer.py split (was engine.trainer)

    start = time.perf_counter()
    env = environment()
    models, curves = [], []
    train_seconds, steps, history, weighting = 0.0, 0, None, None
    with tempfile.TemporaryDirectory(prefix=f"mtcp-{name}-", dir=work_dir) as scratch:
        runs = study.engine_configs(name, seed, root=scratch)
        for run_tasks, cfg in runs:
            recorder = RunRecorder()
            result = train(cfg, evaluate_before=False, callbacks=[recorder])
            models.append(result.module.model)
            curves.append(
                {
                    "tasks": run_tasks,
                    "epochs": read_curves(
                        result.run_dir / "csv" / "metrics.csv", cfg.trainer.max_epochs
                    ),
                }
            )
            train_seconds += recorder.seconds
            steps = max(steps, recorder.steps)
            weighting = cfg.loss.weighting
            if len(run_tasks) > 1:
                history = recorder.history
        metrics, per_image = evaluate(models, batches, tasks)
        wall = time.perf_counter() - start
        refined = {}
        for child in study.refined_from(name):
            tic = time.perf_counter()
            refine = dict(study.configurations[child].refine or {})
            refined[child] = (*evaluate(models, batches, tasks, refine), time.perf_counter() - tic)
    own = {
        "configuration": name,
        "label": study.configurations[name].label,
        "seed": seed,
        "fingerprint": study.fingerprint(name, seed),
        "metrics": metrics,
        "per_image": per_image,
        "params": sum(p.numel() for m in models for p in m.parameters()),
        "train_seconds": train_seconds,
        "steps": steps,
        "wall_seconds": wall,
        "weighting": weighting,
        "weights_history": history,
        "curves": curves,
        "engine_configs": [cfg.to_dict() for _, cfg in runs],
        "environment": env,
    }
    results = {name: own}
    for child, (child_metrics, child_per_image, seconds) in refined.items():
        results[child] = own | {
            "configuration": child,
            "label": study.configurations[child].label,
            "fingerprint": study.fingerprint(child, seed),
            "refine_of": name,
            "refine": dict(study.configurations[child].refine or {}),
            "metrics": child_metrics,
            "per_image": child_per_image,
            "eval_seconds": seconds,
        }
    return results


def run_study(
    study: Study,
    out_dir: str | Path,
    work_dir: str | Path | None = None,
    progress: Callable[[str], None] = log.info,
) -> list[Path]:
    """Run every (seed, configuration) of ``study`` not finished yet; returns the result files.

    ``progress`` receives one line per run (started, skipped, finished with its time). Raises
    :class:`MtcpError` when ``out_dir`` holds results of another source version
    (:func:`check_sources`). Configurations with ``refine_of`` are not trained: their results
    come with their parent's run.
    """
    out_dir = Path(out_dir)
    check_sources((out_dir / RESULTS_DIR).glob("*/seed_*.json"), source_hash())
    out_dir.mkdir(parents=True, exist_ok=True)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    tasks, batches = test_batches(study)
    test_info = {"scenes": study.test_scenes, "seed": study.test_seed, "tasks": tasks}
    stored = read_json(out_dir / TEST_SET_FILE)
    if stored is None or stored.get("test") != test_info:
        write_json(out_dir / TEST_SET_FILE, {"test": test_info, **target_coherence(batches)})
    trained = [n for n, c in study.configurations.items() if c.refine_of is None]
    paths = [result_path(out_dir, n, s) for s in study.seeds for n in study.configurations]
    total = len(study.seeds) * len(trained)
    done = 0
    with _quiet_logs():
        for seed in study.seeds:
            for name in trained:
                done += 1
                names = [name, *study.refined_from(name)]
                if all(_finished(study, out_dir, n, seed) for n in names):
                    progress(f"[{done}/{total}] {name} seed {seed}: done before, skipped")
                    continue
                progress(f"[{done}/{total}] {name} seed {seed}: training")
                results = run_one(study, name, seed, batches, tasks, work_dir)
                for n, result in results.items():
                    write_json(result_path(out_dir, n, seed), result)
                result = results[name]
                progress(
                    f"[{done}/{total}] {name} seed {seed}: finished in "
                    f"{result['wall_seconds']:.0f} s ({result['steps']} steps)"
                )
    return paths


def _finished(study: Study, out_dir: Path, name: str, seed: int) -> bool:
    old = read_json(result_path(out_dir, name, seed))
    return old is not None and old.get("fingerprint") == study.fingerprint(name, seed)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Per-run INFO lines of Lightning (devices, restores, tips) and of the metric protocol."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "mtcp.metrics")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
