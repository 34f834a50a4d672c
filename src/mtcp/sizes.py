"""The one image-size rule: ``"HxW"`` text or ``[H, W]`` → ``(H, W)`` in pixels, checked.

Every place that takes an image size from a user (configs, command-line options) goes through
:func:`parse_size`, so the syntax, the error text and the minimum are the same everywhere.
Sizes are written height first (``240x320`` = 240 rows, 320 columns). Text is never read as a
number: ``0x64`` is the size 0 × 64 (refused), not the hexadecimal 100.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

from mtcp.errors import MtcpError

#: the smallest side every network preset accepts: its coarsest feature map (1/32) is at
#: least 2 × 2 pixels
MIN_NETWORK_SIDE = 64

_HXW = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*")


def is_size_text(text: str) -> bool:
    """True for text of the form ``HxW`` (digits on both sides)."""
    return _HXW.fullmatch(text) is not None


def parse_size(
    value: Any, what: str = "size", minimum: int = 1, maximum: int | None = None
) -> tuple[int, int]:
    """``"HxW"``, ``[H, W]`` or ``(H, W)`` → ``(H, W)`` with both sides in
    ``[minimum, maximum]``.

    Args:
        value: the size as text or a pair of ints.
        what: how the size is called in messages (e.g. ``"data.size"``, ``"--size"``).
        minimum: the smallest accepted side in pixels (e.g. :data:`MIN_NETWORK_SIDE`).
        maximum: the largest accepted side in pixels (None = no bound).

    Raises:
        MtcpError: naming ``what``, the expected form and the value given.
    """
    pair: Sequence[Any] | None = None
    if isinstance(value, str):
        match = _HXW.fullmatch(value)
        if match is not None:
            pair = (int(match.group(1)), int(match.group(2)))
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = value
    if pair is None or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair
    ):
        raise MtcpError(f"{what} must look like HxW (e.g. 240x320) or [H, W], got {value!r}")
    if min(pair) < minimum:
        raise MtcpError(f"{what} must be at least {minimum}x{minimum} pixels, got {value!r}")
    if maximum is not None and max(pair) > maximum:
        raise MtcpError(f"{what} must be at most {maximum}x{maximum} pixels, got {value!r}")
    return int(pair[0]), int(pair[1])
