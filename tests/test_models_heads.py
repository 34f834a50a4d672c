"""Final and deep-supervision heads: mtcp's and the released network's (``release_heads``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtcp.errors import MtcpError
from mtcp.models import create_model
from mtcp.models.attention import CBAM
from mtcp.models.heads import AuxHead, FinalHead, ReleaseDepthHead, final_head, release_head_set

NYUD = {"semseg": 40, "depth": 1, "normals": 3}
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 1}


def _head_inputs(model, image):
    """Run ``model`` on ``image`` and return the input of every final head."""
    seen = {}
    hooks = [
        head.register_forward_pre_hook(lambda m, a, t=t: seen.__setitem__(t, a[0]))
        for t, head in model.heads.items()
    ]
    with torch.no_grad():
        out = model(image)
    for h in hooks:
        h.remove()
    return out, seen


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def test_release_heads_follow_the_release_formulas():
    torch.manual_seed(0)
    model = create_model("mtcp_tiny", NYUD, release_heads="nyud", cfm_stride=4).eval()
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    image = torch.randn(1, 3, 64, 96)
    out, y = _head_inputs(model, image)
    size = image.shape[-2:]

    sem = model.heads["semseg"]
    x = F.relu(_bn(F.conv2d(y["semseg"], sem[0][0].weight), sem[0][1]))
    x = F.conv2d(x, sem[1].weight, sem[1].bias)
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    expected = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["semseg"], expected)
    once = F.interpolate(
        sem[1](sem[0](y["semseg"])), size=size, mode="bilinear", align_corners=False
    )
    assert (once - expected).abs().max() > 1e-4  # one resize is not the release's function

    dep = model.heads["depth"]
    assert isinstance(dep, ReleaseDepthHead)
    x = F.conv2d(y["depth"], dep[0].weight, dep[0].bias)
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    x = F.conv2d(F.relu(F.conv2d(x, dep[2].weight, dep[2].bias)), dep[4].weight, dep[4].bias)
    expected = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["depth"], expected)

    normals = model.heads["normals"]
    assert isinstance(normals, FinalHead) and len(normals) == 2  # no upsample for normals


def test_release_head_sizes_and_options():
    depth = ReleaseDepthHead(256, 1)
    assert sum(p.numel() for p in depth.parameters()) == 37_057  # 37.1 k (issue 16)
    assert sum(p.numel() for p in FinalHead(256, 1).parameters()) == 66_305  # mtcp's: 66.3 k
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in depth.modules())
    assert len(final_head("semseg", 32, 21, "pascal")) == 3  # x4 upsample inside
    assert final_head("semseg", 32, 21, "pascal")[-1].scale_factor == 4
    assert len(final_head("edge", 32, 1, "nyud")) == 2  # not in the release: mtcp's head
    assert release_head_set("auto", PASCAL) == "pascal"
    assert release_head_set("auto", NYUD) == "nyud"
    assert release_head_set(None, NYUD) is None
    with pytest.raises(MtcpError, match="unknown release_heads 'coco'"):
        release_head_set("coco", NYUD)


@pytest.mark.parametrize(
    "release_heads, momentum, first_bias", [(None, 0.1, True), ("auto", 0.01, False)]
)
def test_release_mode_sets_cbam_momentum_and_aux_bias(release_heads, momentum, first_bias):
    model = create_model("mtcp_tiny", PASCAL, release_heads=release_heads)
    cbams = [m for m in model.modules() if isinstance(m, CBAM)]
    assert cbams and all(m.spatial[1].momentum == momentum for m in cbams)
    aux = [m for m in model.modules() if isinstance(m, AuxHead)]
    assert aux and all((m[0].bias is not None) == first_bias for m in aux)
    image = torch.randn(2, 3, 64, 64)
    out = model.train()(image)
    assert out["semseg"].shape == (2, 21, 64, 64) and out["sal_s8"].shape == (2, 1, 64, 64)
    sum(v.square().mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_paper_presets_default_to_release_heads():
    assert create_model("mtcp_tiny", NYUD).config.get("release_heads") is None
    from mtcp.models.registry import SIZES

    assert SIZES["paper"]["release_heads"] == "auto"
