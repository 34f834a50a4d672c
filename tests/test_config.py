"""Config system: packaged configs, strict keys with suggestions, typed overrides, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mtcp.cli import main
from mtcp.engine.config import Config, config_from_dict, load_config, packaged_configs
from mtcp.errors import MtcpError


def test_every_packaged_config_loads_with_the_release_recipe():
    names = packaged_configs()
    expected = {"synthetic"} | {
        f"{d}_{s}" for d in ("nyud", "pascal") for s in ("paper", "base", "tiny")
    }
    assert expected <= set(names)
    for name in names:
        cfg = load_config(name)
        if name != "synthetic":
            assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.power) == (5e-5, 1e-4, 0.9)
            assert (cfg.trainer.max_epochs, cfg.data.batch_size) == (100, 2)
            assert cfg.model.name == "mtcp_" + name.split("_")[1]
    assert load_config("pascal_base").loss.weighting_options == {"spread": 1.6}
    assert load_config("nyud_tiny").data.size == [480, 640]


def test_overrides_are_typed_and_round_trip(tmp_path):
    cfg = load_config(
        None,
        [
            "trainer.max_epochs=3",
            "data.size=64x96",
            "optim.lr=1e-3",
            "data.tasks=[semseg, depth]",
            "trainer.devices=auto",
        ],
    )
    assert cfg.trainer.max_epochs == 3 and cfg.data.size == [64, 96]
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.data.tasks == ["semseg", "depth"] and cfg.trainer.devices == "auto"
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    path = tmp_path / "mine.yaml"
    path.write_text("trainer:\n  max_epochs: 7\n")
    assert load_config(path, ["trainer.seed=3"]).trainer.max_epochs == 7
    assert Config().trainer.max_epochs == 100  # defaults untouched
    # dotted overrides reach into mapping values; later ones win
    cfg = load_config(None, ["model.options={cfm: false}", "model.options.deep_supervision=true"])
    assert cfg.model.options == {"cfm": False, "deep_supervision": True}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trainer:\n  max_epoch: 3\n", "did you mean 'trainer.max_epochs'"),
        ("traner:\n  max_epochs: 3\n", "did you mean 'trainer'"),
        ("optim:\n  lr: fast\n", "optim.lr: expected float"),
        ("model:\n  name: mtcp_tny\n", "did you mean 'mtcp_tiny'"),
        ("data:\n  tasks: [semseg, depht]\n", "unknown task 'depht'"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_config_files_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MtcpError, match=message) as err:
        load_config(path)
    assert "bad.yaml" in str(err.value) or "unknown task" in str(err.value)


def test_cli_print_config_and_errors(capsys):
    assert main(["train", "--print-config", "trainer.max_epochs=2", "--devices", "2"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_epochs"] == 2 and printed["trainer"]["devices"] == 2
    assert printed["model"]["name"] == "mtcp_tiny" and printed["data"]["source"] == "synthetic"
    assert main(["train", "--print-config", "trainer.max_epoch=2"]) == 2
    assert "did you mean 'trainer.max_epochs'" in capsys.readouterr().err
    assert main(["train", "nyud_bas"]) == 2
    assert "did you mean 'nyud_base'" in capsys.readouterr().err
    assert main(["train", "--print-config", str(Path(__file__).parent)]) == 2  # a folder
    assert "is a folder, not a YAML file" in capsys.readouterr().err
    assert main(["train", "model.name=mtcp_huge"]) == 2
    assert "unknown model preset" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-1", "optim.lr must be a finite number > 0, got -1.0"),
        ("optim.lr=.nan", "optim.lr must be a finite number > 0"),
        ("optim.weight_decay=-0.1", "optim.weight_decay must be a finite number >= 0"),
        ("data.size=0x64", "data.size must be at least 64x64 pixels, got '0x64'"),
        ("data.size=0x40", "data.size must be at least 64x64 pixels, got '0x40'"),
        ("data.size=64", "data.size must look like HxW"),
        ("data.num_workers=-1", "data.num_workers must be >= 0"),
        ("trainer.devices=0", "trainer.devices must be >= 1, 'auto' or device ids"),
        ("trainer.precision=17-mixed", "trainer.precision must be one of"),
        ("trainer.accelerator=tpu", "trainer.accelerator must be one of"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val must be a finite number >= 0"),
        ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps must be >= 1"),
        ("loss.normals_loss=l3", "loss.normals_loss must be one of"),
        ("loss.weighting=lsp", "unknown weighting 'lsp'"),
        ("loss.weighting_options={w_min: 5}", "LPS needs 0 <= w_min <= w_max"),
    ],
)
def test_invalid_values_are_refused_when_the_config_is_checked(override, message):
    with pytest.raises(MtcpError, match=re.escape(message)):
        load_config(None, [override])


def test_sizes_in_yaml_files_are_never_hexadecimal(tmp_path):
    path = tmp_path / "size.yaml"
    path.write_text("data:\n  size: 0x64\n")
    with pytest.raises(MtcpError, match=r"size\.yaml.*data\.size must be at least 64x64"):
        load_config(path)
    path.write_text("data:\n  size: 64x96\n")
    assert load_config(path).data.size == [64, 96]
