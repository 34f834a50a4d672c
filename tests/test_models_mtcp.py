"""The assembled MT-CP model (tiny preset): outputs, switches, task subsets, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtcp.models import create_model
from mtcp.models.ops import resize

NYUD = {"semseg": 40, "depth": 1, "normals": 3}


def _image(h=64, w=96, b=2):
    return torch.randn(b, 3, h, w)


def _assert_every_parameter_has_gradient(model, image):
    model.train()
    out = model(image)
    sum(v.float().square().mean() for v in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:10]}"
    return out


SWITCHES = [
    {},
    {"cfm": False},
    {"traceback": False},
    {"deep_supervision": False},
    {"cfm_stride": 4},
    {"cfm_stride": 16, "attention_impl": "chunked", "attention_chunk": 5},
    {"cfm": False, "traceback": False, "deep_supervision": False},
]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(map(str, s.items())))
def test_every_parameter_gets_a_gradient_for_each_switch(switches):
    model = create_model("mtcp_tiny", NYUD, **switches)
    out = _assert_every_parameter_has_gradient(model, _image())
    aux = switches.get("deep_supervision", True)
    expected = {t + s for t in NYUD for s in (["", "_s16", "_s8"] if aux else [""])}
    assert set(out) == expected
    for name, value in out.items():
        assert value.shape == (2, NYUD[name.split("_s")[0]], 64, 96)


@pytest.mark.parametrize(
    "tasks",
    [
        ["depth"],
        ["semseg", "edge"],
        {"semseg": 21, "human_parts": 7, "sal": 1, "normals": 3, "edge": 1, "depth": 1},
    ],
    ids=["one", "two", "all-six"],
)
def test_task_subsets_train_and_keep_channel_counts(tasks):
    model = create_model("mtcp_tiny", tasks)
    assert len(model.cfm) == (0 if len(model.tasks) == 1 else len(model.tasks))
    out = _assert_every_parameter_has_gradient(model, _image(b=2))
    for task, channels in model.tasks.items():
        assert out[task].shape == (2, channels, 64, 96)
        assert out[f"{task}_s16"].shape == out[f"{task}_s8"].shape == (2, channels, 64, 96)


def test_one_task_model_skips_cfm():
    model = create_model("mtcp_tiny", ["depth"]).eval()
    assert len(model.cfm) == 0
    image = _image(b=1)
    x, feats = model.decoders["depth"](model.backbone(image))
    expected = resize(model.heads["depth"](model.traceback["depth"](x, feats)[2]), (64, 96))
    with torch.no_grad():
        assert torch.allclose(model(image)["depth"], expected, atol=1e-5)


def _spec_forward(model, image):
    """SPEC §3 written out from the submodules (no padding needed at 64x96)."""
    r = model.backbone(image)
    dec = {t: model.decoders[t](r) for t in model.tasks}
    out = {}
    for t, (x, feats) in dec.items():
        if model.cfm:
            x = model.cfm[t](x, [dec[a][0] for a in model.tasks if a != t])
        if model.use_traceback:
            y16, y8, y = model.traceback[t](x, feats)
        else:
            y16, y8, y = feats[2], feats[1], x
        out[t] = resize(model.heads[t](y), image.shape[-2:])
        out[f"{t}_s16"] = resize(model.aux_heads[t][0](y16), image.shape[-2:])
        out[f"{t}_s8"] = resize(model.aux_heads[t][1](y8), image.shape[-2:])
    return out


@pytest.mark.parametrize(
    "switches", [{}, {"cfm": False}, {"traceback": False}, {"cfm": False, "traceback": False}]
)
def test_switches_compute_what_spec_states(switches):
    model = create_model("mtcp_tiny", NYUD, attention_impl="dense", **switches).eval()
    assert bool(model.cfm) == switches.get("cfm", True)
    assert hasattr(model, "traceback") == switches.get("traceback", True)
    image = _image(b=1)
    with torch.no_grad():
        got = model(image)
        model.train()  # eval BN statistics stay, but aux heads are evaluated
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        got_train = model(image)
        want = _spec_forward(model, image)
    assert set(got) == set(NYUD)  # eval mode: no deep-supervision maps
    for key, value in want.items():
        assert torch.allclose(got_train[key], value, atol=1e-5), key
    for t in NYUD:
        assert torch.allclose(got[t], want[t], atol=1e-5)


@pytest.mark.parametrize("stride", [4, 8, 16])
def test_cfm_stride_sets_attention_resolution(stride):
    model = create_model("mtcp_tiny", ["semseg", "depth"], cfm_stride=stride).eval()
    tokens = []
    for cfm in model.cfm.values():
        cfm.attention.register_forward_hook(lambda m, i, o: tokens.append(i[0].shape[1]))
    with torch.no_grad():
        model(_image(b=1))
    assert tokens == [(64 // stride) * (96 // stride)] * 2


def test_switches_change_outputs():
    # (at initialisation the CFM attention is near-uniform, so its stride barely matters:
    # test_cfm_stride_sets_attention_resolution covers the stride)
    ref = create_model("mtcp_tiny", NYUD).eval()
    image = _image(b=1)
    with torch.no_grad():
        base = ref(image)["depth"]
        for switch in ({"cfm": False}, {"traceback": False}):
            other = create_model("mtcp_tiny", NYUD, **switch).eval()
            mine = other.state_dict()
            shared = {k: v for k, v in ref.state_dict().items() if k in mine}
            same = {k: v for k, v in shared.items() if v.shape == mine[k].shape}
            other.load_state_dict(same, strict=False)
            assert not torch.allclose(other(image)["depth"], base, rtol=0, atol=1e-6), switch


@pytest.mark.parametrize("size", [(250, 333), (65, 127), (512, 512), (480, 640)])
def test_output_size_equals_input_size(size):
    model = create_model("mtcp_tiny", NYUD).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, *size))
    for task, channels in NYUD.items():
        assert out[task].shape == (1, channels, *size)
        assert torch.isfinite(out[task]).all()


def test_padding_does_not_leak_into_the_crop_alignment():
    # a padded input's output equals the crop of the output for the image padded by hand
    model = create_model("mtcp_tiny", ["depth"]).eval()
    image = _image(h=70, w=90, b=1)
    with torch.no_grad():
        out = model(image)["depth"]
        full = model(F.pad(image, (0, 6, 0, 26)))["depth"]
    assert torch.allclose(out, full[..., :70, :90], atol=1e-5)


def test_channels_last_and_bf16_autocast_keep_the_function():
    model = create_model("mtcp_tiny", NYUD).eval()
    image = _image(b=1)
    with torch.no_grad():
        ref = model(image)
        model.to(memory_format=torch.channels_last)
        fast = model(image.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(image)
    for t in NYUD:
        assert torch.allclose(fast[t], ref[t], atol=1e-4)
        scale = ref[t].abs().max()
        assert (half[t].float() - ref[t]).abs().max() < 0.1 * scale + 0.05


def test_grad_checkpointing_keeps_outputs_and_gradients():
    image = _image()
    results = []
    for enable in (False, True):
        torch.manual_seed(3)
        model = create_model("mtcp_tiny", NYUD, grad_checkpointing=enable).train()
        out = model(image)
        sum(v.square().mean() for v in out.values()).backward()
        results.append((out, {n: p.grad for n, p in model.named_parameters()}))
        assert model.decoders["depth"].stages[0].grad_checkpointing is enable
    (out0, grads0), (out1, grads1) = results
    for key in out0:
        assert torch.allclose(out0[key], out1[key], atol=1e-6)
    for name, grad in grads0.items():
        assert torch.allclose(grad, grads1[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("name", ["mtcp_tiny", "hps_tiny"])
def test_gradients_have_exactly_their_parameters_strides(name):
    # DDP compares every stride, size-1 dimensions included ("Grad strides do not match bucket
    # view strides"); ConvNeXt's depthwise [C, 1, 7, 7] weights differed on the CPU
    model = create_model(name, NYUD)
    _assert_every_parameter_has_gradient(model, _image())
    wrong = [n for n, p in model.named_parameters() if p.grad.stride() != p.stride()]
    assert not wrong, wrong[:5]
