"""Run configuration: typed sections, strict YAML files and ``section.key=value`` overrides.

(One concept: the sections and their loading; the value checks live in
:mod:`mtcp.engine.config_checks`.)

A configuration is a :class:`Config` of eight sections (``run``, ``model``, ``data``, ``loss``,
``optim``, ``trainer``, ``eval``, ``review``), plain dataclasses used as OmegaConf structured
configs: OmegaConf merges the defaults, a YAML file and the dotted overrides
(``model.options.cfm=false`` reaches into a mapping), refuses unknown keys and checks and
converts types. Every key has a default, so a YAML file only lists what it changes. Errors name
the file or override, the key and the closest valid key. Two things are read before OmegaConf
sees them: YAML values, with a loader that keeps ``HxW`` sizes as text (YAML 1.1 reads ``0x64``
as the number 100), and sizes, through the one size rule :func:`mtcp.sizes.parse_size`. Ranges
and choices are checked by :func:`mtcp.engine.config_checks.validate`.

>>> cfg = load_config(None, ["trainer.max_epochs=3", "data.size=64x96"])
>>> cfg.data.size
[64, 96]
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from mtcp.engine.config_checks import closest, validate
from mtcp.errors import MtcpError
from mtcp.sizes import MIN_NETWORK_SIDE, parse_size


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that reads ``HxW`` as text (``0x64`` is a size, not hex 100)."""


