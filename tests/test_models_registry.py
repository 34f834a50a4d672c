"""Presets, configs, weights files and user errors of mtcp.models.registry."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import save_file

import mtcp
from mtcp.errors import MtcpError
from mtcp.models import create_model, list_models
from mtcp.models.baselines import HardSharing
from mtcp.models.heads import AuxHead, FinalHead
from mtcp.models.mtcp import MTCP

NYUD = {"semseg": 40, "depth": 1, "normals": 3}
SIZES = ("tiny", "base", "paper")


def _grads_everywhere(model, size=(64, 64)):
    model.train()
    out = model(torch.randn(2, 3, *size))
    sum(v.float().square().mean() for v in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:10]}"
    return out


def test_list_models_names_every_preset():
    expected = {f"{kind}_{size}" for kind in ("mtcp", "stl", "hps") for size in SIZES}
    assert set(list_models()) == expected
    assert list_models("stl_*") == ["stl_base", "stl_paper", "stl_tiny"]
    assert mtcp.list_models("") == list_models() == sorted(expected)
    assert mtcp.list_models(filter="*_paper") == ["hps_paper", "mtcp_paper", "stl_paper"]


@pytest.mark.parametrize(
    "name", ["stl_tiny", "hps_tiny", "mtcp_base", "stl_base", "hps_base", "stl_paper", "hps_paper"]
)
def test_every_preset_uses_every_parameter(name):
    tasks = ["normals"] if name.startswith("stl") else ["semseg", "depth"]
    model = create_model(name, tasks)
    out = _grads_everywhere(model)
    assert {k for k in out if "_s" not in k} == set(tasks)
    if name.startswith("stl"):
        assert isinstance(model, MTCP) and not model.cfm and not model.use_traceback
    if name.startswith("hps"):
        assert isinstance(model, HardSharing)


def test_mtcp_paper_size_and_gradients():
    """SPEC §3: 151.4 M trainable parameters for NYUD's 3 tasks; no unused parameter."""
    model = create_model("mtcp_paper", NYUD, grad_checkpointing=True)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(n - 151.4e6) <= 0.02 * 151.4e6, n
    backbone = sum(p.numel() for p in model.backbone.parameters())
    assert abs(backbone - 68.8e6) <= 0.01 * 68.8e6, backbone  # Mask2Former without class head
    out = _grads_everywhere(model, size=(64, 96))
    assert out["normals_s8"].shape == (2, 3, 64, 96)


def test_config_is_json_and_rebuilds_the_same_architecture():
    model = create_model(
        "mtcp_tiny",
        {"semseg": 13, "depth": 1},
        cfm_stride=16,
        channels=48,
        decoder_dims=(48, 64, 96),
    )
    config = json.loads(json.dumps(model.config))
    assert config["name"] == "mtcp_tiny" and config["cfm_stride"] == 16
    rebuilt = mtcp.create_model(**config)
    assert rebuilt.tasks == model.tasks == {"semseg": 13, "depth": 1}
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert rebuilt.config == model.config


@pytest.mark.parametrize(
    "name, tasks", [("mtcp_tiny", NYUD), ("stl_tiny", ["depth"]), ("hps_tiny", ["depth", "edge"])]
)
@pytest.mark.parametrize("depth_init", [2.5, 4.0])
def test_untrained_depth_starts_at_depth_init(name, tasks, depth_init):
    expected = depth_init
    default = create_model(name, tasks)
    assert default.config["depth_init"] is None  # documented default: PyTorch's init
    assert all(
        float(m[-1].bias.abs().max()) < 1.0
        for m in default.modules()
        if isinstance(m, FinalHead | AuxHead)
    )
    model = create_model(name, tasks, depth_init=depth_init)
    assert model.config["depth_init"] == expected
    last_layers = [m[-1] for m in model.modules() if isinstance(m, FinalHead | AuxHead)]
    depth_biases = [c.bias for c in last_layers if c.out_channels == 1 and c.bias[0] == expected]
    n_heads = 3 if name == "mtcp_tiny" else 1  # final + deep supervision s16, s8
    assert len(depth_biases) == n_heads
    image = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        train_out = model.train()(image)
        eval_out = model.eval()(image)
    assert abs(float(eval_out["depth"].mean()) - expected) < 0.3
    depth_keys = [k for k in train_out if k.split("_")[0] == "depth"]
    assert len(depth_keys) == n_heads
    for key in depth_keys:  # BN on batch statistics: a wider spread
        assert abs(float(train_out[key].mean()) - expected) < 1.0, key


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "lightning"])
def test_weights_file_is_loaded(tmp_path, fmt):
    model = create_model("hps_tiny", ["depth", "edge"]).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    if fmt == "safetensors":
        save_file(state, str(path))
    elif fmt == "pt":
        torch.save(state, path)
    else:
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, path)
    loaded = create_model("hps_tiny", ["depth", "edge"], weights=path).eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(image)["edge"], model(image)["edge"])
    with pytest.raises(MtcpError, match=r"w\..*do not fit the model"):
        create_model("hps_tiny", ["depth"], weights=path)


