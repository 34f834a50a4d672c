"""Atomic file writes and safe checkpoint loading.

Why not rely on Lightning: its ``TorchCheckpointIO`` writes through an fsspec transaction whose
temporary file lives in the system temp folder; when that folder is on another filesystem than
the run folder (common on clusters: local ``/tmp``, shared ``runs/``), the final move is a copy
into the destination, so an interrupted save leaves a truncated checkpoint. Here every file is
written to a temporary file *in the destination folder*, flushed to disk, then ``os.replace``-d
over the target: readers see either the old file or the new one, never a partial one.

Checkpoints hold only tensors and primitive Python types, so they load with
``torch.load(weights_only=True)``; anything else is refused unless the caller trusts the file.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mtcp.errors import MtcpError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path``
    keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # make the rename itself durable; not possible on every platform / filesystem
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` a checkpoint dict atomically; returns ``path``."""
    with atomic_open(path, "wb") as f:
        torch.save(checkpoint, f)
    return Path(path)


def load_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``.

    A file that needs full unpickling (arbitrary Python objects, which can run code when
    loaded) is refused with a clear error unless ``trust=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise MtcpError(f"checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust:
            raise MtcpError(
                f"checkpoint {path}: refusing to load it: it contains Python objects that need "
                "full unpickling, which can run arbitrary code. Load it only if you trust its "
                "origin, with trust=True (Python) or --trust (command line). "
                f"Details: {str(err).splitlines()[0]}"
            ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise MtcpError(f"checkpoint {path}: not a readable checkpoint ({err})") from None
    return torch.load(path, map_location="cpu", weights_only=False)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic saves, ``weights_only=True`` loads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        save_checkpoint(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: Any = None
    ) -> dict[str, Any]:
        return load_checkpoint(path)
