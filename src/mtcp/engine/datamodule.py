"""``MtcpDataModule``: train / validation / test dataloaders over :func:`build_dataset`.

The validation split is carved out of the training split (``val_fraction``, ``seed``) and is
what model selection sees; the layout's test split is only used by ``test`` / ``predict``.
Batches are collated by PyTorch's ``default_collate``: tensors are stacked, ``labelled``
becomes ``{task: bool tensor [B]}`` and ``id`` a list of strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from mtcp.data.base import report_skipped
from mtcp.data.build import build_dataset
from mtcp.errors import MtcpError


class MtcpDataModule(L.LightningDataModule):
    """Dataloaders of one dataset source for Lightning.

    Args:
        source: ``"synthetic"`` or a dataset folder (layout detected).
        tasks: task names or ``{task: classes}``; ``None`` = the layout's usual tasks.
        batch_size: training batch size; ``eval_batch_size`` (default: the same) for val/test.
        num_workers: loader worker processes (0 = load in the main process).
        recipe: training augmentation (see :func:`mtcp.data.build.build_dataset`); ``"auto"``
            picks the layout's release recipe. Validation and test always use ``"test"``.
        size: network input size ``(H, W)``; ``None`` = the recipe's / benchmark's default.
        val_fraction, seed: how the validation split is carved from the training split.
        pin_memory: page-locked batches; ``None`` = when CUDA is available.
        persistent_workers: keep workers alive between epochs (only with ``num_workers > 0``).
        pad_to, skip_errors, verify, n: passed to :func:`build_dataset`.
    """

    def __init__(
        self,
        source: str | Path = "synthetic",
        tasks: Iterable[str] | Mapping[str, int] | None = None,
        batch_size: int = 2,
        num_workers: int = 0,
        recipe: str | None = "auto",
        size: tuple[int, int] | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        eval_batch_size: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        pad_to: tuple[int, int] | None = None,
        skip_errors: bool = False,
        verify: str = "header",
        n: int | None = None,
    ):
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise MtcpError(
                f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}"
            )
        self.source = str(source)
        self.task_selection = dict(tasks) if isinstance(tasks, Mapping) else tasks
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.recipe = recipe
        self.size = tuple(size) if size else None
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self._build_kwargs = {
            "val_fraction": val_fraction,
            "seed": seed,
            "pad_to": pad_to,
            "skip_errors": skip_errors,
            "verify": verify,
            "n": n,
        }
        self.datasets: dict[str, Dataset] = {}

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (``"train"``, ``"val"``, ``"test"``), built once."""
        if split not in self.datasets:
            recipe = self.recipe if split == "train" else "test"
            tasks = self.task_selection
            if tasks is None and self.datasets:  # keep every split on the same tasks
                tasks = next(iter(self.datasets.values())).tasks
            self.datasets[split] = build_dataset(
                self.source, split, tasks, recipe, self.size, **self._build_kwargs
            )
        return self.datasets[split]

    @property
    def tasks(self) -> dict[str, int]:
        """``{task: output channels}`` of the data (classes from the dataset)."""
        built = next(iter(self.datasets.values()), None) or self.dataset("train")
        return dict(built.tasks)

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in splits.get(stage or "fit", ("test",)):
            self.dataset(split)

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.dataset(split)
        batch = self.batch_size if train else self.eval_batch_size
        return DataLoader(
            dataset,
            batch_size=batch,
            shuffle=train,
            drop_last=train and len(dataset) > batch,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def teardown(self, stage: str | None = None) -> None:
        """Log the samples skipped (``skip_errors=True``) in this process, once at the end."""
        skipped = [e for d in self.datasets.values() for e in getattr(d, "skipped", ())]
        if skipped:
            report_skipped(skipped, self.source)
