"""The one image-size rule: HxW text or [H, W], never read as a number, one minimum."""

from __future__ import annotations

import pytest

from mtcp.errors import MtcpError
from mtcp.sizes import MIN_NETWORK_SIDE, parse_size


def test_sizes_parse_and_are_checked():
    assert parse_size("240x320") == (240, 320)
    assert parse_size(" 64 X 96 ") == (64, 96)
    assert parse_size([64, 96], minimum=MIN_NETWORK_SIDE) == (64, 96)
    with pytest.raises(MtcpError, match=r"--size must be at least 64x64 pixels, got '0x64'"):
        parse_size("0x64", "--size", MIN_NETWORK_SIDE)
    for bad in ("64", "64x", "x64", "64x64x3", [64], [64.0, 96], 100, [True, 64]):
        with pytest.raises(MtcpError, match="must look like HxW"):
            parse_size(bad)
