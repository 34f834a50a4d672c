"""Resuming a run: which checkpoint, with which configuration, and whether it can continue.

``mtcp train --resume [CKPT | RUN_DIR]`` continues a run exactly where its ``last.ckpt`` left
it (model, optimizer, schedule, loss-weighting state, epoch, random state, the best score so
far), in the same run folder. Everything is checked *before* anything in that folder is
touched (:func:`check_resume`): a refused resume leaves ``config.yaml``, the logs and the
checkpoints as they were.

What may change on resume (:data:`RESUMABLE_KEYS`): ``trainer.max_epochs``, to extend a run,
and how the run is executed (devices, nodes, accelerator, workers, progress bar, logging
interval). Extending re-plans the learning-rate schedule for the new length: epoch ``e``
(counted from the start of the run) trains with ``lr · (1 − e / max_epochs)^power``, so a
finished run whose poly schedule had decayed to 0 trains again (see
:meth:`mtcp.engine.module.MtcpModule.on_train_start`). Any other change (``optim.lr``, the
model, the data, the weighting …) would silently not apply to the restored optimizer and
weighting states, so it is refused: start a new run for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtcp.engine.config import Config, apply_overrides, config_from_dict, load_config, validate
from mtcp.engine.module import CHECKPOINT_KEY
from mtcp.errors import MtcpError
from mtcp.io import load_checkpoint

#: configuration keys a resumed run may set differently from the checkpoint's
RESUMABLE_KEYS = frozenset(
    {
        "trainer.max_epochs",
        "trainer.accelerator",
        "trainer.devices",
        "trainer.num_nodes",
        "trainer.progress_bar",
        "trainer.log_every_n_steps",
        "data.num_workers",
        "run.root",
        "run.name",
    }
)


@dataclasses.dataclass
class ResumePoint:
    """A checked checkpoint to resume from."""

    checkpoint: Path
    #: the run folder the checkpoint lies in (``<run>/checkpoints/*.ckpt``), else None
    run_dir: Path | None
    #: optimizer steps done (CSV rows from this step on are logged again)
    global_step: int
    epochs_completed: int


def find_checkpoint(target: str | Path, run_root: Path) -> Path:
    """The checkpoint meant by ``--resume TARGET``.

    ``"latest"``: the newest ``*/checkpoints/last.ckpt`` under ``run_root`` (``run.root/run.name``);
    a folder: its ``checkpoints/last.ckpt``; otherwise the checkpoint file itself.
    """
    if str(target) == "latest":
        candidates = sorted(
            run_root.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime
        )
        if not candidates:
            raise MtcpError(f"--resume: no run with checkpoints/last.ckpt under {run_root}")
        return candidates[-1]
    path = Path(target)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise MtcpError(f"--resume: checkpoint {path} does not exist")
    return path


def _meta(checkpoint: Path, ckpt: Mapping[str, Any]) -> dict[str, Any]:
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, Mapping) else None
    if not isinstance(meta, Mapping) or "config" not in meta:
        raise MtcpError(f"{checkpoint}: not a checkpoint of mtcp train (no 'mtcp' section)")
    return dict(meta)


def resolve_run(
    config: str | Path | None, overrides: list[str], resume: str | Path | None = None
) -> tuple[Config, Path | None]:
    """The configuration and resume checkpoint of ``mtcp train [CONFIG] [overrides] [--resume]``.

    Without ``CONFIG``, a resumed run continues with the configuration stored in its checkpoint
    plus ``overrides``; with one, ``CONFIG`` + ``overrides`` must agree with the checkpoint's
    except for :data:`RESUMABLE_KEYS` (checked by :func:`check_resume`).
    """
    cfg = load_config(config or "synthetic", overrides)
    if not resume:
        return cfg, None
    checkpoint = find_checkpoint(resume, Path(cfg.run.root) / cfg.run.name)
    if config is None:
        meta = _meta(checkpoint, load_checkpoint(checkpoint))
        cfg = apply_overrides(config_from_dict(meta["config"], str(checkpoint)), overrides)
        cfg = validate(cfg, f"{checkpoint} with overrides" if overrides else str(checkpoint))
    return cfg, checkpoint


def _flat(cfg: Config) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, values in cfg.to_dict().items() for k, v in values.items()}


def check_resume(checkpoint: str | Path, cfg: Config, module: Any) -> ResumePoint:
    """Check that ``module`` (built from ``cfg``) can continue ``checkpoint``; nothing is written.

    Refused with an :class:`MtcpError` naming the checkpoint: another task set, a
    configuration that differs outside :data:`RESUMABLE_KEYS`, a network whose tensors differ,
    or a ``trainer.max_epochs`` the checkpoint has already reached.
    """
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    meta = _meta(checkpoint, ckpt)
    if dict(meta["tasks"]) != dict(module.tasks):
        raise MtcpError(
            f"{checkpoint}: checkpoint holds tasks {dict(meta['tasks'])} but the data of this "
            f"run has {dict(module.tasks)}; resume only with the task set it was trained on"
        )
    stored = _flat(config_from_dict(meta["config"], str(checkpoint)))
    wanted = _flat(cfg)
    changed = [k for k in wanted if wanted[k] != stored.get(k) and k not in RESUMABLE_KEYS]
    if changed:
        what = "; ".join(
            f"{k}: {stored.get(k)!r} in the checkpoint, {wanted[k]!r} now" for k in changed
        )
        raise MtcpError(
            f"{checkpoint}: cannot resume with a different {', '.join(changed)} ({what}). "
            "A resumed run restores the optimizer, schedule and weighting states as they were, "
            "so such a change would not apply; only trainer.max_epochs (to extend the run) and "
            "how it runs (trainer.devices, num_nodes, accelerator, progress_bar, "
            "log_every_n_steps, data.num_workers) may change. Start a new run instead."
        )
    own = {k: tuple(v.shape) for k, v in module.state_dict().items() if hasattr(v, "shape")}
    theirs = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if hasattr(v, "shape")}
    differ = sorted(k for k in own.keys() | theirs.keys() if own.get(k) != theirs.get(k))
    if differ:
        examples = ", ".join(f"{k} ({theirs.get(k)} vs {own.get(k)})" for k in differ[:3])
        raise MtcpError(
            f"{checkpoint}: the network of the checkpoint differs from the one this run builds "
            f"({len(differ)} tensors, e.g. {examples}: checkpoint vs now); resume only with the "
            "model it was trained with"
        )
    done = int(meta.get("epochs_completed", int(ckpt.get("epoch", 0)) + 1))
    if cfg.trainer.max_epochs <= done:
        raise MtcpError(
            f"{checkpoint}: the run has already trained {done} epochs and trainer.max_epochs is "
            f"{cfg.trainer.max_epochs}: nothing to resume. To train longer, resume with "
            f"trainer.max_epochs=N (N > {done}); the schedule is then re-planned for N epochs."
        )
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None
    return ResumePoint(checkpoint, run_dir, int(ckpt.get("global_step", 0)), done)
