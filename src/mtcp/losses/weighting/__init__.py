"""Loss-weighting schemes behind one interface (SPEC §4); see :mod:`.base` for the protocol.

=============== ===================================== ==========================================
name            total                                 weights / state
=============== ===================================== ==========================================
``equal``       ``Σ L_t``                             1
``fixed``       ``Σ w_t L_t``                         user constants
``uncertainty`` ``Σ c_t e^{−s_t} L_t + ½ s_t``        learned ``s_t = log σ_t²`` (Kendall 2018)
``dwa``         ``Σ w_t L_t``                         softmax of loss ratios, T = 2 (Liu 2019)
``logsum``      ``Σ log(L_t + ε)``                    effective ``1 / (L_t + ε)``
``lps``         ``Σ w_t log(1 + L_t)``                progress ratios, spread, clamp (MT-CP)
=============== ===================================== ==========================================
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from mtcp.errors import MtcpError
from mtcp.losses.weighting.base import WeightingScheme
from mtcp.losses.weighting.dwa import DWAWeighting
from mtcp.losses.weighting.lps import LPSWeighting
from mtcp.losses.weighting.static import EqualWeighting, FixedWeighting, LogSumWeighting
from mtcp.losses.weighting.uncertainty import UncertaintyWeighting

WEIGHTINGS: dict[str, type[WeightingScheme]] = {
    cls.name: cls
    for cls in (
        EqualWeighting,
        FixedWeighting,
        UncertaintyWeighting,
        DWAWeighting,
        LogSumWeighting,
        LPSWeighting,
    )
}


def create_weighting(
    name: str, tasks: Iterable[str] | Mapping[str, int], **kwargs: Any
) -> WeightingScheme:
    """Build the weighting scheme ``name`` (one of :data:`WEIGHTINGS`) for ``tasks``.

    ``kwargs`` are the scheme's options plus the common ``window``, ``on_nonfinite`` and
    ``process_group`` of :class:`WeightingScheme`.
    """
    try:
        cls = WEIGHTINGS[name]
    except KeyError:
        known = ", ".join(WEIGHTINGS)
        raise MtcpError(f"unknown weighting {name!r}; choose from: {known}") from None
    allowed = _options(cls)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise MtcpError(
            f"weighting {name!r} has no option(s) {unknown}; options: {', '.join(sorted(allowed))}"
        )
    return cls(tasks, **kwargs)


def _options(cls: type[WeightingScheme]) -> set[str]:
    names: set[str] = set()
    for klass in (cls, WeightingScheme):
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names - {"self", "tasks"}


__all__ = [
    "WEIGHTINGS",
    "DWAWeighting",
    "EqualWeighting",
    "FixedWeighting",
    "LPSWeighting",
    "LogSumWeighting",
    "UncertaintyWeighting",
    "WeightingScheme",
    "create_weighting",
]
