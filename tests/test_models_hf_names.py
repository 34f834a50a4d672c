"""Mask2Former Swin names across transformers generations (mtcp.models.hf_names)."""

from __future__ import annotations

from mtcp.models.hf_names import rename_swin_key, rename_swin_keys, swin_naming
from release_fixtures import key_list

ENC = "backbone.model.pixel_level_module.encoder."


def test_release_keys_rename_to_5x_and_back():
    keys = {k: k for k, _ in key_list()}  # release keys, transformers 4.46 names
    assert swin_naming(keys) == "4"
    v5 = rename_swin_keys(keys, "5")
    assert swin_naming(v5) == "5"
    assert len(set(v5) - set(keys)) == 421 and len(keys) - len(v5) == 24
    back = rename_swin_keys(v5, "4")
    assert set(back) == {
        k for k in keys if not k.endswith("attention.self.relative_position_index")
    }
    assert rename_swin_keys(back, "4") == back  # idempotent


def test_each_rename_of_the_table():
    block = "encoder.layers.1.blocks.0."
    cases = {
        "attention.self.query.weight": "attention.q_proj.weight",
        "attention.self.key.bias": "attention.k_proj.bias",
        "attention.self.value.weight": "attention.v_proj.weight",
        "attention.self.relative_position_bias_table": (
            "attention.relative_position_bias.relative_position_bias_table"
        ),
        "attention.output.dense.weight": "attention.o_proj.weight",
        "intermediate.dense.bias": "mlp.fc1.bias",
        "output.dense.weight": "mlp.fc2.weight",
        "layernorm_before.weight": "layernorm_before.weight",
    }
    for old, new in cases.items():
        assert rename_swin_key(ENC + block + old, "5") == ENC + "swin." + block + new
        assert rename_swin_key(ENC + "swin." + block + new, "4") == ENC + block + old
    assert rename_swin_key(ENC + block + "attention.self.relative_position_index", "5") is None
    assert (
        rename_swin_key(ENC + "embeddings.norm.weight", "5") == ENC + "swin.embeddings.norm.weight"
    )
    assert rename_swin_key(ENC + "hidden_states_norms.stage1.bias", "5").endswith(
        "encoder.hidden_states_norms.stage1.bias"
    )
    other = "backbone.model.transformer_module.decoder.layers.0.self_attn.k_proj.weight"
    assert rename_swin_key(other, "4") == other  # outside the Swin: untouched
    assert swin_naming(["decoders.semseg.fpn.output.weight"]) is None
