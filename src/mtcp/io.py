"""Files users keep: atomic writes, JSON, PNG images, safe checkpoint loading.

Every file mtcp writes goes through :func:`atomic_open` or :func:`atomic_path`: the data is
written to a temporary sibling *in the destination folder* (``.NAME.XXXX.tmp``), flushed to disk,
given the usual permissions (``0666 & ~umask``; ``mkstemp`` alone would leave 0600), then
``os.replace``-d over the target. Readers see the old file or the new one, never a partial one.
Temporaries left behind by a killed process are removed by :func:`remove_stale_temporaries`.

Why not Lightning's ``TorchCheckpointIO``: it writes through an fsspec transaction whose temporary
file lives in the system temp folder; when that is another filesystem than the run folder (local
``/tmp``, shared ``runs/`` on a cluster) the final move is a copy, and an interrupted save leaves
a truncated file.

Checkpoints hold only tensors and primitive Python types, so they load with
``torch.load(weights_only=True)``; anything else is refused unless the caller trusts the file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from mtcp.errors import MtcpError

TEMP_SUFFIX = ".tmp"


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


def _no_space(path: Path, err: OSError) -> MtcpError:
    return MtcpError(
        f"no space left on device while writing {path}; the previous version of the file "
        "(if any) is intact. Free some space and run the command again."
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that takes a file name.

    On success the temporary file is renamed over ``path`` (with the usual permissions); on any
    exception (KeyboardInterrupt included) it is removed and ``path`` keeps its old content.
    ``durable``: also flush the rename to disk (``fsync`` of the folder), so that it survives a
    power cut; without it the write is still atomic for any crash of the process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise _no_space(path, err) from None
        raise
    if durable:
        _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", durable: bool = True
) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``
    (``durable``: see :func:`atomic_path`; the data is also ``fsync``-ed first)."""
    with atomic_path(path, durable) as tmp, open(tmp, mode) as f:
        yield f
        if durable:
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (``durable``: see :func:`atomic_path`)."""
    with atomic_open(path, "wb", durable) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, durable: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable)


def flush_to_disk() -> None:
    """Write every file of this machine's page cache to disk (``sync``; a no-op where the
    platform has none): one call makes a batch of writes without ``durable`` durable."""
    if hasattr(os, "sync"):
        os.sync()


def remove_stale_temporaries(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files and ``.NAME.tmp-*`` folders a killed writer left.

    Only names of the patterns this module (and :func:`atomic_dir`) creates are touched, and
    with ``name`` only the temporaries of that one target (e.g. the output folder of
    ``mtcp synth``, whose siblings may belong to other runs). Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        name_ = entry.name
        if not name_.startswith(".") or (name is not None and not name_.startswith(f".{name}.")):
            continue
        if entry.is_file() and name_.endswith(TEMP_SUFFIX):
            entry.unlink(missing_ok=True)
            removed.append(entry)
        elif entry.is_dir() and ".tmp-" in name_:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it is renamed to ``path``.

    ``path`` must not exist or be an empty folder (the caller decides about overwriting).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        tmp.chmod(0o777 & ~_umask())
        yield tmp
        if path.is_dir():
            path.rmdir()
        os.rename(tmp, path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise _no_space(path, err) from None
        raise


def jsonable(value: Any) -> Any:
    """``value`` with tensors / numpy scalars as Python numbers and NaN / inf as None."""
    if isinstance(value, torch.Tensor):
        value = value.tolist() if value.ndim else value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_json(
    path: str | os.PathLike[str], data: Any, indent: int = 2, durable: bool = True
) -> Path:
    """Write ``data`` as JSON atomically (NaN and inf stored as null); returns ``path``."""
    return atomic_write_text(path, json.dumps(jsonable(data), indent=indent) + "\n", durable)


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def png_bytes(image: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG encoding of an ``[H, W]`` or ``[H, W, 3|4]`` uint8 / uint16 array (zlib level
    ``compress_level``: 1 is about 3x faster than the default 6, files about 1.4x larger)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_png(
    path: str | os.PathLike[str], image: np.ndarray, compress_level: int = 6, durable: bool = True
) -> Path:
    """Write ``image`` (see :func:`png_bytes`) atomically as PNG; returns ``path``."""
    return atomic_write_bytes(path, png_bytes(image, compress_level), durable)


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """``torch.save`` a checkpoint dict atomically; returns ``path``."""
    with atomic_open(path, "wb") as f:
        torch.save(checkpoint, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], trust: bool = False) -> dict[str, Any]:
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
