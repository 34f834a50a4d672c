"""mtcp.models.release: the release's state dicts onto mtcp_paper, checked module by module
against the release's formulas written out with its own tensor names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtcp.errors import MtcpError
from mtcp.models import create_model
from mtcp.models.hf_names import rename_swin_keys
from mtcp.models.release import convert_release_state, release_dataset, release_tasks
from mtcp.models.weights import load_state
from release_fixtures import key_list, random_release_nyud, random_release_pascal


@pytest.fixture(scope="module")
def nyud():
    state = random_release_nyud()
    conversion = convert_release_state(state)
    model = create_model("mtcp_paper", conversion.tasks)
    load_state(model, conversion.state, "random release")
    return state, conversion, model.eval()


def _p(state, prefix):
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _bn(x, p, prefix=""):
    return F.batch_norm(
        x,
        p[prefix + "running_mean"],
        p[prefix + "running_var"],
        p[prefix + "weight"],
        p[prefix + "bias"],
        False,
        0.0,
        1e-5,
    )


def _cbam(x, p):
    """The release's CBAM (ChannelGate: shared MLP on avg and max pools; SpatialGate: 7x7
    conv on [max, mean], BN, sigmoid), no residual."""

    def mlp(v):
        hidden = F.relu(F.linear(v, p["ChannelGate.mlp.1.weight"], p["ChannelGate.mlp.1.bias"]))
        return F.linear(hidden, p["ChannelGate.mlp.3.weight"], p["ChannelGate.mlp.3.bias"])

    x = x * torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
    pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
    gate = F.conv2d(pooled, p["SpatialGate.spatial.conv.weight"], padding=3)
    return x * torch.sigmoid(_bn(gate, p, "SpatialGate.spatial.bn."))


def _conv(x, p, name, bias=True):
    return F.conv2d(x, p[f"{name}.weight"], p[f"{name}.bias"] if bias else None)


def test_release_layout_converts_with_nothing_left_over(nyud):
    state, conversion, model = nyud
    assert len(state) == len(key_list()) == 1732
    accounted = [s for s, _ in conversion.mapped + conversion.dropped + conversion.folded]
    assert sorted(accounted) == sorted(state)  # every key placed exactly once
    assert conversion.dataset == "nyud"
    assert conversion.tasks == {"semseg": 40, "depth": 1, "normals": 3}
    assert len(conversion.folded) == 15  # 3 tasks x (2 + 2 + 1) SRM conv biases
    dropped = dict(conversion.dropped)
    assert "transformer1.patch_embed.proj.weight" in dropped
    assert "gaaf.conv2.weight" in dropped and "fpn_depth.fpn_convs.2.weight" in dropped
    assert "backbon.class_predictor.weight" in dropped and "skip_gate" in dropped
    assert "trace_back.spf_modules.3.sem_conv.weight" in dropped
    # loaded strictly by the fixture; the weights are the release's tensors
    sd = model.state_dict()
    assert torch.equal(
        sd["decoders.depth.stages.2.downsample.reduction.weight"],
        state["transformer2.layers.1.downsample.reduction.weight"],
    )
    assert torch.equal(sd["decoders.normals.norms.1.weight"], state["transformer3.norm1.weight"])


def _release_cfm(p, x, a1, a2):
    """GAAF_module2 of the release: the CFM of task x with partners a1, a2."""
    b, c, h, w = x.shape
    sem = _bn(_cbam(x, _p(p, "cbam_sem.")), p, "cbam_sem_norm.")
    gated = [a * torch.sigmoid(_conv(a, p, g)) for a, g in ((a1, "gate1"), (a2, "gate2"))]
    fused = F.relu(_conv(torch.cat(gated, 1), p, "conv1"))
    q = F.relu(_bn(_cbam(fused, _p(p, "cbam_dep.")), p, "cbam_dep_norm."))
    k = F.relu(_bn(_cbam(fused, _p(p, "cbam_dep2.")), p, "cbam_dep2_norm."))
    attn = torch.softmax(q.flatten(2).transpose(1, 2) @ k.flatten(2), dim=-1)
    out = (attn @ sem.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
    return _bn(_cbam(out, _p(p, "shared_dep2.")), p, "shared_dep2_norm.")


def _release_srm(p, pred, feat):
    """SPF of the release: ``(prediction feature, refined decoder feature)``."""
    z = torch.cat(
        [
            F.interpolate(_cbam(pred, _p(p, "sem_cbam.")), size=feat.shape[-2:], mode="bilinear"),
            _cbam(feat, _p(p, "dep_cbam.")),
        ],
        1,
    )
    y = F.relu(_bn(_conv(z, p, "sem_conv"), p, "b1."))
    return y, F.relu(_bn(_conv(z, p, "dep_conv"), p, "b2."))


def test_cfm_equals_the_release_formula(nyud):
    state, _, model = nyud
    x, a1, a2 = (torch.randn(1, 256, 5, 6) for _ in range(3))
    with torch.no_grad():  # semseg's CFM; partners depth, normals in this order
        got = model.cfm["semseg"](x, [a1, a2])
    torch.testing.assert_close(got, _release_cfm(_p(state, "gaaf."), x, a1, a2))


@pytest.mark.parametrize("index, srm", [(0, "srm3"), (1, "srm2"), (2, "srm1")])
def test_srm_with_folded_biases_equals_the_release_formula(nyud, index, srm):
    state, _, model = nyud
    p = _p(state, f"trace_back2.spf_modules.{index}.")  # depth's trace-back
    c_in, c_feat = p["sem_cbam.ChannelGate.mlp.1.weight"].shape[1], p["b2.weight"].shape[0]
    pred, feat = torch.randn(1, c_in, 3, 4), torch.randn(1, c_feat, 6, 8)
    y, g = _release_srm(p, pred, feat)
    with torch.no_grad():
        got_y, got_g = getattr(model.traceback["depth"], srm)(pred, feat)
    torch.testing.assert_close(got_y, y)
    if srm == "srm1":
        assert got_g is None  # the release computes it and uses nothing of it
    else:
        torch.testing.assert_close(got_g, g)


def test_whole_model_after_the_decoders_equals_the_release_chain(nyud):
    """R and the task Swins from the converted model (the Swin's pad-then-roll is checked in
    test_models_decoder.py); CFM, trace-back, heads and resizing as the release computes them
    from its own tensors."""
    state, _, model = nyud
    image = torch.randn(1, 3, 64, 96)
    names = {"semseg": ("", "project_semseg"), "depth": ("2", "project_depth")}
    names["normals"] = ("3", "project_normals")
    with torch.no_grad():
        out = model(image)
        r = model.forward_features(image)
        decoded = {t: model.decoders[t](r) for t in names}
    up = {"scale_factor": 2, "mode": "bilinear", "align_corners": True}
    for t, (k, head) in names.items():
        x, (f1, f2, f3) = decoded[t]
        a1, a2 = (decoded[o][0] for o in names if o != t)
        fused = _release_cfm(_p(state, f"gaaf{k}."), x, a1, a2)
        tb = f"trace_back{k}.spf_modules."
        _, g3 = _release_srm(_p(state, tb + "0."), fused, f3)
        _, g2 = _release_srm(_p(state, tb + "1."), g3, f2)
        y1, _ = _release_srm(_p(state, tb + "2."), g2, f1)
        p = _p(state, head + ".")
        if t == "depth":
            pred = _conv(F.relu(_conv(F.interpolate(_conv(y1, p, "0"), **up), p, "2")), p, "4")
        else:
            pred = _conv(F.relu(_bn(_conv(y1, p, "0", bias=False), p, "1.")), p, "3")
            pred = F.interpolate(pred, **up) if t == "semseg" else pred
        expected = F.interpolate(pred, size=(64, 96), mode="bilinear")
        torch.testing.assert_close(out[t], expected, rtol=1e-4, atol=1e-5, msg=t)


def test_heads_fpn_and_aux_heads_equal_the_release_formulas(nyud):
    state, _, model = nyud
    y = torch.randn(1, 256, 4, 6)
    up = {"scale_factor": 2, "mode": "bilinear", "align_corners": True}
    p = _p(state, "project_semseg.")
    semseg = _conv(F.relu(_bn(_conv(y, p, "0", bias=False), p, "1.")), p, "3")
    p = _p(state, "project_depth.")
    depth = _conv(F.relu(_conv(F.interpolate(_conv(y, p, "0"), **up), p, "2")), p, "4")
    p = _p(state, "normals_pred_layers.1.module.")
    aux = _conv(y, p, "0", bias=False)
    aux = _conv(F.relu(_bn(_conv(aux, p, "1", bias=False), p, "2.")), p, "4")
    p = _p(state, "fpn_normal.")
    feats = [torch.randn(1, c, 8 // 2**i, 12 // 2**i) for i, c in enumerate((256, 512, 1024))]
    x = _conv(feats[2], p, "lateral_convs.2")
    for i in (1, 0):
        x = _conv(feats[i], p, f"lateral_convs.{i}") + F.interpolate(x, size=feats[i].shape[-2:])
    fpn = F.conv2d(x, p["fpn_convs.0.weight"], p["fpn_convs.0.bias"], padding=1)
    with torch.no_grad():
        torch.testing.assert_close(model.heads["semseg"](y), F.interpolate(semseg, **up))
        torch.testing.assert_close(model.heads["depth"](y), depth)
        torch.testing.assert_close(model.aux_heads["normals"][1](y), aux)
        torch.testing.assert_close(model.decoders["normals"].fpn(feats), fpn)
        out = model(torch.randn(1, 3, 64, 64))
    assert {k: v.shape[1] for k, v in out.items()} == {"semseg": 40, "depth": 1, "normals": 3}
    assert all(bool(v.isfinite().all()) for v in out.values())


def test_ddp_prefixed_and_transformers5_named_checkpoints_convert(nyud):
    state, conversion, model = nyud
    ddp = convert_release_state({f"module.{k}": v for k, v in state.items()})
    assert ddp.state.keys() == conversion.state.keys()
    v5 = rename_swin_keys(state, "5")
    assert len(set(v5) - set(state)) == 421  # the renamed Swin keys
    assert len(state) - len(v5) == 24  # 4.x-only relative_position_index buffers
    converted = convert_release_state(v5)
    load_state(model, converted.state, "transformers-5 names")  # strict: fits as well
    enc = "model.pixel_level_module.encoder."
    new = f"backbone.{enc}swin.encoder.layers.2.blocks.5.attention.q_proj.weight"
    old = f"backbon.{enc}encoder.layers.2.blocks.5.attention.self.query.weight"
    assert torch.equal(model.state_dict()[new], state[old])


def test_extra_and_missing_keys_are_refused_with_their_names(nyud):
    state, _, model = nyud
    extra = {**state, "gaaf2.conv9.weight": torch.zeros(1)}
    with pytest.raises(MtcpError, match=r"no place in mtcp_paper.*gaaf2\.conv9\.weight"):
        convert_release_state(extra)
    missing = {k: v for k, v in state.items() if k != "gaaf2.conv1.weight"}
    with pytest.raises(MtcpError, match=r"missing key\(s\): cfm\.depth\.fuse\.0\.weight"):
        load_state(model, convert_release_state(missing).state, "ckpt")
    wrong = {**state, "project_normals.3.weight": torch.zeros(4, 256, 1, 1)}
    assert release_tasks(wrong)["normals"] == 4  # read from the checkpoint: a 4-channel head
    with pytest.raises(MtcpError, match=r"shape mismatch.*heads\.normals\.1\.weight"):
        load_state(model, convert_release_state(wrong).state, "ckpt")
    with pytest.raises(MtcpError, match="not a checkpoint of the MT-CP release"):
        release_dataset({"conv.weight": torch.zeros(1)})


def test_pascal_release_converts_and_fills_one_conv_aux_heads():
    state = random_release_pascal()
    conversion = convert_release_state(state)
    assert conversion.dataset == "pascal"
    assert conversion.tasks == {"semseg": 21, "human_parts": 7, "sal": 1}
    assert len(conversion.filled) == 4  # human_parts and sal, 2 heads each
    model = create_model("mtcp_paper", conversion.tasks)
    load_state(model, conversion.state, "random PASCAL release")
    model.eval()
    assert model.heads["human_parts"][-1].scale_factor == 4
    p = _p(state, "depth_pred_layers.0.module.")  # HumanPred: Conv -> BN -> ReLU -> Conv
    y = torch.randn(1, 256, 4, 4)
    expected = _conv(F.relu(_bn(_conv(y, p, "0", bias=False), p, "1.")), p, "3")
    with torch.no_grad():
        torch.testing.assert_close(model.aux_heads["human_parts"][0](y), expected)
