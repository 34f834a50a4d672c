"""The task decoder's shifted-window attention (pad, then roll, as released) and its FPN."""

from __future__ import annotations

import math

import pytest
import torch
from timm.models.swin_transformer import SwinTransformerBlock

from mtcp.models.decoder import PadThenRollBlock, TaskDecoder

WINDOW = 7


def _reference_window_attention(block: PadThenRollBlock, x: torch.Tensor) -> torch.Tensor:
    """The released Swin's W-MSA / SW-MSA written out window by window.

    Zero-pad ``x [B, H, W, C]`` to multiples of the window, roll the *padded* map by
    ``-shift``, label the 3 x 3 bands of the rolled map (the last ``shift`` rows / columns are
    the wrapped-around ones), attend within each window with the relative position bias and
    -100 between tokens of different labels (the masked seam), roll back, crop.
    """
    b, h, w, c = x.shape
    ws, shift = block.window_size[0], block.shift_size[0]
    hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
    padded = x.new_zeros(b, hp, wp, c)
    padded[:, :h, :w] = x

    def band(i: int, n: int) -> int:
        return 0 if i < n - ws else (1 if i < n - shift else 2)

    labels = torch.tensor([[band(i, hp) * 3 + band(j, wp) for j in range(wp)] for i in range(hp)])
    if not shift:
        labels.zero_()
    rolled = torch.roll(padded, (-shift, -shift), (1, 2))
    attn = block.attn
    heads = attn.num_heads
    dim = c // heads
    table = attn.relative_position_bias_table  # [(2ws-1)^2, heads]
    pos = [(i, j) for i in range(ws) for j in range(ws)]
    bias = torch.stack(
        [
            torch.stack([table[(a - p + ws - 1) * (2 * ws - 1) + (q - r + ws - 1)] for p, r in pos])
            for a, q in pos
        ]
    ).permute(2, 0, 1)  # [heads, N, N]
    out = torch.zeros_like(rolled)
    for top in range(0, hp, ws):
        for left in range(0, wp, ws):
            tokens = rolled[:, top : top + ws, left : left + ws].reshape(b, ws * ws, c)
            lab = labels[top : top + ws, left : left + ws].reshape(-1)
            q, k, v = attn.qkv(tokens).view(b, ws * ws, 3, heads, dim).permute(2, 0, 3, 1, 4)
            logits = (q * dim**-0.5) @ k.transpose(-1, -2) + bias
            logits = logits + (lab[:, None] != lab[None, :]).to(x.dtype) * -100.0
            mixed = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, ws * ws, c)
            out[:, top : top + ws, left : left + ws] = attn.proj(mixed).view(b, ws, ws, c)
    return torch.roll(out, (shift, shift), (1, 2))[:, :h, :w]


def _blocks(dim=16, heads=2):
    torch.manual_seed(0)
    args = (dim, (WINDOW, WINDOW), heads)
    options = {
        "window_size": WINDOW,
        "shift_size": WINDOW // 2,
        "always_partition": True,
        "dynamic_mask": True,
    }
    ours = PadThenRollBlock(*args, **options).double()
    with torch.no_grad():  # a non-zero relative position bias, so the reference checks it
        ours.attn.relative_position_bias_table.normal_()
    timm_order = SwinTransformerBlock(*args, **options).double()
    timm_order.load_state_dict(ours.state_dict())
    return ours, timm_order


@pytest.mark.parametrize("size", [(9, 10), (8, 8), (10, 17), (3, 5)])
def test_pad_then_roll_equals_the_direct_reference_where_timm_differs(size):
    ours, timm_order = _blocks()
    x = torch.randn(2, *size, 16, dtype=torch.float64)
    expected = _reference_window_attention(ours, x)
    torch.testing.assert_close(ours._attn(x), expected, rtol=1e-10, atol=1e-10)
    # timm rolls before padding: at these sizes borders meet unmasked, so it differs
    assert (timm_order._attn(x) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("size", [(14, 14), (7, 21)])
def test_pad_then_roll_equals_timm_when_no_padding_is_needed(size):
    ours, timm_order = _blocks()
    x = torch.randn(2, *size, 16, dtype=torch.float64)
    torch.testing.assert_close(ours._attn(x), _reference_window_attention(ours, x))
    torch.testing.assert_close(ours(x), timm_order(x), rtol=1e-12, atol=1e-12)


def test_unshifted_blocks_pad_without_mask():
    torch.manual_seed(1)
    block = PadThenRollBlock(16, (WINDOW, WINDOW), 2, window_size=WINDOW, shift_size=0).double()
    x = torch.randn(1, 9, 11, 16, dtype=torch.float64)
    torch.testing.assert_close(block._attn(x), _reference_window_attention(block, x))


def test_task_decoder_uses_pad_then_roll_blocks_with_timm_names():
    decoder = TaskDecoder(16, dims=(16, 32, 64), depths=(1, 2, 1))
    blocks = [b for stage in decoder.stages for b in stage.blocks]
    assert len(blocks) == 4 and all(isinstance(b, PadThenRollBlock) for b in blocks)
    assert [b.shift_size for b in blocks] == [(0, 0), (0, 0), (3, 3), (0, 0)]
    keys = set(decoder.state_dict())
    assert "stages.1.downsample.reduction.weight" in keys
    assert "stages.1.blocks.1.attn.qkv.weight" in keys
    x, feats = decoder(torch.randn(2, 16, 18, 22))  # 1/8 and 1/16 maps need padding
    assert x.shape == (2, 256, 18, 22)
    assert [f.shape[-2:] for f in feats] == [(18, 22), (9, 11), (5, 6)]
