"""A study file: which configurations to train, over which seeds, and which claims to check.

A study YAML (packaged ones live in ``mtcp/configs/experiments/``) has the sections:

``study``
    ``name``, ``seeds``, ``reference`` (the configuration Δm refers to, same seed),
    ``test_scenes`` and ``test_seed`` (the held-out synthetic test set).
``base``
    ``config`` (a ``mtcp train`` config: packaged name or file) and ``overrides``, a mapping of
    dotted keys (``data.size: [64, 96]``) applied on top; every run starts from it.
``configurations``
    ``name: {label, group, overrides, per_task}``: the overrides of that configuration (applied
    last); ``per_task: true`` trains one model per task (single-task baselines).
    ``name: {label, group, refine_of: other, refine: {options}}``: not trained; the models of
    ``other`` (same seed) with their test depth and normals refined
    (:func:`mtcp.inference.refine.refine_depth_normals` with ``options``).
``claims``
    ``{text, metric, better, than}``: configuration ``better`` beats ``than`` on ``metric``:
    ``delta_m``, ``delta_m_worst`` (the lowest per-task Δm term) or a key with per-image
    values (:func:`mtcp.metrics.per_image.per_image_keys`: each task's main metric,
    ``coherence/depth_normal_mean``, ``coherence/boundary_F``).
``quick``
    ``seeds``, ``configurations`` (a subset), ``test_scenes`` and ``overrides`` (applied after
    ``base``) for ``--quick``.

Overrides replace a key's whole value (a dict such as ``loss.weighting_options`` is not merged).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from mtcp.engine.config import Config, config_from_dict, load_config
from mtcp.errors import MtcpError
from mtcp.experiment.stats import DELTA_M_CLAIM_METRICS
from mtcp.inference.refine import refine_depth_normals
from mtcp.metrics.per_image import per_image_keys

SECTIONS = ("study", "base", "configurations", "claims", "quick")


@dataclass(frozen=True)
class Configuration:
    """One configuration of a study (see the module docstring)."""

    name: str
    label: str
    groups: tuple[str, ...]
    overrides: Mapping[str, Any]
    per_task: bool = False
    #: not trained: the models of this configuration, test maps refined with ``refine``
    refine_of: str | None = None
    refine: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Claim:
    """``better`` beats ``than`` on ``metric`` (direction taken from the metric)."""

    text: str
    metric: str
    better: str
    than: str


@dataclass
class Study:
    """A parsed study file; :meth:`engine_configs` gives the runs of one configuration."""

    name: str
    source: str
    base_config: str | None
    base_overrides: dict[str, Any]
    seeds: list[int]
    reference: str
    test_scenes: int
    test_seed: int
    configurations: dict[str, Configuration]
    claims: list[Claim] = field(default_factory=list)
    quick: dict[str, Any] = field(default_factory=dict)
    is_quick: bool = False

    def quick_variant(self) -> Study:
        """The ``--quick`` subset: its seeds, configurations, test size and overrides."""
        q = self.quick
        names = q.get("configurations", list(self.configurations))
        return dataclasses.replace(
            self,
            seeds=list(q.get("seeds", self.seeds[:1])),
            test_scenes=int(q.get("test_scenes", self.test_scenes)),
            configurations={n: self.configurations[n] for n in names},
            base_overrides={**self.base_overrides, **q.get("overrides", {})},
            is_quick=True,
        )

    def base(self) -> Config:
        """The shared engine configuration (before any configuration's overrides)."""
        return _with_overrides(
            load_config(self.base_config), self.base_overrides, f"{self.source}: base"
        )

    @property
    def tasks(self) -> list[str]:
        """The tasks of the study (``data.tasks`` of the base configuration)."""
        return list(self.base().data.tasks)

    def engine_configs(
        self, name: str, seed: int, root: str | Path = "runs"
    ) -> list[tuple[list[str], Config]]:
        """``[(tasks, Config)]`` of the runs of configuration ``name`` with ``seed``.

        One run, or one per task with ``per_task``; runs write under ``root``.
        """
        conf = self.configurations[name]
        cfg = _with_overrides(self.base(), conf.overrides, f"{self.source}: configuration {name!r}")
        cfg.trainer.seed = int(seed)
        cfg.run.root = str(root)
        task_sets = [[t] for t in cfg.data.tasks] if conf.per_task else [list(cfg.data.tasks)]
        runs = []
        for tasks in task_sets:
            one = copy.deepcopy(cfg)
            one.data.tasks = tasks
            suffix = f"_{tasks[0]}" if conf.per_task else ""
            one.run.name = f"{name}{suffix}_seed{seed}"
            runs.append((tasks, one))
        return runs

    def refined_from(self, name: str) -> list[str]:
        """The configurations that refine the maps of configuration ``name``."""
        return [n for n, c in self.configurations.items() if c.refine_of == name]

    def fingerprint(self, name: str, seed: int) -> str:
        """Hash of the study entries that define run (``name``, ``seed``).

        Resume skips a run whose stored fingerprint matches. Only the study's own entries count
        (base config name and overrides, quick overrides, the configuration, seed, test set),
        so results stay valid when the engine gains new keys; after changing code or a packaged
        engine config, delete the results to re-run (reports list the source versions used).
        """
        conf = self.configurations[name]
        if conf.refine_of is not None:
            parent = self.fingerprint(conf.refine_of, seed)
            text = json.dumps([parent, conf.refine], sort_keys=True, default=str)
            return hashlib.sha256(text.encode()).hexdigest()[:16]
        payload = {
            "base": [self.base_config, self.base_overrides],
            "configuration": [conf.overrides, conf.per_task],
            "seed": seed,
            "test": [self.test_scenes, self.test_seed],
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _with_overrides(cfg: Config, overrides: Mapping[str, Any], where: str) -> Config:
    """``cfg`` with dotted-key ``overrides`` (``{"data.size": [64, 96]}``), validated."""
    data = cfg.to_dict()
    for key, value in overrides.items():
        section, dot, name = str(key).partition(".")
        if not dot or section not in data:
            raise MtcpError(
                f"{where}: override {key!r} must be section.key with a section of {', '.join(data)}"
            )
        data[section][name] = value
    return config_from_dict(data, where)


def study_path(source: str | Path) -> tuple[str, str]:
    """(YAML text, name used in messages) of a study file or a packaged study name."""
    path = Path(source)
    if path.is_file():
        return path.read_text(), str(path)
    name = str(source).removesuffix(".yaml")
    packaged = resources.files("mtcp") / "configs" / "experiments" / f"{name}.yaml"
    if "/" not in name and packaged.is_file():
        return packaged.read_text(), f"{name}.yaml (packaged)"
    raise MtcpError(
        f"study {source!r} is neither a file nor a packaged study; packaged studies: "
        f"{', '.join(packaged_studies())}"
    )


def packaged_studies() -> list[str]:
    """Names of the studies shipped with mtcp."""
    root = resources.files("mtcp") / "configs" / "experiments"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_study(source: str | Path) -> Study:
    """Parse and check a study file (see the module docstring); errors name the file."""
    text, where = study_path(source)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise MtcpError(f"{where}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise MtcpError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise MtcpError(f"{where}: unknown section(s) {unknown}; sections: {', '.join(SECTIONS)}")
    head = _mapping(data.get("study"), f"{where}: study")
    base = _mapping(data.get("base"), f"{where}: base")
    confs = _mapping(data.get("configurations"), f"{where}: configurations")
    if not confs:
        raise MtcpError(f"{where}: configurations: expected at least one configuration")
    configurations = {
        str(name): _configuration(str(name), _mapping(c, f"{where}: configurations.{name}"))
        for name, c in confs.items()
    }
    study = Study(
        name=str(head.get("name", Path(where.split(" ")[0]).stem)),
        source=where,
        base_config=base.get("config"),
        base_overrides=dict(_mapping(base.get("overrides"), f"{where}: base.overrides")),
        seeds=[int(s) for s in head.get("seeds", [0])],
        reference=str(head.get("reference", next(iter(configurations)))),
        test_scenes=int(head.get("test_scenes", 64)),
        test_seed=int(head.get("test_seed", 1000)),
        configurations=configurations,
        claims=[_claim(c, where) for c in data.get("claims") or []],
        quick=dict(_mapping(data.get("quick"), f"{where}: quick")),
    )
    _check(study, where)
    return study


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MtcpError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _configuration(name: str, c: Mapping[str, Any]) -> Configuration:
    groups = c.get("group", "other")
    return Configuration(
        name=name,
        label=str(c.get("label", name)),
        groups=tuple(groups) if isinstance(groups, list) else (str(groups),),
        overrides=dict(c.get("overrides") or {}),
        per_task=bool(c.get("per_task", False)),
        refine_of=None if c.get("refine_of") is None else str(c["refine_of"]),
        refine=dict(c.get("refine") or {}) if c.get("refine_of") is not None else None,
    )


def _claim(c: Any, where: str) -> Claim:
    keys = ("text", "metric", "better", "than")
    if not isinstance(c, Mapping) or any(k not in c for k in keys):
        raise MtcpError(f"{where}: claims: each claim needs {', '.join(keys)}; got {c!r}")
    return Claim(*(str(c[k]) for k in keys))


def _check(study: Study, where: str) -> None:
    names = set(study.configurations)
    if study.reference not in names:
        raise MtcpError(f"{where}: study.reference {study.reference!r} is not a configuration")
    if not study.seeds:
        raise MtcpError(f"{where}: study.seeds: expected at least one seed")
    for claim in study.claims:
        for ref in (claim.better, claim.than):
            if ref not in names:
                raise MtcpError(
                    f"{where}: claim {claim.text!r} names unknown configuration {ref!r}"
                )
        allowed = [*DELTA_M_CLAIM_METRICS, *per_image_keys(study.tasks)]
        if claim.metric not in allowed:
            raise MtcpError(
                f"{where}: claim {claim.text!r}: metric {claim.metric!r} has no per-image "
                f"values to judge it by; metrics: {', '.join(allowed)}"
            )
    for name, conf in study.configurations.items():
        if conf.refine_of is None:
            continue
        parent = study.configurations.get(conf.refine_of)
        if parent is None or parent.refine_of is not None:
            raise MtcpError(
                f"{where}: configuration {name!r}: refine_of {conf.refine_of!r} must name a "
                "trained configuration"
            )
        if conf.overrides or conf.per_task:
            raise MtcpError(
                f"{where}: configuration {name!r} refines {conf.refine_of!r}: it takes no "
                "overrides or per_task of its own"
            )
        runs = study.engine_configs(conf.refine_of, study.seeds[0])
        parent_tasks = [t for tasks, _ in runs for t in tasks]
        if "depth" not in parent_tasks or "normals" not in parent_tasks:
            raise MtcpError(
                f"{where}: configuration {name!r}: refining needs depth and normals, "
                f"{conf.refine_of!r} trains {parent_tasks}"
            )
        try:
            refine_depth_normals(
                torch.ones(1, 4, 4), torch.ones(3, 4, 4), torch.ones(4), 0, **conf.refine
            )
        except TypeError as err:
            raise MtcpError(f"{where}: configuration {name!r}: refine: {err}") from None
    quick = study.quick.get("configurations", [])
    for name in quick:
        if name not in names:
            raise MtcpError(f"{where}: quick.configurations names unknown configuration {name!r}")
        parent = study.configurations[name].refine_of
        if parent is not None and parent not in quick:
            raise MtcpError(f"{where}: quick.configurations has {name!r} but not {parent!r}")
    for variant in (study, study.quick_variant()):  # every override resolves
        for name, conf in variant.configurations.items():
            if conf.refine_of is None:
                variant.engine_configs(name, variant.seeds[0])