_Loader.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _digit in "0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_digit, []).insert(
        0, ("tag:yaml.org,2002:str", re.compile(r"^\d+\s*[xX]\s*\d+$"))
    )


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


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
    #: network input size [H, W] (pixels); also ``"HxW"`` (:func:`mtcp.sizes.parse_size`)
    size: list = field(default_factory=lambda: [96, 128], metadata={"size": MIN_NETWORK_SIDE})
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
    #: is set, else ``val/gm_error`` (see :func:`mtcp.engine.module.monitor_of`)
    monitor: str = "auto"
    #: ``"auto"`` = the direction the metric declares; ``"min"`` / ``"max"`` for a key that no
    #: mtcp metric reports (a value your own callback logs)
    monitor_mode: str = "auto"
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
class ReviewSection:
    """The review score calibrated at the end of training (:mod:`mtcp.inference.review`)."""

    #: review budget: the share of images flagged for a person (the validation images' share)
    rate: float = 0.1
    #: explicit score threshold in [0, 1] instead of the budget (None = use ``rate``)
    threshold: float | None = None
    #: calibrate at the end of ``mtcp train`` (scores the validation split once)
    calibrate: bool = True


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
    review: ReviewSection = field(default_factory=ReviewSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of primitives (what checkpoints and ``config.yaml`` store)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The resolved configuration as YAML text."""
        return OmegaConf.to_yaml(OmegaConf.structured(self))


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
        hint = closest(name, packaged_configs())
        raise MtcpError(
            f"config {source!r} is neither a file nor a packaged config{hint}; "
            f"packaged configs: {', '.join(packaged_configs())}"
        )
    if path.is_dir():
        raise MtcpError(
            f"config {source!r} is a folder, not a YAML file; to continue the run in it, "
            f"give it to --resume: mtcp train --resume {source}"
        )
    return _parse_yaml(path.read_text(), str(path))


def _parse_yaml(text: str, where: str) -> tuple[dict[str, Any], str]:
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as err:
        raise MtcpError(f"{where}: not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MtcpError(f"{where}: expected a mapping of sections, got {type(data).__name__}")
    return data, where


def _type_name(annotation: Any) -> str:
    """``int``, ``str or null``, ``int or str`` … for messages."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _section_types() -> dict[str, type]:
    return {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


def _unknown(full_key: str, where: str) -> MtcpError:
    """The "unknown section / key, did you mean" message for ``full_key``."""
    sections = _section_types()
    section, _, key = full_key.partition(".")
    if section not in sections:
        return MtcpError(
            f"{where}: unknown section {section!r}{closest(section, list(sections))}; "
            f"sections: {', '.join(sections)}"
        )
    keys = [f.name for f in dataclasses.fields(sections[section])]
    key = key.split(".")[0]
    return MtcpError(
        f"{where}: unknown key {section}.{key}{closest(key, keys, prefix=section + '.')}; "
        f"keys of {section}: {', '.join(keys)}"
    )


def _invalid(full_key: str, value: Any, where: str) -> MtcpError:
    section, _, key = full_key.partition(".")
    section_type = _section_types().get(section)
    expected = "a mapping of keys"
    if section_type is not None and key:
        hint = typing.get_type_hints(section_type).get(key.split(".")[0])
        expected = _type_name(hint) if hint is not None else expected
    return MtcpError(f"{where}: {full_key}: expected {expected}, got {value!r}")


def _normalise(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Sections checked to be mappings; ``HxW`` sizes → ``[H, W]`` (the one size rule)."""
    sections = _section_types()
    out: dict[str, Any] = {}
    for section, values in data.items():
        if not isinstance(values, Mapping):
            if str(section) not in sections:
                raise _unknown(str(section), where)
            raise MtcpError(f"{where}: section {section!r} must be a mapping of keys")
        values = dict(values)
        if str(section) in sections:
            for f in dataclasses.fields(sections[str(section)]):
                if "size" in f.metadata and f.name in values:
                    name = f"{where}: {section}.{f.name}"
                    values[f.name] = list(parse_size(values[f.name], name, f.metadata["size"]))
        out[str(section)] = values
    return out


@contextlib.contextmanager
def _omegaconf_errors(where: str, value: Any = None) -> Iterator[None]:
    """OmegaConf's key and type errors → :class:`MtcpError` texts that name ``where``."""
    try:
        yield
    except (ConfigKeyError, ConfigAttributeError) as err:
        raise _unknown(str(err.full_key), where) from None
    except ValidationError as err:
        bad = err.value if getattr(err, "value", None) is not None else value
        raise _invalid(str(err.full_key), bad, where) from None


def _merge(node: DictConfig, data: Mapping[str, Any], where: str) -> DictConfig:
    """``data`` (a nested mapping, e.g. a YAML file) merged onto the typed ``node``."""
    with _omegaconf_errors(where):
        return OmegaConf.merge(node, _normalise(data, where))


def parse_override(text: str) -> tuple[str, Any]:
    """``"section.key=value"`` → (dotted key, value parsed as YAML; ``HxW`` stays text).

    The key may go deeper into a mapping value: ``model.options.cfm=false``.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    parts = name.split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise MtcpError(f"override {text!r}: expected section.key=value, e.g. trainer.max_epochs=5")
    try:
        value = _yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return name, value


def _override(node: DictConfig, text: str) -> DictConfig:
    dotted, value = parse_override(text)
    where = f"override {text!r}"
    parts = dotted.split(".")
    if len(parts) == 2:  # section.key: sizes follow the size rule
        value = _normalise({parts[0]: {parts[1]: value}}, where)[parts[0]][parts[1]]
    with _omegaconf_errors(where, value):
        OmegaConf.update(node, dotted, value, merge=False)
    return node


def _schema() -> DictConfig:
    return OmegaConf.structured(Config)


def _to_config(node: DictConfig, where: str) -> Config:
    with _omegaconf_errors(where):
        return OmegaConf.to_object(node)


def config_from_dict(data: Mapping[str, Any], where: str = "config") -> Config:
    """Build a :class:`Config` from a nested mapping (e.g. one stored in a checkpoint)."""
    return validate(_to_config(_merge(_schema(), data, where), where), where)


def load_config(source: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults ← YAML file or packaged config ``source`` ← ``section.key=value`` overrides."""
    node = _schema()
    where = "defaults"
    if source is not None:
        data, where = _read_yaml(source)
        node = _merge(node, data, where)
    for text in overrides:
        node = _override(node, text)
    where = f"{where} with overrides" if overrides else where
    return validate(_to_config(node, where), where)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings to ``cfg`` in place (strict keys, typed values)."""
    node = OmegaConf.structured(cfg)
    for text in overrides:
        node = _override(node, text)
    new = _to_config(node, "overrides")
    for f in dataclasses.fields(cfg):
        setattr(cfg, f.name, getattr(new, f.name))
    return cfg