def test_missing_weights_file(tmp_path):
    with pytest.raises(MtcpError, match="does not exist"):
        create_model("hps_tiny", ["depth"], weights=tmp_path / "nope.pt")


def test_bad_inputs_raise_clear_errors():
    model = create_model("hps_tiny", ["depth"])
    with pytest.raises(MtcpError, match=r"\[B, 3, H, W\].*\(2, 1, 64, 64\)"):
        model(torch.randn(2, 1, 64, 64))
    with pytest.raises(MtcpError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(MtcpError, match="smaller than the model's minimum 64x64"):
        model(torch.randn(1, 3, 48, 200))
    with pytest.raises(MtcpError, match="float"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "mtcp_huge", "tasks": ["depth"]}, "accepted: hps_base, .*mtcp_tiny"),
        ({"name": "mtcp_tiny", "tasks": ["depht"]}, "unknown task 'depht'; known tasks: semseg"),
        ({"name": "stl_tiny", "tasks": ["depth", "edge"]}, "exactly 1 task"),
        ({"name": "mtcp_tiny", "tasks": ["depth"], "cfm_strid": 8}, "accepted: backbone"),
        ({"name": "mtcp_tiny", "tasks": ["depth"], "cfm_stride": 2}, r"\(4, 8, 16\)"),
        ({"name": "mtcp_tiny", "tasks": ["depth"], "attention_impl": "x"}, "auto, dense"),
        ({"name": "mtcp_tiny", "tasks": ["depth"], "channels": 40}, "must equal"),
        ({"name": "mtcp_tiny", "tasks": ["depth"], "backbone": "no_such_net"}, "timm"),
        ({"name": "hps_tiny", "tasks": ["depth"], "backbone": "vit_tiny_patch16_224"}, "strides"),
        ({"name": "mtcp_tiny", "tasks": {"depth": 2}}, "1 output channel"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs, message):
    with pytest.raises(MtcpError, match=message):
        create_model(**kwargs)


def test_paper_pretrained_loads_the_ade_checkpoint(monkeypatch):
    """The network is not reachable here: a small stand-in replaces the hub download."""
    transformers = pytest.importorskip("transformers")
    requested = []

    def fake_from_pretrained(name, *args, **kwargs):
        requested.append(name)
        swin = transformers.SwinConfig(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            out_features=["stage1", "stage2", "stage3", "stage4"],
        )
        small = transformers.Mask2FormerConfig(
            backbone_config=swin, encoder_layers=1, decoder_layers=2, num_queries=4
        )
        return transformers.Mask2FormerModel(small)

    monkeypatch.setattr(transformers.Mask2FormerModel, "from_pretrained", fake_from_pretrained)
    model = create_model("hps_paper", ["depth"], pretrained=True)
    assert requested == ["facebook/mask2former-swin-small-ade-semantic"]
    assert "pretrained" not in model.config
    _grads_everywhere(model)


def test_paper_without_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails
    with pytest.raises(MtcpError, match=r"pip install 'mtcp\[mask2former\]'"):
        create_model("hps_paper", ["depth"])
