"""Inputs of ``mtcp predict``: image files, folders of images (sorted, non-recursive) and
videos, decoded in DataLoader worker processes while the model runs.

:func:`expand_inputs` lists the work (cheap: no decoding); :class:`DecodedImages` reads,
decodes and prepares each image (:func:`mtcp.inference.predictor.prepare`) in the workers and
yields one item per image or video frame::

    {"key": (entry, frame), "name": str, "rgb": uint8 [H, W, 3] | None,
     "input": float32 [3, *size] | None, "error": str | None}

A file that cannot be read gives an item with ``error`` set (never an exception), so one bad
file never stops the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from mtcp.errors import MtcpError
from mtcp.inference.predictor import prepare, to_rgb_array

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass(frozen=True)
class Entry:
    """One unit of work: an image file, a video, or an input that is already known bad."""

    kind: str  # "image", "video" or "error"
    path: Path
    error: str = ""


def expand_inputs(inputs: Sequence[str | Path]) -> list[Entry]:
    """Files, folders (their images, sorted) and videos → the list of :class:`Entry`."""
    entries: list[Entry] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if not files:
                entries.append(Entry("error", path, f"{path}: folder holds no image files"))
            entries += [Entry("image", f) for f in files]
        elif path.suffix.lower() in VIDEO_EXTS:
            entries.append(Entry("video", path))
        else:
            entries.append(Entry("image", path))
    return entries


def open_video(path: Path) -> Iterator[np.ndarray]:
    """RGB frames of a video through PyAV or imageio (optional dependencies, imported lazily)."""
    if not path.is_file():
        raise MtcpError(f"{path}: no such file")
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        return
    try:
        import imageio.v3 as iio
    except ImportError:
        raise MtcpError(
            f"{path}: reading videos needs PyAV or imageio: pip install av (or imageio[pyav])"
        ) from None
    yield from iio.imiter(path)


def _describe(err: Exception, path: Path) -> str:
    if isinstance(err, MtcpError):
        return str(err)
    return f"{path}: {type(err).__name__}: {err}"


class DecodedImages(IterableDataset):
    """Decoded, prepared images of ``entries`` (see the module docstring).

    With several DataLoader workers, worker ``k`` of ``n`` takes the entries ``i`` with
    ``i % n == k`` (a video stays in one worker, its frames in order).

    Args:
        entries: from :func:`expand_inputs`.
        size: the network input ``(H, W)``.
        every: videos: keep every ``every``-th frame.
    """

    def __init__(self, entries: Sequence[Entry], size: Sequence[int], every: int = 1) -> None:
        self.entries = list(entries)
        self.size = (int(size[0]), int(size[1]))
        self.every = max(int(every), 1)

    def _item(self, key: tuple[int, int], name: str, source: Any, path: Path) -> dict[str, Any]:
        try:
            rgb = to_rgb_array(source)
            x = prepare(rgb, self.size)
        except Exception as err:  # one bad image must not stop the others
            return {
                "key": key,
                "name": name,
                "rgb": None,
                "input": None,
                "error": _describe(err, path),
            }
        return {"key": key, "name": name, "rgb": rgb, "input": x, "error": None}

    def _frames(self, i: int, entry: Entry) -> Iterator[dict[str, Any]]:
        try:
            for k, frame in enumerate(open_video(entry.path)):
                if k % self.every == 0:
                    yield self._item((i, k), f"{entry.path}#{k}", np.asarray(frame), entry.path)
        except Exception as err:  # decoder errors of av / imageio have no common base class
            message = (
                str(err)
                if isinstance(err, MtcpError)
                else f"{entry.path}: cannot decode the video ({err})"
            )
            yield {
                "key": (i, -1),
                "name": str(entry.path),
                "rgb": None,
                "input": None,
                "error": message,
            }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i, entry in enumerate(self.entries):
            if i % n_workers != worker:
                continue
            if entry.kind == "error":
                yield {
                    "key": (i, -1),
                    "name": str(entry.path),
                    "rgb": None,
                    "input": None,
                    "error": entry.error,
                }
            elif entry.kind == "video":
                yield from self._frames(i, entry)
            else:
                yield self._item((i, -1), str(entry.path), entry.path, entry.path)


def as_list(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DataLoader ``collate_fn`` keeping a batch as a list of items (module level: picklable)."""
    return items


def stack_inputs(items: Sequence[dict[str, Any]]) -> torch.Tensor:
    """The prepared inputs of ``items`` as one ``[B, 3, H, W]`` batch."""
    return torch.stack([item["input"] for item in items])
