"""MtcpDataModule: carved validation, collation of labelled/id, workers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from mtcp.data.synthetic.writer import write_layout
from mtcp.engine.datamodule import MtcpDataModule


@pytest.fixture(scope="session")
def own_partial(tmp_path_factory) -> Path:
    """A PASCAL_MT fixture (write_layout), whose scenes 2 (no person) have ignore-only parts."""
    return write_layout(tmp_path_factory.mktemp("dm") / "pascal", "pascal-mt", 6, (48, 64))


def test_fit_loaders_and_collate(own_partial):
    dm = MtcpDataModule(
        own_partial, ["semseg", "human_parts", "sal"], batch_size=2, size=(48, 64),
        val_fraction=0.25, recipe="auto",
    )  # fmt: skip
    dm.setup("fit")
    assert dm.tasks == {"semseg": 21, "human_parts": 7, "sal": 1}
    train_ids = set(dm.dataset("train").ids)
    val_ids = set(dm.dataset("val").ids)
    assert len(val_ids) == 1 and not train_ids & val_ids
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 48, 64)
    assert batch["semseg"].dtype == torch.int64 and batch["sal"].shape == (2, 1, 48, 64)
    assert batch["labelled"]["semseg"].tolist() == [True, True]
    assert isinstance(batch["id"], list) and all(isinstance(i, str) for i in batch["id"])
    assert batch["intrinsics"].shape == (2, 4) and batch["orig_size"].shape == (2, 2)
    ids = [i for b in dm.val_dataloader() for i in b["id"]]
    assert set(ids) == val_ids
    dm.setup("test")
    test_ids = [i for b in dm.test_dataloader() for i in b["id"]]
    assert test_ids and not set(test_ids) & (train_ids | val_ids)


def test_workers_are_deterministic_and_distinct():
    def epoch(seed: int) -> list[np.ndarray]:
        dm = MtcpDataModule("synthetic", ["semseg", "depth"], batch_size=1, num_workers=2,
                            size=(48, 64), n=4, val_fraction=0.25,
                            persistent_workers=False)  # fmt: skip
        torch.manual_seed(seed)
        return [b["image"][0].numpy() for b in dm.train_dataloader()]

    a, b, c = epoch(0), epoch(0), epoch(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_skipped_samples_reported_at_teardown(own_partial, tmp_path, caplog):
    import shutil

    root = Path(shutil.copytree(own_partial, tmp_path / "p"))
    first = (root / "ImageSets/Context/train.txt").read_text().split()[0]
    (root / f"JPEGImages/{first}.jpg").write_bytes(b"broken")
    dm = MtcpDataModule(root, ["semseg"], size=(48, 64), skip_errors=True, val_fraction=0.25)
    dm.setup("fit")
    assert first not in dm.dataset("train").ids + dm.dataset("val").ids
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dm.teardown("fit")
    assert "1 sample(s)" in caplog.text and first in caplog.text and "cannot read" in caplog.text
