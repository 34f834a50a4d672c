"""Lightning checkpoint I/O: a non-finite model is never written, the previous file stays."""

from __future__ import annotations

import pytest
import torch

from mtcp.engine.checkpoint import AtomicCheckpointIO, nonfinite_tensors
from mtcp.errors import MtcpError
from mtcp.io import load_checkpoint


def test_nonfinite_weights_are_refused_and_the_previous_checkpoint_stays(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "best.ckpt"
    good = {"state_dict": {"w": torch.ones(3), "n": torch.tensor(2)}, "epoch": 0}
    io.save_checkpoint(good, path)
    bad = {"state_dict": {"w": torch.tensor([1.0, float("nan"), 2.0]), "n": torch.tensor(3)}}
    with pytest.raises(MtcpError, match=r"refusing to write checkpoint .*best\.ckpt.* w\b"):
        io.save_checkpoint(bad, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]
    assert nonfinite_tensors({"a": torch.tensor([float("inf")]), "b": torch.zeros(2)}) == ["a"]
