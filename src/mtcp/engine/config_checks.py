"""Value checks of a run configuration that types alone cannot express (ranges, choices).

Everything a run would refuse later (an optimizer argument, a weighting option, a device count,
a size) is refused here, when the configuration is loaded, before any data is read or any
folder is made; the message names where the value came from, the key and what is expected.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import TYPE_CHECKING

from mtcp.errors import MtcpError
from mtcp.losses import create_weighting
from mtcp.losses.consistency import ConsistencyLoss
from mtcp.losses.task_losses import NORMALS_LOSSES
from mtcp.models.registry import list_models
from mtcp.sizes import MIN_NETWORK_SIDE, parse_size
from mtcp.tasks import resolve_tasks

if TYPE_CHECKING:
    from mtcp.engine.config import Config


def closest(name: str, choices: list[str], prefix: str = "") -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean {prefix + match[0]!r}?)" if match else ""


#: Lightning's precision names (``trainer.precision``), besides ``"auto"``
PRECISIONS = (
    "auto",
    "transformer-engine",
    "transformer-engine-float16",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "32-true",
    "64-true",
    "64",
    "32",
    "16",
    "bf16",
)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")


def validate(cfg: Config, where: str = "config") -> Config:
    """Check values that types alone cannot (sizes, choices, ranges); returns ``cfg``.

    Everything a run would refuse later (an optimizer argument, a weighting option, a device
    count) is refused here, before any data is read or any folder is made.
    """

    def fail(msg: str) -> None:
        raise MtcpError(f"{where}: {msg}")

    def at_least(name: str, value: float, low: float, strict: bool = False) -> None:
        ok = math.isfinite(value) and (value > low if strict else value >= low)
        if not ok:
            fail(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value}")

    if cfg.model.name not in list_models():
        fail(
            f"unknown model preset model.name={cfg.model.name!r}"
            f"{closest(cfg.model.name, list_models())}; presets: {', '.join(list_models())}"
        )
    cfg.data.size = list(parse_size(cfg.data.size, f"{where}: data.size", MIN_NETWORK_SIDE))
    tasks = resolve_tasks(cfg.data.tasks)
    if not 0.0 < cfg.data.val_fraction < 1.0:
        fail(f"data.val_fraction must be in (0, 1), got {cfg.data.val_fraction}")
    if cfg.data.batch_size < 1:
        fail(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    if cfg.data.num_workers < 0:
        fail(f"data.num_workers must be >= 0, got {cfg.data.num_workers}")
    if cfg.data.synthetic_scenes < 2:
        fail(f"data.synthetic_scenes must be >= 2, got {cfg.data.synthetic_scenes}")
    at_least("optim.lr", cfg.optim.lr, 0.0, strict=True)
    at_least("optim.weight_decay", cfg.optim.weight_decay, 0.0)
    at_least("optim.power", cfg.optim.power, 0.0)
    if cfg.optim.schedule not in ("poly", "constant"):
        fail(f"optim.schedule must be 'poly' or 'constant', got {cfg.optim.schedule!r}")
    at_least("loss.aux_weight", cfg.loss.aux_weight, 0.0)
    if cfg.loss.normals_loss not in NORMALS_LOSSES:
        fail(f"loss.normals_loss must be one of {NORMALS_LOSSES}, got {cfg.loss.normals_loss!r}")
    terms = list(cfg.loss.consistency)
    if not all(isinstance(term, str) for term in terms):
        fail(f"loss.consistency must be a list of term names, got {terms}")
    try:  # unknown terms, terms listed twice, terms whose tasks are not trained
        ConsistencyLoss(terms, tasks)
    except MtcpError as err:
        fail(str(err))
    try:  # unknown schemes, unknown options and out-of-range options
        create_weighting(cfg.loss.weighting, [*tasks, *terms], **cfg.loss.weighting_options)
    except (MtcpError, TypeError, ValueError) as err:
        fail(f"loss.weighting={cfg.loss.weighting!r} with {cfg.loss.weighting_options}: {err}")
    if cfg.eval.protocol not in ("mtinet", "atrc"):
        fail(f"eval.protocol must be 'mtinet' or 'atrc', got {cfg.eval.protocol!r}")
    if cfg.eval.picture_samples < 0:
        fail(f"eval.picture_samples must be >= 0, got {cfg.eval.picture_samples}")
    t = cfg.trainer
    for name in ("max_epochs", "num_nodes", "check_val_every_n_epoch", "log_every_n_steps"):
        if getattr(t, name) < 1:
            fail(f"trainer.{name} must be >= 1, got {getattr(t, name)}")
    at_least("trainer.gradient_clip_val", t.gradient_clip_val, 0.0)
    if t.accelerator not in ACCELERATORS:
        fail(f"trainer.accelerator must be one of {ACCELERATORS}, got {t.accelerator!r}")
    if t.precision not in PRECISIONS:
        fail(f"trainer.precision must be one of {', '.join(PRECISIONS)}; got {t.precision!r}")
    if t.monitor_mode not in ("auto", "min", "max"):
        fail(f"trainer.monitor_mode must be auto, min or max; got {t.monitor_mode!r}")
    devices_ok = (isinstance(t.devices, int) and t.devices >= 1) or (
        isinstance(t.devices, str)
        and (t.devices == "auto" or re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*,?", t.devices))
    )
    if not devices_ok:
        fail(f"trainer.devices must be >= 1, 'auto' or device ids like '0,1'; got {t.devices!r}")
    if not 0.0 < cfg.review.rate < 1.0:
        fail(f"review.rate must be in (0, 1), got {cfg.review.rate}")
    if cfg.review.threshold is not None and not 0.0 <= cfg.review.threshold <= 1.0:
        fail(f"review.threshold must be in [0, 1] or null, got {cfg.review.threshold}")
    return cfg
