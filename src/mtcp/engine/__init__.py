"""Training with Lightning.

================================  =============================================================
:mod:`~mtcp.engine.config`        the run configuration (sections, YAML, overrides, checks)
:mod:`~mtcp.engine.resume`        ``--resume``: which checkpoint, which config, can it continue
:mod:`~mtcp.engine.training`      :func:`~mtcp.engine.training.train`: one run, start to end
:mod:`~mtcp.engine.run_dir`       the run folder (versions, cluster jobs, failed starts)
:mod:`~mtcp.engine.lightning_trainer`  the Lightning Trainer: devices, checkpoints, loggers
:mod:`~mtcp.engine.module`        the step logic (LightningModule)
:mod:`~mtcp.engine.datamodule`    the dataloaders (LightningDataModule)
:mod:`~mtcp.engine.checkpoint`    atomic, finite-only checkpoint I/O
:mod:`~mtcp.engine.csv_log`       the CSV log, atomic and continued on resume
:mod:`~mtcp.engine.pretrained`    pretrained weights without a network
:mod:`~mtcp.engine.callbacks`     reports: loss weights, prediction pictures, metric tables
================================  =============================================================
"""
