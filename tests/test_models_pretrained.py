"""save_pretrained / from_pretrained (config.json + model.safetensors), offline on a folder."""

from __future__ import annotations

import json

import pytest
import torch

from mtcp.errors import MtcpError
from mtcp.models import HardSharing, create_model, from_pretrained
from mtcp.models.base import DenseModel
from mtcp.models.mtcp import MTCP
from mtcp.tasks import IMAGENET_MEAN


def test_folder_round_trip_keeps_outputs_and_data_config(tmp_path):
    model = create_model("mtcp_tiny", {"semseg": 5, "depth": 1}, cfm_stride=16).eval()
    model.set_data_config(input_size=(96, 128), intrinsics=(100.0, 101.0, 64.0, 48.0))
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"]["name"] == "mtcp_tiny" and config["model"]["cfm_stride"] == 16
    assert config["data_config"]["input_size"] == [96, 128]
    loaded = DenseModel.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, MTCP) and not loaded.training
    assert loaded.data_config == model.data_config
    assert loaded.data_config["intrinsics"] == (100.0, 101.0, 64.0, 48.0)
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for k, v in model(image).items():
            assert torch.equal(loaded(image)[k], v), k
    with pytest.raises(MtcpError, match="holds a MTCP, not a HardSharing"):
        HardSharing.from_pretrained(tmp_path / "m")
    assert isinstance(from_pretrained(str(tmp_path / "m")), MTCP)


def test_bad_folders_and_ids_are_refused(tmp_path):
    with pytest.raises(MtcpError, match="no folder written by save_pretrained"):
        DenseModel.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MtcpError, match=r"not a config\.json of save_pretrained"):
        DenseModel.from_pretrained(tmp_path / "empty")
    model = create_model("hps_tiny", ["depth"])
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(MtcpError, match=r"model\.safetensors: no such file"):
        DenseModel.from_pretrained(tmp_path / "m")


def test_data_config_defaults_and_validation():
    model = create_model("hps_tiny", ["depth"])
    assert model.data_config == {
        "input_size": None,
        "mean": tuple(IMAGENET_MEAN),
        "std": model.data_config["std"],
        "intrinsics": None,
    }
    with pytest.raises(MtcpError, match="input_size must be"):
        model.set_data_config(input_size=(8, 8))
    with pytest.raises(MtcpError, match="intrinsics must be"):
        model.set_data_config(intrinsics=(1.0, 2.0))


def test_forward_features_is_the_shared_representation():
    model = create_model("mtcp_tiny", ["semseg", "depth"]).eval()
    image = torch.randn(2, 3, 70, 100)  # padded to 96 x 128
    with torch.no_grad():
        r = model.forward_features(image)
        decoded = {}
        hook = model.decoders["depth"].register_forward_pre_hook(
            lambda m, a: decoded.__setitem__("r", a[0])
        )
        model(image)
        hook.remove()
    assert r.shape == (2, 32, 24, 32)
    assert torch.equal(r, decoded["r"])
    with pytest.raises(MtcpError, match="expects normalised RGB images"):
        model.forward_features(torch.randn(2, 1, 64, 64))
