"""mtcp.export.release and ``mtcp convert-release``: release checkpoint file -> safetensors."""

from __future__ import annotations

import pytest
import torch

from mtcp.cli import main
from mtcp.errors import MtcpError
from mtcp.export.release import convert_release
from mtcp.geometry import nyud_intrinsics
from mtcp.inference.formats import load_safetensors, safetensors_metadata
from mtcp.models.release import convert_release_state
from release_fixtures import random_release_nyud


class _NeedsUnpickling:
    """An object in a checkpoint that only full unpickling could restore."""


@pytest.fixture(scope="module")
def release_ckpt(tmp_path_factory):
    state = random_release_nyud(seed=3)
    path = tmp_path_factory.mktemp("release") / "model_best.pth.tar"
    torch.save({"epoch": 99, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path, state


def test_cli_converts_a_ddp_checkpoint_into_weights_mtcp_loads(release_ckpt, tmp_path, capsys):
    path, state = release_ckpt
    out = tmp_path / "nyud.safetensors"
    assert main(["convert-release", str(path), "--out", str(out), "--size", "448x576"]) == 0
    printed = capsys.readouterr().out
    assert "release checkpoint (nyud, tasks {'semseg': 40, 'depth': 1, 'normals': 3})" in printed
    assert "mapped 1539 tensors" in printed and "dropped 178 tensors" in printed
    assert "102  spf_modules.3 is spf_modules.2 registered twice" in printed
    assert "trace_back.spf_modules.0.sem_conv.bias -> traceback.semseg.srm3.predict.1" in printed
    meta = safetensors_metadata(out)
    assert meta["size"] == [448, 576] and meta["model"]["name"] == "mtcp_paper"
    assert meta["intrinsics"] == pytest.approx(list(nyud_intrinsics((448, 576))))
    model = load_safetensors(out)
    expected = convert_release_state(state).state
    sd = model.state_dict()
    key = "traceback.depth.srm2.refine.1.running_mean"  # a folded bias
    torch.testing.assert_close(sd[key], expected[key])
    assert torch.equal(sd["heads.depth.4.weight"], state["project_depth.4.weight"])


def test_bad_outputs_and_checkpoints_are_refused(release_ckpt, tmp_path):
    path, _ = release_ckpt
    with pytest.raises(MtcpError, match=r"as \.safetensors"):
        convert_release(path, tmp_path / "out.pt")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(MtcpError, match=r"other\.pt: not a checkpoint of the MT-CP release"):
        convert_release(tmp_path / "other.pt", tmp_path / "o.safetensors")
    torch.save({"state_dict": _NeedsUnpickling()}, tmp_path / "pickle.pt")
    with pytest.raises(MtcpError, match="refusing to load it"):
        convert_release(tmp_path / "pickle.pt", tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


def test_a_checkpoint_missing_a_tensor_is_refused_with_its_mtcp_name(release_ckpt, tmp_path):
    _, state = release_ckpt
    partial = {k: v for k, v in state.items() if k != "trace_back3.spf_modules.1.b2.weight"}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(MtcpError, match=r"missing key\(s\): traceback\.normals\.srm2\.refine\.1"):
        convert_release(tmp_path / "partial.pth", tmp_path / "p.safetensors")
    assert not (tmp_path / "p.safetensors").exists()
