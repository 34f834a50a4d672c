"""The evaluation protocols (SPEC §6): the settings in which published protocols differ.

A :class:`Protocol` names every quirk in which the two published evaluation protocols differ:

============================  ============================  ================================
parameter                     ``"mtinet"`` (MT-CP release)  ``"atrc"`` (ATRC / InvPT tables)
============================  ============================  ================================
``depth_max``                 6.5535 m (release cap)        None (every ``d > 0``)
``depth_min_pred``            1e-9                          1e-9
``normals_angle``             ``"arccos"``                  ``"atan2"``
``normals_png_roundtrip``     False (release: True)         False
``sal_pooling``               ``"image"``                   ``"pixel"``
``sal_thresholds``            linspace(0.2, 0.9, 15)        0.05, 0.10, …, 0.95
``sal_beta2``                 1.0                           0.3
``sal_png_roundtrip``         False (release: True)         False
``human_parts_skip_uniform``  True                          True
============================  ============================  ================================

The original MTI-Net code has no depth cap: ``build_metrics(..., depth_max=None)``.

The ATRC protocol also pads NYUD images to 448×576; that is a data transform, not done here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mtcp.errors import MtcpError
from mtcp.metrics.depth import RELEASE_MAX_DEPTH
from mtcp.metrics.saliency import ATRC_THRESHOLDS, MTINET_THRESHOLDS

# Boundary matching tolerance, fraction of the image diagonal (BSDS maxDist).
EDGE_MAX_DIST = {"nyud": 0.011, "pascal": 0.0075}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The evaluation quirks of one protocol; see the module docstring for their values."""

    name: str
    depth_max: float | None
    normals_angle: str
    sal_pooling: str
    sal_thresholds: tuple[float, ...]
    sal_beta2: float
    depth_min_pred: float = 1e-9
    normals_png_roundtrip: bool = False
    sal_png_roundtrip: bool = False
    human_parts_skip_uniform: bool = True

    def describe(self) -> str:
        """One line naming every setting, for logs and reports."""
        cap = "none" if self.depth_max is None else f"{self.depth_max:g} m"
        return (
            f"protocol {self.name}: depth cap {cap}, predictions <= 0 -> {self.depth_min_pred:g}; "
            f"normals angle {self.normals_angle}, 8-bit PNG round trip "
            f"{self.normals_png_roundtrip}; saliency pooled per {self.sal_pooling}, "
            f"{len(self.sal_thresholds)} thresholds {self.sal_thresholds[0]:g}-"
            f"{self.sal_thresholds[-1]:g}, beta^2 {self.sal_beta2:g}, 8-bit "
            f"{self.sal_png_roundtrip}; human parts skip uniform images "
            f"{self.human_parts_skip_uniform}"
        )


PROTOCOLS: dict[str, Protocol] = {
    "mtinet": Protocol(
        name="mtinet",
        depth_max=RELEASE_MAX_DEPTH,
        normals_angle="arccos",
        sal_pooling="image",
        sal_thresholds=MTINET_THRESHOLDS,
        sal_beta2=1.0,
    ),
    "atrc": Protocol(
        name="atrc",
        depth_max=None,
        normals_angle="atan2",
        sal_pooling="pixel",
        sal_thresholds=ATRC_THRESHOLDS,
        sal_beta2=0.3,
    ),
}


def get_protocol(protocol: str | Protocol = "mtinet", **overrides: Any) -> Protocol:
    """The named protocol, with any field replaced by ``overrides`` (e.g. ``depth_max=None``)."""
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise MtcpError(f"unknown metric protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
        protocol = PROTOCOLS[protocol]
    fields = {f.name for f in dataclasses.fields(Protocol)}
    unknown = set(overrides) - fields
    if unknown:
        raise MtcpError(f"unknown protocol setting(s) {sorted(unknown)}; known: {sorted(fields)}")
    return dataclasses.replace(protocol, **overrides)
