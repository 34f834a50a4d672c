"""Shared test setup: small CPU-only runs, deterministic and quiet."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


#: tasks and ``mtcp train`` overrides of the tiny run shared by the inference tests
TINY_TASKS = ["semseg", "depth", "normals", "edge"]
TINY_TRAIN = [
    "data.size=64x64",
    "data.synthetic_scenes=8",
    "data.val_fraction=0.25",
    "data.batch_size=3",
    "model.options={channels: 32, decoder_dims: [32, 64, 128]}",
    "optim.lr=2e-3",
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
    "eval.picture_samples=1",
]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """``runs/synthetic_tiny/version_0`` of one tiny ``mtcp train`` (one epoch, 64x64, the
    :data:`TINY_TASKS`), trained once for the whole session. Read it, never write into it."""
    from mtcp.cli import main

    root = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    assert main(["train", *TINY_TRAIN, f"run.root={root}"]) == 0
    return root / "synthetic_tiny" / "version_0"


@pytest.fixture(scope="session")
def trained_ckpt(trained_run):
    """The ``best.ckpt`` of :func:`trained_run`."""
    return trained_run / "checkpoints" / "best.ckpt"
