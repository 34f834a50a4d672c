"""Run configuration: typed sections, strict YAML files and ``section.key=value`` overrides.

A configuration is a :class:`Config` of seven sections (``run``, ``model``, ``data``, ``loss``,
``optim``, ``trainer``, ``eval``). Every key has a default, so a YAML file only lists what it
changes. Keys are checked strictly: a misspelled key is an error that names the file, the key
and the closest valid key. Values are checked against the declared types.

>>> cfg = load_config(None, ["trainer.max_epochs=3", "data.size=64x96"])
>>> cfg.data.size
[64, 96]
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml

from mtcp.errors import MtcpError


@dataclass
class RunSection:
    """Where a run writes: ``<root>/<name>/version_<n>/`` (a new version for every run)."""

    name: str = "synthetic_tiny"
    root: str = "runs"


@dataclass
class ModelSection:
    """Which network: a preset of :func:`mtcp.create_model` plus keyword overrides."""

    name: str = "mtcp_tiny"
    pretrained: bool = False
    #: extra keyword arguments of ``create_model`` (e.g. ``cfm``, ``deep_supervision``)
    options: dict = field(default_factory=dict)


@dataclass
class DataSection:
    """What to train on. ``source`` is ``"synthetic"`` or a dataset folder (layout detected)."""

    source: str = "synthetic"
    tasks: list = field(default_factory=lambda: ["semseg", "depth", "normals", "edge"])
    #: network input size [H, W] (pixels); also accepted as ``"HxW"``
    size: list = field(default_factory=lambda: [96, 128])
    #: training augmentation recipe of :func:`mtcp.data.build.build_dataset` (None = resize only)
    recipe: str | None = None
    #: synthetic scenes only: how many scenes make the training set (validation carved from it)
    synthetic_scenes: int = 360
    #: fraction of the training split held out for validation and model selection
    val_fraction: float = 0.1
    batch_size: int = 8
    num_workers: int = 0


@dataclass
class LossSection:
    """Per-task losses (:class:`mtcp.losses.MultiTaskLoss`) and the weighting scheme."""

    weighting: str = "lps"
    #: keyword arguments of ``create_weighting`` (for LPS e.g. ``spread``, ``w_min``, ``w_max``)
    weighting_options: dict = field(default_factory=dict)
    aux_weight: float = 0.5
    normals_loss: str = "l1"
    #: cross-task consistency terms weighted like tasks (study hook, issue 15):
    #: ``depth_normal``, ``semantic_edge`` (:mod:`mtcp.losses.consistency`); empty = off
    consistency: list = field(default_factory=list)


@dataclass
class OptimSection:
    """AdamW with one parameter group and a poly schedule (1 − e/E)^power stepped per epoch."""

    lr: float = 5e-5
    weight_decay: float = 1e-4
    #: ``"poly"`` or ``"constant"``
    schedule: str = "poly"
    power: float = 0.9


@dataclass
class TrainerSection:
    """Lightning Trainer settings."""

    max_epochs: int = 100
    #: ``"auto"``, ``"cpu"`` or ``"gpu"``
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    #: ``"auto"`` = bf16-mixed on GPU, 32-true on CPU; any Lightning precision string otherwise
    precision: str = "auto"
    #: clip the global gradient norm to this value (0 = no clipping)
    gradient_clip_val: float = 1.0
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    #: metric that selects ``best.ckpt``; ``"auto"`` = ``val/delta_m`` when ``eval.references``
    #: is set, else ``val/score`` (see :func:`mtcp.engine.module.selection_score`)
    monitor: str = "auto"
    seed: int = 0
    progress_bar: bool = True


@dataclass
class EvalSection:
    """How validation and ``mtcp evaluate`` score predictions."""

    #: ``"mtinet"`` (the MT-CP release) or ``"atrc"`` (InvPT and successors)
    protocol: str = "mtinet"
    #: JSON of single-task reference metrics for Δm (``{task: {metric: value}}``)
    references: str | None = None
    #: pictures of this many validation images in ``predictions.png``
    picture_samples: int = 4


@dataclass
class Config:
    """The full run configuration; ``dataclasses.asdict`` gives its YAML form."""

    run: RunSection = field(default_factory=RunSection)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of primitives (what checkpoints and ``config.yaml`` store)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The resolved configuration as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def packaged_configs() -> list[str]:
    """Names of the configs shipped with mtcp (usable in place of a file path)."""
    root = resources.files("mtcp") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(source: str | Path) -> tuple[dict[str, Any], str]:
    """Load a config file or a packaged config name → (mapping, name used in messages)."""
    path = Path(source)
    if not path.exists():
        name = str(source)[:-5] if str(source).endswith(".yaml") else str(source)
        packaged = resources.files("mtcp") / "configs" / f"{name}.yaml"
        if "/" not in name and packaged.is_file():
            return _parse_yaml(packaged.read_text(), f"{name}.yaml (packaged)")
        hint = _closest(name, packaged_configs())
        raise MtcpError(
            f"config {source!r} is neither a file nor a packaged config{hint}; "
            f"packaged configs: {', '.join(packaged_configs())}"
        )
    return _parse_yaml(path.read_text(), str(path))


def _parse_yaml(text: str, where: str) -> tuple[dict[str, Any], str]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise MtcpError(f"{where}: not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MtcpError(f"{where}: expected a mapping of sections, got {type(data).__name__}")
    return data, where


def _closest(name: str, choices: list[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean {prefix + match[0]!r}?)" if match else ""


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` coerced to ``annotation`` (int→float, "HxW"→[H, W]) or raise."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, where)
            except MtcpError as err:
                errors.append(str(err))
        names = " or ".join(_type_name(a) for a in typing.get_args(annotation))
        raise MtcpError(f"{where}: expected {names}, got {value!r}")
    if annotation is type(None):
        if value is None:
            return None
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is list:
        if isinstance(value, str) and "x" in value:  # "HxW" sizes
            parts = value.lower().split("x")
            if all(p.strip().isdigit() for p in parts):
                return [int(p) for p in parts]
        if isinstance(value, (list, tuple)):
            return list(value)
    elif annotation is dict:
        if isinstance(value, dict):
            return value
    else:  # pragma: no cover - every field uses one of the types above
        raise TypeError(f"unsupported config type {annotation!r}")
    raise MtcpError(f"{where}: expected {_type_name(annotation)}, got {value!r}")


def _type_name(annotation: Any) -> str:
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _apply(cfg: Config, section: str, key: str, value: Any, where: str) -> None:
    sections = {f.name: f for f in dataclasses.fields(cfg)}
    if section not in sections:
        raise MtcpError(
            f"{where}: unknown section {section!r}{_closest(section, list(sections))}; "
            f"sections: {', '.join(sections)}"
        )
    target = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(target)}
    if key not in fields:
        raise MtcpError(
            f"{where}: unknown key {section}.{key}"
            f"{_closest(key, list(fields), prefix=section + '.')}; "
            f"keys of {section}: {', '.join(fields)}"
        )
    annotation = typing.get_type_hints(type(target))[key]
    setattr(target, key, _check_type(value, annotation, f"{where}: {section}.{key}"))


def _merge(cfg: Config, data: dict[str, Any], where: str) -> None:
    for section, values in data.items():
        if not isinstance(values, dict):
            raise MtcpError(f"{where}: section {section!r} must be a mapping of keys")
        for key, value in values.items():
            _apply(cfg, str(section), str(key), value, where)


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"section.key=value"`` → (section, key, value) with the value parsed as YAML."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise MtcpError(f"override {text!r}: expected section.key=value, e.g. trainer.max_epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return section, key.strip(), value


def config_from_dict(data: dict[str, Any], where: str = "config") -> Config:
    """Build a :class:`Config` from a nested mapping (e.g. one stored in a checkpoint)."""
    cfg = Config()
    _merge(cfg, data, where)
    return validate(cfg, where)


def load_config(source: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults ← YAML file or packaged config ``source`` ← ``section.key=value`` overrides."""
    cfg = Config()
    where = "defaults"
    if source is not None:
        data, where = _read_yaml(source)
        _merge(cfg, data, where)
    apply_overrides(cfg, overrides)
    return validate(cfg, f"{where} with overrides" if overrides else where)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings in place (strict keys, typed values)."""
    for text in overrides:
        section, key, value = parse_override(text)
        _apply(cfg, section, key, value, f"override {text!r}")
    return cfg


def validate(cfg: Config, where: str = "config") -> Config:
    """Check values that types alone cannot (sizes, choices, ranges); returns ``cfg``."""
    from mtcp.tasks import resolve_tasks

    def fail(msg: str) -> None:
        raise MtcpError(f"{where}: {msg}")

    from mtcp.models.registry import list_models

    if cfg.model.name not in list_models():
        fail(
            f"unknown model preset model.name={cfg.model.name!r}"
            f"{_closest(cfg.model.name, list_models())}; presets: {', '.join(list_models())}"
        )
    size = cfg.data.size
    if len(size) != 2 or not all(isinstance(v, int) and v >= 16 for v in size):
        fail(f"data.size must be [H, W] with both >= 16 pixels, got {size!r}")
    resolve_tasks(cfg.data.tasks)
    if not 0.0 < cfg.data.val_fraction < 1.0:
        fail(f"data.val_fraction must be in (0, 1), got {cfg.data.val_fraction}")
    if cfg.data.batch_size < 1:
        fail(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    if cfg.optim.schedule not in ("poly", "constant"):
        fail(f"optim.schedule must be 'poly' or 'constant', got {cfg.optim.schedule!r}")
    if cfg.eval.protocol not in ("mtinet", "atrc"):
        fail(f"eval.protocol must be 'mtinet' or 'atrc', got {cfg.eval.protocol!r}")
    if cfg.trainer.max_epochs < 1:
        fail(f"trainer.max_epochs must be >= 1, got {cfg.trainer.max_epochs}")
    return cfg
