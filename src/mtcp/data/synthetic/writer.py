"""Synthetic scenes written into the on-disk layouts of :mod:`mtcp.data.layouts` (``mtcp synth``).

Scene ``i`` of a written dataset is ``render_scene_full(seed, i, size, person_prob=...)``
(:func:`person_prob_for`). Each task is encoded as the layout stores it: NYUD semseg with 0 =
void, normals in the layout's declared frame (:attr:`~mtcp.data.layouts.Layout.normals_signs`),
PASCAL semseg with the 21 ids of :data:`~mtcp.data.layouts.PASCAL_CLASSES`
(:data:`SYNTHETIC_TO_PASCAL`), a PASCAL-Part ``anno`` struct for the people, and a
PASCAL-Context ``LabelMap`` of indoor classes (:data:`SYNTHETIC_TO_PASCAL_CONTEXT`), so that
every written normal stays valid.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from mtcp.data.layouts import (
    NYUD_MT,
    PASCAL_CLASSES,
    PASCAL_MT,
    Layout,
    get_layout,
    pascal_normals_valid_classes,
)
from mtcp.data.synthetic.palette import SYNTHETIC_CLASSES
from mtcp.data.synthetic.scene import RenderedScene, render_scene_full
from mtcp.errors import MtcpError
from mtcp.io import remove_stale_temporaries
from mtcp.sizes import parse_size
from mtcp.tasks import IGNORE_INDEX

log = logging.getLogger(__name__)

#: Synthetic class → PASCAL class written into the PASCAL_MT layout (room surfaces → background).
SYNTHETIC_TO_PASCAL: dict[str, str] = {
    "floor": "background",
    "ceiling": "background",
    "wall": "background",
    "door": "background",
    "window": "background",
    "rug": "background",
    "picture": "tvmonitor",
    "box": "sofa",
    "table": "diningtable",
    "sphere": "pottedplant",
    "cylinder": "bottle",
    "person": "person",
}
_TO_PASCAL_ID = np.array(
    [PASCAL_CLASSES.index(SYNTHETIC_TO_PASCAL[c]) for c in SYNTHETIC_CLASSES], dtype=np.uint8
)

#: Synthetic class → PASCAL-Context (459-class) ``LabelMap`` class written into the PASCAL_MT
#: layout; every one is indoors, so the written normals stay valid (SPEC §2.2).
SYNTHETIC_TO_PASCAL_CONTEXT: dict[str, str] = {
    "floor": "floor",
    "ceiling": "ceiling",
    "wall": "wall",
    "door": "door",
    "window": "window",
    "rug": "rug",
    "picture": "picture",
    "box": "box",
    "table": "table",
    "sphere": "ball",
    "cylinder": "bottle",
    "person": "person",
}


def _pascal_context_ids() -> np.ndarray:
    by_name = {v: k for k, v in pascal_normals_valid_classes().items()}
    ids = [by_name[SYNTHETIC_TO_PASCAL_CONTEXT[c]] for c in SYNTHETIC_CLASSES]
    return np.array(ids, dtype=np.uint16)


MIN_SIDE = 32
MAX_SIDE = 4096
MAX_SCENES = 1_000_000


# ---------------------------------------------------------------------------------- encoders
def encode_nyud_semseg(semseg: np.ndarray) -> np.ndarray:
    """Class ids (255 = ignore) → NYUD PNG values: 0 = void, ``1..C`` = class ``0..C-1``."""
    return np.where(semseg == IGNORE_INDEX, 0, semseg.astype(np.int64) + 1).astype(np.uint8)


def encode_normals_png(normals: np.ndarray) -> np.ndarray:
    """Unit normals ``[H, W, 3]`` → uint8 RGB ``round((n + 1) * 255 / 2)``."""
    return np.clip(np.rint((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)


def encode_pascal_semseg(semseg: np.ndarray) -> np.ndarray:
    """Synthetic class ids → PASCAL 21-class ids (uint8; 255 stays ignore)."""
    out = np.take(_TO_PASCAL_ID, np.minimum(semseg, len(_TO_PASCAL_ID) - 1))
    return np.where(semseg == IGNORE_INDEX, IGNORE_INDEX, out).astype(np.uint8)


def encode_pascal_parts(scene: RenderedScene) -> dict[str, np.ndarray]:
    """The PASCAL-Part ``anno`` struct of a scene, ready for :func:`scipy.io.savemat`.

    ``anno`` has ``imname`` and ``objects`` (1 x K, one per visible object): ``class``,
    ``class_ind`` (PASCAL id, person = 15), ``mask`` (uint8 H x W) and ``parts`` (1 x P of
    ``part_name`` and ``mask`` for people; an empty 0 x 0 array for other objects).
    """
    surf = scene.surface
    obj_of = np.array([s.obj for s in scene.surfaces])
    obj_map = np.take(obj_of, surf)
    objects = []
    for obj in sorted(set(obj_of[obj_of >= 0].tolist())):
        mask = obj_map == obj
        if not mask.any():
            continue
        owned = [i for i, s in enumerate(scene.surfaces) if s.obj == obj]
        cls = SYNTHETIC_TO_PASCAL[SYNTHETIC_CLASSES[scene.surfaces[owned[0]].cls]]
        parts: list[tuple[str, np.ndarray]] = []
        for name in dict.fromkeys(scene.surfaces[i].part for i in owned if scene.surfaces[i].part):
            ids = [i for i in owned if scene.surfaces[i].part == name]
            part_mask = np.isin(surf, ids)
            if part_mask.any():
                parts.append((name, part_mask.astype(np.uint8)))
        if parts:
            part_arr = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for j, part in enumerate(parts):
                part_arr[0, j] = part
        else:
            part_arr = np.zeros((0, 0))
        class_ind = np.array([[PASCAL_CLASSES.index(cls)]], dtype=np.float64)
        objects.append((cls, class_ind, mask.astype(np.uint8), part_arr))
    fields = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    obj_arr = np.zeros((1, len(objects)), dtype=fields)
    for j, entry in enumerate(objects):
        obj_arr[0, j] = entry
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (scene.sample["id"], obj_arr)
    return {"anno": anno}


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def _save_jpg(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, quality=95)


def _write_sample(root: Path, layout: Layout, scene: RenderedScene) -> None:
    raw = scene.sample
    paths = {k: root / p for k, p in layout.paths(raw["id"]).items()}
    normals = raw["normals"] * np.asarray(layout.normals_signs, dtype=np.float32)
    if layout is PASCAL_MT:
        _save_jpg(paths["image"], raw["image"])
        _save_png(paths["semseg"], encode_pascal_semseg(raw["semseg"]))
        scipy.io.savemat(paths["human_parts"], encode_pascal_parts(scene))
        _save_png(paths["sal"], (raw["sal"] > 0.5).astype(np.uint8) * 255)
        _save_png(paths["normals"], encode_normals_png(normals))
        label_map = np.take(_pascal_context_ids(), raw["semseg"])
        scipy.io.savemat(paths["edge"], {"LabelMap": label_map})
        return
    save_image = _save_jpg if layout is NYUD_MT else _save_png
    save_image(paths["image"], raw["image"])
    _save_png(paths["semseg"], encode_nyud_semseg(raw["semseg"]))
    np.save(paths["depth"], raw["depth"].astype(np.float32))
    if layout is NYUD_MT:
        np.save(paths["normals"], normals.astype(np.float32))
        np.save(paths["edge"], raw["edge"].astype(np.float32))
    else:
        _save_png(paths["normals"], encode_normals_png(normals))
        _save_png(paths["edge"], raw["edge"].astype(np.uint8) * 255)


# ------------------------------------------------------------------------------------ writer
def check_size(size: tuple[int, int] | list[int]) -> tuple[int, int]:
    """Validate an image size ``(H, W)`` for writing datasets (:func:`mtcp.sizes.parse_size`)."""
    return parse_size(tuple(size), "size", MIN_SIDE, MAX_SIDE)


def split_counts(n: int, val_fraction: float) -> tuple[int, int]:
    """``(train, val)`` sizes: ``val`` is ``round(n * val_fraction)``, at least 1 when n > 1."""
    n_val = round(n * val_fraction)
    if n > 1 and val_fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    return n - n_val, n_val


def person_prob_for(layout: Layout, index: int) -> float:
    """PASCAL scenes hold people except every third one (to exercise the no-person case)."""
    return 1.0 if layout is PASCAL_MT and index % 3 != 2 else 0.0


def write_layout(
    out_dir: str | os.PathLike,
    layout: str,
    n: int,
    size: tuple[int, int],
    seed: int = 0,
    overwrite: bool = False,
    val_fraction: float = 0.25,
) -> Path:
    """Write ``n`` synthetic scenes of ``size = (H, W)`` into ``out_dir`` in ``layout``.

    Scene ``i`` is ``render_scene_full(seed, i, size, person_prob=person_prob_for(layout, i))``;
    the first ones form the ``train`` split and the last ``round(n * val_fraction)`` the
    ``val`` split. Everything is written into a temporary sibling folder that is renamed onto
    ``out_dir`` at the end, so a failure leaves nothing behind. Returns ``out_dir``.

    Raises:
        MtcpError: unknown layout, ``n < 1``, a bad size, or ``out_dir`` exists, is not
            empty and ``overwrite`` is false.
    """
    lay = get_layout(layout)
    if not 1 <= int(n) <= MAX_SCENES:
        raise MtcpError(f"the number of scenes must be in [1, {MAX_SCENES}], got {n}")
    n = int(n)
    size = check_size(size)
    if int(seed) < 0:
        raise MtcpError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= val_fraction < 1.0:
        raise MtcpError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise MtcpError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MtcpError(f"output folder {out} is not empty; pass --overwrite to replace it")

    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temporaries(out.parent, name=out.name):  # from a killed run
        log.info("removed %s, left by an interrupted run", stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)
        for pattern in (lay.image, lay.split, *lay.labels.values()):
            (tmp / pattern).parent.mkdir(parents=True, exist_ok=True)
        ids = []
        for i in range(n):
            scene = render_scene_full(seed, i, size, person_prob=person_prob_for(lay, i))
            _write_sample(tmp, lay, scene)
            ids.append(scene.sample["id"])
        n_train, _ = split_counts(n, val_fraction)
        for name, chunk in zip(lay.splits, (ids[:n_train], ids[n_train:])):
            (tmp / lay.split.format(split=name)).write_text("".join(f"{i}\n" for i in chunk))
        old = None
        if out.exists():
            # a name remove_stale_temporaries knows, should a kill strand it here
            old = out.parent / f".{out.name}.tmp-old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out
