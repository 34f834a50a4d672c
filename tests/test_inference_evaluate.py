"""``mtcp.evaluate`` / ``mtcp evaluate``: every format ``mtcp.load`` accepts, clear errors, and
results that survive a read-only checkpoint folder."""

from __future__ import annotations

import errno
import json
import shutil
import tempfile

import pytest

import mtcp
from mtcp.cli import main
from mtcp.errors import MtcpError
from mtcp.export import export_onnx, save_safetensors

LIMIT = ["--limit", "3"]


@pytest.fixture(scope="module")
def exported(trained_ckpt, tmp_path_factory):
    """The trained run as .safetensors and .onnx (same weights, same input size)."""
    folder = tmp_path_factory.mktemp("exported")
    predictor = mtcp.load(trained_ckpt)
    camera = predictor.intrinsics
    st = save_safetensors(predictor.model, folder / "m.safetensors", predictor.size, camera)
    onnx = export_onnx(predictor.model, folder / "m.onnx", predictor.size, intrinsics=camera)
    return {"safetensors": st, "onnx": onnx}


def _main_metrics(report):
    return {t: report["metrics"][t] for t in ("semseg", "depth", "normals", "edge")}


def test_evaluate_accepts_ckpt_safetensors_and_onnx(trained_ckpt, exported, tmp_path):
    reference = mtcp.evaluate(trained_ckpt, limit=3)
    assert reference["n_images"] == 3 and reference["model"] == "mtcp_tiny"
    same = mtcp.evaluate(exported["safetensors"], "synthetic", limit=3)
    assert _main_metrics(same) == _main_metrics(reference)
    onnx = tmp_path / "onnx.json"
    argv = ["evaluate", str(exported["onnx"]), "--data", "synthetic", *LIMIT, "--out", str(onnx)]
    assert main(argv) == 0  # no --trust needed: nothing is unpickled
    report = json.loads(onnx.read_text())
    assert report["n_images"] == 3
    rmse = reference["metrics"]["depth"]["rmse"]
    assert report["metrics"]["depth"]["rmse"] == pytest.approx(rmse, rel=1e-3)


def test_exported_files_need_data(exported, capsys):
    assert main(["evaluate", str(exported["safetensors"]), *LIMIT]) == 2
    err = capsys.readouterr().err
    assert "m.safetensors" in err and "--data" in err


def test_truncated_safetensors_is_a_clear_error(exported, tmp_path, capsys):
    data = exported["safetensors"].read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert main(["evaluate", str(cut), "--data", "synthetic", *LIMIT]) == 2
    err = capsys.readouterr().err
    assert "cut.safetensors" in err and "Traceback" not in err
    with pytest.raises(MtcpError, match=r"cut\.safetensors"):
        mtcp.evaluate(cut, "synthetic", limit=1)


@pytest.fixture
def read_only_copy(trained_ckpt, tmp_path, monkeypatch):
    """best.ckpt in a folder where no file can be created (as a read-only mount; simulated,
    since the tests may run as root, for whom permissions do not apply)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    ckpt = shutil.copy(trained_ckpt, folder / "best.ckpt")
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(dir) == str(folder):
            raise PermissionError(errno.EROFS, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return ckpt


def test_read_only_checkpoint_folder_prints_then_saves_elsewhere(read_only_copy, capsys):
    assert main(["evaluate", str(read_only_copy), *LIMIT]) == 0
    out = capsys.readouterr().out
    assert out.index("depth/rmse") < out.index("Read-only file system") < out.index("results:")
    assert "--out" in out
    report = json.loads((read_only_copy.parent.parent / "cwd" / "best.test.json").read_text())
    assert report["n_images"] == 3
    assert not (read_only_copy.parent / "best.test.json").exists()


def test_unwritable_out_still_prints_the_table(read_only_copy, capsys):
    target = read_only_copy.parent / "results.json"
    assert main(["evaluate", str(read_only_copy), *LIMIT, "--out", str(target)]) == 2
    captured = capsys.readouterr()
    assert "depth/rmse" in captured.out
    assert str(target) in captured.err and "--out" in captured.err
