"""The one weight loader (mtcp.models.weights.load_state) and its strictness policy."""

from __future__ import annotations

import pytest
import torch

from mtcp.errors import MtcpError
from mtcp.models import create_model
from mtcp.models.hf_names import rename_swin_keys
from mtcp.models.weights import load_state, read_state_file


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_prefixes_are_stripped_and_weights_loaded():
    source = create_model("hps_tiny", ["depth", "edge"])
    state = _state(source)
    for prefix in ("module.", "model.", "module.model."):
        target = create_model("hps_tiny", ["depth", "edge"])
        load_state(target, {prefix + k: v for k, v in state.items()}, "ckpt")
        assert all(torch.equal(v, state[k]) for k, v in target.state_dict().items())


def test_every_problem_is_named_and_nothing_is_loaded():
    model = create_model("hps_tiny", ["depth", "edge"])
    before = _state(model)
    state = {k: torch.zeros_like(v) for k, v in before.items()}
    del state["heads.edge.1.bias"]
    state["heads.sal.1.bias"] = torch.zeros(1)
    state["heads.depth.1.weight"] = torch.zeros(2, 32, 1, 1)
    with pytest.raises(MtcpError) as err:
        load_state(model, state, "run/last.safetensors")
    text = str(err.value)
    assert text.startswith("run/last.safetensors: weights do not fit the model 'hps_tiny'")
    assert "1 missing key(s): heads.edge.1.bias" in text
    assert "1 unexpected key(s): heads.sal.1.bias" in text
    assert "heads.depth.1.weight (file [2, 32, 1, 1], model [1, 32, 1, 1])" in text
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_mtcp_paper_weights_of_either_transformers_generation_load():
    model = create_model("hps_paper", ["depth"])
    state = _state(model)
    v4 = rename_swin_keys(state, "4")
    assert set(v4) != set(state)
    # a 4.x state dict also saved the constant index buffers: accepted and dropped
    block = "backbone.model.pixel_level_module.encoder.encoder.layers.0.blocks.0."
    v4[block + "attention.self.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    with torch.no_grad():
        for v in model.parameters():
            v.zero_()
    load_state(model, v4, "old.ckpt")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_read_state_file_formats_and_errors(tmp_path):
    state = {"a": torch.ones(2)}
    torch.save({"state_dict": state}, tmp_path / "l.ckpt")
    assert torch.equal(read_state_file(tmp_path / "l.ckpt")["a"], state["a"])
    torch.save({"a": [1, 2]}, tmp_path / "bad.pt")
    with pytest.raises(MtcpError, match="does not hold a state dict of tensors"):
        read_state_file(tmp_path / "bad.pt")
    with pytest.raises(MtcpError, match="does not exist"):
        read_state_file(tmp_path / "none.pt")
