"""Files users keep: permissions, stale temporaries, JSON, a full disk, safe loads."""

from __future__ import annotations

import builtins
import json
import math
import os
import stat

import pytest
import torch

from mtcp import io as mio
from mtcp.errors import MtcpError


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_writer_gives_the_usual_permissions(tmp_path, umask_022):
    """mkstemp creates 0600; what users keep must be readable like any file (0644 here)."""
    mio.atomic_write_text(tmp_path / "a.txt", "x")
    mio.save_checkpoint({"w": torch.ones(1)}, tmp_path / "a.ckpt")
    with mio.atomic_path(tmp_path / "b.onnx") as tmp:
        tmp.write_bytes(b"graph")  # writers that take a file name (onnx, safetensors)
    with mio.atomic_dir(tmp_path / "folder") as folder:
        (folder / "x").write_text("1")
    for name in ("a.txt", "a.ckpt", "b.onnx"):
        assert _mode(tmp_path / name) == 0o644, name
    assert _mode(tmp_path / "folder") == 0o755


def test_exported_files_are_readable_as_checkpoints_are(tmp_path, umask_022):
    import mtcp
    from mtcp.export import save_safetensors

    model = mtcp.create_model("mtcp_tiny", tasks={"semseg": 3, "depth": 1})
    save_safetensors(model, tmp_path / "m.safetensors", size=(64, 64))
    mio.save_checkpoint({"w": torch.ones(1)}, tmp_path / "m.ckpt")
    assert _mode(tmp_path / "m.safetensors") == _mode(tmp_path / "m.ckpt") == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), mio.atomic_open(path, "w") as f:
        f.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_non_durable_writes_skip_fsync_and_stay_atomic(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))
    mio.write_png(tmp_path / "a.png", torch.zeros(4, 5, dtype=torch.uint8).numpy(), durable=False)
    mio.write_json(tmp_path / "a.json", {"x": 1}, durable=False)
    assert calls == []
    mio.write_json(tmp_path / "b.json", {"x": 1})
    assert len(calls) == 2  # the data, then the folder's rename
    path = tmp_path / "a.json"
    with pytest.raises(RuntimeError), mio.atomic_open(path, "w", durable=False) as f:
        f.write("half")
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.png", "b.json"]


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".last.ckpt.abc123.tmp").write_bytes(b"partial")
    (tmp_path / ".out.tmp-xyz").mkdir()
    (tmp_path / ".out.tmp-xyz" / "scene.png").write_bytes(b"partial")
    (tmp_path / ".hidden_user_file").write_text("mine")
    (tmp_path / "notes.tmp").write_text("mine too")  # not a pattern mtcp writes
    removed = {p.name for p in mio.remove_stale_temporaries(tmp_path)}
    assert removed == {".last.ckpt.abc123.tmp", ".out.tmp-xyz"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden_user_file", "notes.tmp"]


def test_full_disk_is_one_clear_message_and_the_old_file_stays(tmp_path, monkeypatch):
    path = tmp_path / "best.ckpt"
    mio.save_checkpoint({"epoch": 1}, path)

    def full(file, mode="r", *args, **kwargs):
        if "w" in mode:
            return builtins.open("/dev/full", mode, *args, **kwargs)
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(mio, "open", full, raising=False)
    with pytest.raises(MtcpError, match=r"no space left on device while writing .*best\.ckpt"):
        mio.save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert mio.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]


def test_json_stores_nan_as_null_and_tensors_as_numbers(tmp_path):
    path = mio.write_json(tmp_path / "r.json", {"a": math.nan, "b": torch.tensor(2.5), "c": [1]})
    assert json.loads(path.read_text()) == {"a": None, "b": 2.5, "c": [1]}
    assert mio.read_json(tmp_path / "missing.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert mio.read_json(tmp_path / "list.json") is None  # not an object


class Payload:
    """Any Python object: loading it needs full unpickling."""


def test_checkpoints_that_need_unpickling_are_refused(tmp_path):
    torch.save({"obj": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(MtcpError, match=r"refusing to load it.*trust=True"):
        mio.load_checkpoint(tmp_path / "evil.ckpt")
    with pytest.raises(MtcpError, match="no such file"):
        mio.load_checkpoint(tmp_path / "none.ckpt")
