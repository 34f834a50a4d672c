"""The run folder: ``<run.root>/<run.name>/version_<n>/``, a new ``n`` for every run.

Under torchrun or SLURM with several processes the folder is ``job_<id>`` instead, so that every
process agrees on it without talking; the launch environment is read through Lightning's
cluster environments (:class:`~lightning.fabric.plugins.environments.TorchElasticEnvironment`,
:class:`~lightning.fabric.plugins.environments.SLURMEnvironment`) and the process rank through
``rank_zero_only``. Local DDP processes started by Lightning itself inherit the folder of process
0 through :data:`RUN_DIR_ENV`.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.fabric.utilities.rank_zero import rank_zero_only

from mtcp.engine.config import Config
from mtcp.io import TEMP_SUFFIX, remove_stale_temporaries

RUN_DIR_ENV = "MTCP_RUN_DIR"

#: a temporary file not written to for this long has no writer left (a save rewrites its
#: temporary continuously until the rename)
STALE_AFTER_S = 15 * 60


def is_main_process() -> bool:
    """True in the process of global rank 0 (before or without torch.distributed)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def external_job() -> tuple[int, str | None]:
    """(global rank, job id) of a multi-process torchrun or SLURM launch, else ``(0, None)``."""
    if TorchElasticEnvironment.detect():
        env = TorchElasticEnvironment()
        if env.world_size() > 1:  # torchrun's run id is the one id all its processes share
            return env.global_rank(), os.environ.get("TORCHELASTIC_RUN_ID", "torchrun")
    if SLURMEnvironment.detect():
        env = SLURMEnvironment()
        if env.world_size() > 1:
            return env.global_rank(), str(SLURMEnvironment.job_id())
    return 0, None


def make_run_dir(cfg: Config) -> Path:
    """The folder of a new run (created by process 0; see the module docstring)."""
    if os.environ.get(RUN_DIR_ENV) and not is_main_process():  # local DDP processes
        return Path(os.environ[RUN_DIR_ENV])
    base = Path(cfg.run.root) / cfg.run.name
    rank, job = external_job()
    if job is not None:
        run_dir = base / f"job_{job}"
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    base.mkdir(parents=True, exist_ok=True)
    n = 0
    for child in base.glob("version_*"):
        suffix = child.name.removeprefix("version_")
        if suffix.isdigit():
            n = max(n, int(suffix) + 1)
    while True:  # mkdir is atomic: two runs started together get different versions
        run_dir = base / f"version_{n}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            n += 1


def remove_failed_start(run_dir: Path) -> None:
    """Delete a ``version_<n>`` folder made for a run that failed before it trained a step.

    Only process 0 deletes, and only ``version_*`` folders (a ``job_<id>`` folder is shared by
    the processes of a cluster job).
    """
    if is_main_process() and run_dir.name.startswith("version_"):
        shutil.rmtree(run_dir, ignore_errors=True)


def clean_temporaries(run_dir: Path) -> list[Path]:
    """Remove what killed runs left: temporaries in ``run_dir`` (the folder this run owns) and
    checkpoint temporaries older than :data:`STALE_AFTER_S` in the other runs of the same name
    (younger ones may belong to a run still saving). Process 0 only; returns what was removed.
    """
    if not is_main_process():
        return []
    removed = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "csv"):
        removed += remove_stale_temporaries(folder)
    now = time.time()
    for other in run_dir.parent.glob("*/checkpoints"):
        if other.parent == run_dir:
            continue
        for tmp in other.glob(f".*.ckpt.*{TEMP_SUFFIX}"):
            try:
                if now - tmp.stat().st_mtime > STALE_AFTER_S:
                    tmp.unlink()
                    removed.append(tmp)
            except FileNotFoundError:  # removed meanwhile by its own run
                pass
    return removed
