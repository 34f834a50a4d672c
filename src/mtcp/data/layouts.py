"""The on-disk dataset layouts of SPEC §2.1–2.2: where each file of a sample lives.

Three layouts exist (:data:`LAYOUTS`, named as :func:`mtcp.data.build.detect_layout` names
them); each gives, relative to the dataset root, the image file, one label file per task and
the split files (``{id}`` is the file stem, ``{split}`` is ``train`` or ``val``), and the camera
frame of its normals:

- ``NYUD_MT`` (MTI-Net lineage): JPEG images; ``segmentation`` PNG with 0 = void and
  ``1..C`` = class ``0..C-1``; ``depth`` NPY float32 metres (0 = missing); ``normals`` NPY
  float32 ``H x W x 3``; ``edge`` NPY float32 0/1.
- ``NYUDv2`` (ATRC lineage): PNG images; the same ``segmentation`` and ``depth``; ``normals``
  RGB PNG holding ``round((n + 1) * 255 / 2)`` (read back as ``2 * value / 255 - 1``);
  ``edge`` PNG 0/255.
- ``PASCAL_MT``: JPEG images; ``semseg/pascal-context`` PNG with the 21 ids of
  :data:`PASCAL_CLASSES`; ``human_parts`` MAT (PASCAL-Part ``anno`` struct);
  ``sal_distill`` PNG 0/255; ``normals_distill`` RGB PNG encoded like ``NYUDv2``;
  ``pascal-context/trainval`` MAT whose ``LabelMap`` (uint16 PASCAL-Context ids) changes give
  the boundaries and whose classes say where the normals are valid
  (:func:`pascal_normals_valid_classes`).

All three store normals with z towards the camera (:data:`TOWARDS_CAMERA`); readers convert
them to mtcp's frame (x right, y down, z forward). The readers live in :mod:`mtcp.data.nyud`
and :mod:`mtcp.data.pascal`; :mod:`mtcp.data.synthetic.writer` writes synthetic scenes into
these layouts.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from mtcp.errors import MtcpError


@dataclass(frozen=True)
class Layout:
    """Relative paths of one on-disk layout.

    Attributes:
        name: the layout's name, the same everywhere: :func:`mtcp.data.build.detect_layout`,
            the readers' ``layout``, ``mtcp synth --layout`` (which also accepts the
            lower-case spellings ``nyud-mt``, ``nyudv2``, ``pascal-mt``; :func:`get_layout`).
        image: image path pattern, e.g. ``"images/{id}.jpg"``.
        labels: task → label path pattern.
        split: split file pattern, e.g. ``"gt_sets/{split}.txt"`` (one id per line).
        splits: split names; the last is the evaluation split.
        normals_signs: per-axis signs from the stored normals to mtcp's frame (x right,
            y down, z forward); ``(1, 1, -1)``: the files' z points towards the camera.
    """

    name: str
    image: str
    labels: dict[str, str]
    split: str
    splits: tuple[str, ...] = ("train", "val")
    normals_signs: tuple[int, int, int] = (1, 1, 1)

    def paths(self, sample_id: str) -> dict[str, str]:
        """``{"image": ..., task: ...}`` relative paths of one sample."""
        out = {"image": self.image.format(id=sample_id)}
        out.update({task: p.format(id=sample_id) for task, p in self.labels.items()})
        return out


#: The NYU Depth v2 normals frame (its toolbox: red = right, green = down, blue = towards the
#: camera), also that of the PASCAL distilled normals (predicted by a NYUD-trained network).
TOWARDS_CAMERA = (1, 1, -1)

NYUD_MT = Layout(
    "NYUD_MT",
    image="images/{id}.jpg",
    labels={
        "semseg": "segmentation/{id}.png",
        "depth": "depth/{id}.npy",
        "normals": "normals/{id}.npy",
        "edge": "edge/{id}.npy",
    },
    split="gt_sets/{split}.txt",
    normals_signs=TOWARDS_CAMERA,
)
NYUDV2 = Layout(
    "NYUDv2",
    image="images/{id}.png",
    labels={
        "semseg": "segmentation/{id}.png",
        "depth": "depth/{id}.npy",
        "normals": "normals/{id}.png",
        "edge": "edge/{id}.png",
    },
    split="gt_sets/{split}.txt",
    normals_signs=TOWARDS_CAMERA,
)
PASCAL_MT = Layout(
    "PASCAL_MT",
    image="JPEGImages/{id}.jpg",
    labels={
        "semseg": "semseg/pascal-context/{id}.png",
        "human_parts": "human_parts/{id}.mat",
        "sal": "sal_distill/{id}.png",
        "normals": "normals_distill/{id}.png",
        "edge": "pascal-context/trainval/{id}.mat",
    },
    split="ImageSets/Context/{split}.txt",
    normals_signs=TOWARDS_CAMERA,
)
LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (NYUD_MT, NYUDV2, PASCAL_MT)}


def _spelling(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def get_layout(name: str) -> Layout:
    """The layout called ``name``, in any case and with or without ``-`` / ``_``
    (``NYUD_MT``, ``nyud-mt`` and ``nyud_mt`` are one layout)."""
    for layout in LAYOUTS.values():
        if _spelling(layout.name) == _spelling(str(name)):
            return layout
    raise MtcpError(
        f"unknown layout {name!r}; choose from: {', '.join(LAYOUTS)} "
        "(or nyud-mt, nyudv2, pascal-mt)"
    )


#: The 21 PASCAL-Context classes of the PASCAL_MT semseg PNGs (0 = background).
PASCAL_CLASSES: list[str] = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
PASCAL_PERSON = 15
#: PASCAL-Part part name → human-part group (SPEC §2.2): 1 head, 2 torso, 3 upper arm,
#: 4 lower arm, 5 upper leg, 6 lower leg.
PASCAL_PART_GROUPS: dict[str, int] = {
    **dict.fromkeys(
        ("head", "hair", "lear", "rear", "leye", "reye", "lebrow", "rebrow", "nose", "mouth"), 1
    ),
    **dict.fromkeys(("torso", "neck"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}


@functools.cache
def pascal_normals_valid_classes() -> dict[int, str]:
    """LabelMap id → name of the 170 PASCAL-Context classes with valid distilled normals.

    Those that also exist among the NYUD-v2 classes (SPEC §2.2); any other id, 0 included, has
    invalid (zero) normals. Read from the package file ``pascal_normals_valid_classes.json``.
    """
    text = resources.files("mtcp.data").joinpath("pascal_normals_valid_classes.json").read_text()
    names = json.loads(text)["names"]
    return {int(k): str(v) for k, v in names.items()}
