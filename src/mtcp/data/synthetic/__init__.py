"""Procedurally generated indoor-like scenes, ray cast so that every label is exact (SPEC §2.4).

A scene is a box-shaped room (floor, ceiling, four walls carrying doors, windows, pictures and
a rug) holding a few objects (boxes, tables, spheres, upright cylinders) and, optionally,
people built from primitives (head sphere, neck, torso, arms, legs). A pinhole camera with the
NYUD intrinsics scaled to the requested size looks into the room from a random pose.

One ray per pixel centre is intersected analytically with every primitive (numpy, float32,
vectorised over the pixels of the primitive's screen-space bounding box), so that:

- ``depth`` is the exact distance along the optical axis z (metres, like NYUD);
- ``normals`` are the exact surface normals in the camera frame of :mod:`mtcp.tasks`
  (x right, y down, z forward; visible normals point towards the camera, so z <= 0);
- ``semseg`` indexes :data:`SYNTHETIC_CLASSES`; there is no void;
- ``edge`` marks where the visible *surface* changes between 4-neighbours: a class change,
  an occlusion (depth discontinuity), a crease such as a room corner or a box's edge (normal
  discontinuity), or a change of body part. Of the two pixels of such a pair, the one nearer
  to the camera is marked, so boundaries are 1–2 px wide (uint8 0/1);
- ``sal`` is 1 on objects and people, 0 on the room (float32);
- ``human_parts`` is always present: 0 for background and 1..6 for the parts of SPEC §1 when a
  person is visible, all 255 (ignore) otherwise, as PASCAL stores images without a person.

The RGB image uses a per-surface albedo, a cheap solid texture (3-D checker or stripes), a
Lambertian point light plus ambient term computed from the true normals, and sensor noise;
it is shaded per pixel by a numba kernel. Scenes are reference data (tests, experiments):
any change to the arithmetic or its order, or to the random draws, changes them.
Every random choice comes from ``numpy.random.default_rng([seed, index])``, so a scene is a
pure function of ``(seed, index, size, person_prob)``.

Modules: :mod:`~mtcp.data.synthetic.palette` (classes, colours), :mod:`~.raycast` (the
z-buffer and the primitives), :mod:`~.people`, :mod:`~.scene` (composition and
:func:`render_scene`), :mod:`~.shading` (numba kernels), :mod:`~.dataset`
(:class:`SyntheticScenes`) and :mod:`~.writer` (scenes into the on-disk layouts).
"""

from __future__ import annotations

from mtcp.data.synthetic.dataset import SyntheticScenes
from mtcp.data.synthetic.palette import PERSON_PARTS, SALIENT_CLASSES, SYNTHETIC_CLASSES
from mtcp.data.synthetic.raycast import Surface
from mtcp.data.synthetic.scene import RenderedScene, render_scene, render_scene_full

__all__ = [
    "PERSON_PARTS",
    "SALIENT_CLASSES",
    "SYNTHETIC_CLASSES",
    "RenderedScene",
    "Surface",
    "SyntheticScenes",
    "render_scene",
    "render_scene_full",
]
