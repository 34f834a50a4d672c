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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch
from torch.utils.data import Dataset

from mtcp.data.sample import to_tensor
from mtcp.errors import MtcpError
from mtcp.geometry import nyud_intrinsics
from mtcp.tasks import IGNORE_INDEX

SYNTHETIC_CLASSES: list[str] = [
    "floor",
    "ceiling",
    "wall",
    "door",
    "window",
    "picture",
    "rug",
    "box",
    "table",
    "sphere",
    "cylinder",
    "person",
]
_C = {name: i for i, name in enumerate(SYNTHETIC_CLASSES)}
#: Classes that are objects (``sal`` = 1) rather than parts of the room.
SALIENT_CLASSES = ("box", "table", "sphere", "cylinder", "person")
#: PASCAL-Part names used for the synthetic people → human-part group id (SPEC §1).
PERSON_PARTS: dict[str, int] = {
    "head": 1,
    "neck": 2,
    "torso": 2,
    "luarm": 3,
    "ruarm": 3,
    "llarm": 4,
    "rlarm": 4,
    "luleg": 5,
    "ruleg": 5,
    "llleg": 6,
    "rlleg": 6,
}

# Base albedo (RGB in [0, 1]) per class; every surface jitters it.
_BASE_ALBEDO = np.array(
    [
        [0.55, 0.42, 0.30],  # floor
        [0.88, 0.88, 0.85],  # ceiling
        [0.78, 0.75, 0.68],  # wall
        [0.50, 0.33, 0.20],  # door
        [0.70, 0.85, 0.98],  # window (emissive)
        [0.60, 0.30, 0.35],  # picture
        [0.55, 0.20, 0.20],  # rug
        [0.45, 0.50, 0.60],  # box
        [0.45, 0.30, 0.18],  # table
        [0.30, 0.55, 0.35],  # sphere
        [0.60, 0.55, 0.30],  # cylinder
        [0.80, 0.62, 0.50],  # person (skin; clothes are drawn per part)
    ],
    dtype=np.float32,
)
_NEAR = 0.05  # metres: primitives closer than this to the camera plane use the whole image

_F32 = np.float32
# Outward normals of the faces 2k / 2k + 1 of a box (the +k / -k side); also the inward
# normals of the room faces (face 2k lies at coordinate 0 along k, 2k + 1 at the far side).
_FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


def _njit(fn):
    """``numba.njit(cache=True)``, without the on-disk cache where none is writable."""
    try:
        return numba.njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # pragma: no cover - depends on the file system
        return numba.njit(nogil=True)(fn)


@dataclass(frozen=True)
class Surface:
    """One visible surface: a room face, a decal, a face of a primitive.

    Attributes:
        cls: index into :data:`SYNTHETIC_CLASSES`.
        obj: object index (``-1`` for the room and its decals); all surfaces of one box,
            table or person share it.
        part: PASCAL-Part name for person surfaces, ``""`` otherwise.
    """

    cls: int
    obj: int = -1
    part: str = ""


@dataclass
class RenderedScene:
    """A raw sample plus the bookkeeping the on-disk layouts need.

    Attributes:
        sample: raw sample (see :mod:`mtcp.data.sample`).
        surface: int32 ``[H, W]`` index into ``surfaces`` of the visible surface per pixel.
        surfaces: every surface of the scene.
    """

    sample: dict[str, Any]
    surface: np.ndarray
    surfaces: list[Surface]


class _Canvas:
    """Z-buffer over the rays of one camera; primitives are committed one after another."""

    def __init__(self, size: tuple[int, int], intrinsics: np.ndarray, origin, rot) -> None:
        h, w = size
        fx, fy, cx, cy = (float(v) for v in intrinsics)
        self.size = size
        self.intr = (fx, fy, cx, cy)
        self.o = tuple(float(v) for v in origin)
        self.rot = rot  # columns: camera x (right), y (down), z (forward) in world coordinates
        a = ((np.arange(w, dtype=_F32) - cx) / fx)[None, :]
        b = ((np.arange(h, dtype=_F32) - cy) / fy)[:, None]
        # World direction of each pixel's ray, scaled so that its camera-z component is 1:
        # the ray parameter t of a hit is then its depth along the optical axis.
        self.d = np.stack(
            [float(rot[k, 0]) * a + float(rot[k, 1]) * b + float(rot[k, 2]) for k in range(3)]
        )  # float32 [3, H, W]
        self.depth = np.full(size, np.inf, dtype=_F32)
        # World normals of curved surfaces only; a flat surface has one normal, kept per id.
        self.n = np.zeros((3, *size), dtype=_F32)
        self.sid = np.zeros(size, dtype=np.int32)
        self.surfaces: list[Surface] = []
        self.flat_normals: list[np.ndarray | None] = []  # float32 [3] world, None if curved
        # Surfaces with equal keys lie in one plane with equal labels: no boundary between them.
        self.edge_keys: list[int] = []
        self.looks: list[tuple[np.ndarray, int, float, float]] = []  # albedo, tex, freq, amp

    def add(
        self,
        surface: Surface,
        look: tuple[np.ndarray, int, float, float],
        k: int = 1,
        normals: Iterable[np.ndarray] | None = None,
    ) -> int:
        """Register ``k`` surfaces sharing ``surface`` and ``look``; returns the first id.

        ``normals`` gives the world normal of each of the ``k`` flat surfaces; without it the
        surfaces are curved and :meth:`commit` stores their per-pixel normals.
        """
        first = len(self.surfaces)
        self.surfaces.extend([surface] * k)
        self.edge_keys.extend(range(first, first + k))
        self.looks.extend([look] * k)
        self.flat_normals.extend([None] * k if normals is None else normals)
        return first

    def window(self, corners: np.ndarray) -> tuple[slice, slice] | None:
        """Pixel window covering the projection of the convex hull of ``corners`` ``[K, 3]``."""
        h, w = self.size
        cam = (corners - np.asarray(self.o)) @ self.rot
        if cam[:, 2].min() < _NEAR:
            return (slice(0, h), slice(0, w))
        fx, fy, cx, cy = self.intr
        u = fx * cam[:, 0] / cam[:, 2] + cx
        v = fy * cam[:, 1] / cam[:, 2] + cy
        u0, u1 = max(math.floor(u.min()), 0), min(math.ceil(u.max()) + 1, w)
        v0, v1 = max(math.floor(v.min()), 0), min(math.ceil(v.max()) + 1, h)
        if u0 >= u1 or v0 >= v1:
            return None
        return (slice(v0, v1), slice(u0, u1))

    def commit(self, win, t: np.ndarray, sid, normals: Sequence[np.ndarray] = ()) -> None:
        """Keep the hits ``t`` (inf = miss) that are nearer than what the window shows;
        ``normals`` (world x, y, z) only for curved surfaces."""
        m = t < self.depth[win]
        np.copyto(self.depth[win], t, where=m)
        np.copyto(self.sid[win], sid, where=m)
        for k, n in enumerate(normals):
            np.copyto(self.n[k][win], n, where=m)

    def rays(self, win, dtype=_F32) -> list[np.ndarray]:
        """Ray directions in ``win``; curved primitives solve their quadratics in float64
        because ``b * b - a * c`` cancels badly near silhouettes."""
        return [d[win].astype(dtype, copy=False) for d in self.d]


def _rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (world z up) whose columns are the camera x, y, z axes."""
    f = np.array(
        [math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)]
    )
    r0 = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    d0 = np.cross(f, r0)
    r = math.cos(roll) * r0 + math.sin(roll) * d0
    d = -math.sin(roll) * r0 + math.cos(roll) * d0
    return np.stack([r, d, f], axis=1)


def _room(cv: _Canvas, dims: Sequence[float], looks: list) -> None:
    """Ray-cast the inside of the room ``[0, Lx] x [0, Ly] x [0, Lz]`` (surface ids 0..5).

    Ids: 0/1 the walls x = 0 / x = Lx, 2/3 the walls y = 0 / y = Ly, 4 floor, 5 ceiling.
    """
    ts, towards = [], []  # distance to the face each ray heads for along axis k; its side
    with np.errstate(divide="ignore"):
        for k, d in enumerate(cv.d):
            pos = d > 0
            ts.append(np.where(pos, _F32(dims[k] - cv.o[k]), _F32(cv.o[k])))
            ts[-1] /= np.abs(d)
            towards.append(pos.view(np.int8))
    tx, ty, tz = ts
    t = np.minimum(tx, ty)
    np.minimum(t, tz, out=t)
    face = np.where(ty == t, towards[1] + np.int8(2), towards[2] + np.int8(4))
    np.copyto(face, towards[0], where=tx == t)
    normals = _FACE_NORMALS.astype(_F32)
    for k, cls in enumerate([_C["wall"]] * 4 + [_C["floor"], _C["ceiling"]]):
        cv.add(Surface(cls), looks[k], normals=[normals[k]])
    cv.commit((slice(None), slice(None)), t, face)


def _decal(cv: _Canvas, face: int, rect: Sequence[float], dims, surface: Surface, look) -> None:
    """Paint a rectangle onto room face ``face`` (its surface id must be ``face``).

    ``rect = (a0, a1, b0, b1)`` in metres: for walls ``a`` runs along the wall and ``b`` is
    the height; for the floor ``a, b`` are world x, y.
    """
    a0, a1, b0, b1 = rect
    axis = face // 2  # the world axis the face is perpendicular to
    const = 0.0 if face % 2 == 0 else dims[axis]
    along = {0: 1, 1: 0, 2: 0}[axis]
    across = 2 if axis < 2 else 1
    corners = np.zeros((4, 3))
    corners[:, axis] = const
    corners[:, along] = [a0, a1, a0, a1]
    corners[:, across] = [b0, b0, b1, b1]
    win = cv.window(corners)
    if win is None:
        return
    sid = cv.add(surface, look, normals=[cv.flat_normals[face]])
    depth = cv.depth[win]
    d = cv.rays(win)
    pa = cv.o[along] + depth * d[along]
    pb = cv.o[across] + depth * d[across]
    sel = (cv.sid[win] == face) & (pa >= a0) & (pa <= a1) & (pb >= b0) & (pb <= b1)
    np.copyto(cv.sid[win], sid, where=sel)


def _box(cv: _Canvas, centre, half, yaw: float, surface: Surface, look) -> int | None:
    """A box of half extents ``half`` rotated by ``yaw`` about the vertical axis.

    Returns the first of its 6 surface ids (face ``2k`` / ``2k + 1``: the +k / -k side in the
    box frame), or None when it is off-screen.
    """
    rz = _rot_z(yaw)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    win = cv.window(np.asarray(centre) + (signs * np.asarray(half)) @ rz.T)
    if win is None:
        return None
    sid = cv.add(surface, look, 6, normals=(_FACE_NORMALS @ rz.T).astype(_F32))
    dx, dy, dz = cv.rays(win)
    c, s = math.cos(yaw), math.sin(yaw)
    rx, ry, rz_ = (cv.o[k] - float(centre[k]) for k in range(3))
    lo = (c * rx + s * ry, -s * rx + c * ry, rz_)
    ld = (c * dx + s * dy, -s * dx + c * dy, dz)
    near, far = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(3):
            inv = 1.0 / ld[k]
            t1 = (-float(half[k]) - lo[k]) * inv
            t2 = (float(half[k]) - lo[k]) * inv
            near.append(np.minimum(t1, t2))
            far.append(np.maximum(t1, t2))
    tn = np.maximum(np.maximum(near[0], near[1]), near[2])
    tf = np.minimum(np.minimum(far[0], far[1]), far[2])
    t = np.where((tn <= tf) & (tn > 0), tn, _F32(np.inf))
    # Face 2k is the +k side (hit by rays going towards -k), face 2k+1 the -k side.
    face = np.where(
        near[0] == tn,
        (ld[0] > 0).astype(np.intp),
        np.where(near[1] == tn, 2 + (ld[1] > 0), 4 + (ld[2] > 0)),
    )
    cv.commit(win, t, sid + face)
    return sid


def _sphere(cv: _Canvas, centre, radius: float, surface: Surface, look) -> None:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    win = cv.window(np.asarray(centre) + signs * radius)
    if win is None:
        return
    sid = cv.add(surface, look)
    d = cv.rays(win, np.float64)
    oc = [cv.o[k] - float(centre[k]) for k in range(3)]
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = oc[0] * d[0] + oc[1] * d[1] + oc[2] * d[2]
    c = oc[0] ** 2 + oc[1] ** 2 + oc[2] ** 2 - radius**2
    disc = b * b - a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    t = np.where((disc >= 0) & (t > 0), t, np.inf)
    inv_r = 1.0 / radius
    normals = [(oc[k] + t * d[k]) * inv_r for k in range(3)]
    cv.commit(win, t, sid, normals)


def _cylinder(cv: _Canvas, base, radius: float, height: float, surface: Surface, look) -> None:
    """Upright cylinder standing at ``base`` (x, y, z of the bottom centre); ids side, cap."""
    x0, y0, z0 = (float(v) for v in base)
    z1 = z0 + height
    signs = np.array([[sx, sy] for sx in (-1, 1) for sy in (-1, 1)])
    corners = np.concatenate(
        [
            np.c_[x0 + radius * signs[:, 0], y0 + radius * signs[:, 1], np.full(4, z)]
            for z in (z0, z1)
        ]
    )
    win = cv.window(corners)
    if win is None:
        return
    sid = cv.add(surface, look, 2)
    dx, dy, dz = cv.rays(win, np.float64)
    ox, oy, oz = cv.o[0] - x0, cv.o[1] - y0, cv.o[2]
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - radius**2
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        ts = (-b - np.sqrt(disc)) / a
        zs = oz + ts * dz
        t_side = np.where((disc >= 0) & (ts > 0) & (zs >= z0) & (zs <= z1), ts, np.inf)
        # The cap facing the camera: the top one when looking down, the bottom one otherwise.
        tc = (np.where(dz < 0, z1, z0) - oz) / dz
        px, py = ox + tc * dx, oy + tc * dy
        t_cap = np.where((tc > 0) & (px * px + py * py <= radius**2), tc, np.inf)
    cap = t_cap < t_side
    t = np.minimum(t_side, t_cap)
    inv_r = 1.0 / radius
    normals = [
        np.where(cap, 0.0, (ox + t * dx) * inv_r),
        np.where(cap, 0.0, (oy + t * dy) * inv_r),
        np.where(cap, np.where(dz < 0, 1.0, -1.0), 0.0),
    ]
    cv.commit(win, t, sid + cap, normals)


def _jitter(rng: np.random.Generator, base: np.ndarray, amount: float = 0.25) -> np.ndarray:
    return np.clip(base * rng.uniform(1 - amount, 1 + amount, 3), 0.02, 1.0).astype(_F32)


def _look(rng: np.random.Generator, albedo: np.ndarray, textured: float = 0.6):
    """Albedo plus texture (kind 0 plain, 1 3-D checker, 2 horizontal stripes, freq, amp)."""
    kind = int(rng.choice(3, p=[1 - textured, textured / 2, textured / 2]))
    return albedo, kind, float(rng.uniform(1.5, 8.0)), float(rng.uniform(0.08, 0.35))


def _ground_spot(rng, cam, yaw: float, dims, margin: float, dist=(1.2, 5.0)):
    """A floor point (x, y) in front of the camera, inside the room by ``margin``."""
    a = yaw + rng.uniform(-0.5, 0.5)
    r = rng.uniform(*dist)
    x = float(np.clip(cam[0] + r * math.cos(a), margin, dims[0] - margin))
    y = float(np.clip(cam[1] + r * math.sin(a), margin, dims[1] - margin))
    return x, y


def _person(cv: _Canvas, rng, obj: int, at, yaw: float) -> None:
    """A standing person from primitives, facing local -y; its left side is local +x."""
    s = rng.uniform(1.5, 1.9) / 1.75
    rz = _rot_z(yaw)
    skin = _jitter(rng, _BASE_ALBEDO[_C["person"]], 0.2)
    shirt = rng.uniform(0.1, 0.9, 3).astype(_F32)
    trousers = rng.uniform(0.05, 0.6, 3).astype(_F32)
    base = np.array([at[0], at[1], 0.0])

    def world(local):
        return base + rz @ (np.asarray(local, dtype=float) * s)

    def part(name: str, albedo):
        return Surface(_C["person"], obj, name), (albedo, 0, 1.0, 0.0)

    # (name, x0, x1, y half, z0, z1, albedo): boxes in person-local metres.
    limbs = [
        ("torso", -0.19, 0.19, 0.11, 0.88, 1.45, shirt),
        ("luleg", 0.015, 0.14, 0.075, 0.45, 0.88, trousers),
        ("ruleg", -0.14, -0.015, 0.075, 0.45, 0.88, trousers),
        ("llleg", 0.03, 0.13, 0.06, 0.0, 0.45, trousers),
        ("rlleg", -0.13, -0.03, 0.06, 0.0, 0.45, trousers),
        ("luarm", 0.20, 0.29, 0.05, 1.12, 1.44, shirt),
        ("ruarm", -0.29, -0.20, 0.05, 1.12, 1.44, shirt),
        ("llarm", 0.205, 0.285, 0.045, 0.82, 1.12, skin),
        ("rlarm", -0.285, -0.205, 0.045, 0.82, 1.12, skin),
    ]
    first = {}
    for name, x0, x1, hy, z0, z1, albedo in limbs:
        centre = world([(x0 + x1) / 2, 0.0, (z0 + z1) / 2])
        half = np.array([(x1 - x0) / 2, hy, (z1 - z0) / 2]) * s
        first[name] = _box(cv, centre, half, yaw, *part(name, albedo))
    # The legs of a pair share their front, back, top and bottom planes: where they touch in
    # the image there is no boundary (their x faces differ and are never merged).
    for left, right in (("luleg", "ruleg"), ("llleg", "rlleg")):
        if first[left] is not None and first[right] is not None:
            for face in range(2, 6):
                cv.edge_keys[first[right] + face] = cv.edge_keys[first[left] + face]
    _cylinder(cv, world([0, 0, 1.45]), 0.05 * s, 0.08 * s, *part("neck", skin))
    _sphere(cv, world([0, 0, 1.64]), 0.115 * s, *part("head", skin))


def render_scene_full(
    seed: int, index: int, size: tuple[int, int], *, person_prob: float = 0.0
) -> RenderedScene:
    """Render scene ``index`` of the family ``seed`` at ``size = (H, W)`` pixels.

    ``person_prob`` is the probability that the scene holds one or two people (0 keeps the
    scenes NYUD-like, 1 always places at least one). Returns the raw sample and the
    per-pixel surface ids the on-disk layouts need (PASCAL object and part masks).
    """
    h, w = _check_size(size)
    if int(seed) < 0 or int(index) < 0:
        raise MtcpError(f"synthetic scenes: seed and index must be >= 0, got {seed}, {index}")
    if not 0.0 <= person_prob <= 1.0:
        raise MtcpError(f"synthetic scenes: person_prob must be in [0, 1], got {person_prob}")
    rng = np.random.default_rng([int(seed), int(index)])
    intr = nyud_intrinsics((h, w))

    dims = (rng.uniform(3.5, 7.5), rng.uniform(3.0, 6.5), rng.uniform(2.4, 3.2))
    cam = np.array(
        [rng.uniform(0.3, 1.2), rng.uniform(0.25, 0.75) * dims[1], rng.uniform(1.0, 1.7)]
    )
    yaw = rng.uniform(-0.6, 0.6)
    rot = _camera_rotation(yaw, -rng.uniform(0.05, 0.45), rng.uniform(-0.06, 0.06))
    cv = _Canvas((h, w), intr, cam, rot)

    wall_albedo = _jitter(rng, _BASE_ALBEDO[_C["wall"]], 0.3)
    room_looks = [(wall_albedo, 2 if rng.random() < 0.3 else 0, rng.uniform(2, 6), 0.06)] * 4
    room_looks += [
        _look(rng, _jitter(rng, _BASE_ALBEDO[_C["floor"]], 0.4), 0.8),
        (_jitter(rng, _BASE_ALBEDO[_C["ceiling"]], 0.08), 0, 1.0, 0.0),
    ]
    _room(cv, dims, room_looks)

    # Decals on the walls and the floor; a face seen from inside is 2 * axis + side.
    def wall_rect(width, z0, z1):
        face = int(rng.integers(4))
        length = dims[1] if face < 2 else dims[0]
        a0 = rng.uniform(0.1, max(length - width - 0.1, 0.2))
        return face, (a0, a0 + width, z0, z1)

    if rng.random() < 0.8:
        face, rect = wall_rect(rng.uniform(0.8, 1.0), 0.0, rng.uniform(1.95, 2.2))
        look = _look(rng, _jitter(rng, _BASE_ALBEDO[_C["door"]]), 0.5)
        _decal(cv, face, rect, dims, Surface(_C["door"]), look)
    for _ in range(int(rng.integers(0, 3))):
        z0 = rng.uniform(0.8, 1.1)
        face, rect = wall_rect(rng.uniform(0.6, 1.5), z0, z0 + rng.uniform(0.8, 1.2))
        look = (_jitter(rng, _BASE_ALBEDO[_C["window"]], 0.1), -1, 1.0, 0.0)  # -1: emissive
        _decal(cv, face, rect, dims, Surface(_C["window"]), look)
    for _ in range(int(rng.integers(0, 4))):
        z0 = rng.uniform(1.1, 1.7)
        face, rect = wall_rect(rng.uniform(0.3, 1.0), z0, z0 + rng.uniform(0.3, 0.7))
        look = _look(rng, rng.uniform(0.1, 0.95, 3).astype(_F32), 0.9)
        _decal(cv, face, rect, dims, Surface(_C["picture"]), look)
    if rng.random() < 0.5:
        rx, ry = _ground_spot(rng, cam, yaw, dims, 0.8, (1.5, 4.0))
        hx, hy = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.9)
        look = _look(rng, rng.uniform(0.1, 0.8, 3).astype(_F32), 0.9)
        _decal(cv, 4, (rx - hx, rx + hx, ry - hy, ry + hy), dims, Surface(_C["rug"]), look)

    obj = 0
    tables: list[tuple[float, float, float]] = []  # x, y, top height
    for _ in range(int(rng.integers(3, 8))):
        kind = rng.choice(["box", "table", "sphere", "cylinder"], p=[0.35, 0.2, 0.25, 0.2])
        look = _look(rng, _jitter(rng, _BASE_ALBEDO[_C[kind]], 0.5))
        surf = Surface(_C[kind], obj)
        if kind == "box":
            half = np.array(
                [rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.75)]
            )
            x, y = _ground_spot(rng, cam, yaw, dims, float(np.hypot(half[0], half[1])) + 0.02)
            if math.hypot(x - cam[0], y - cam[1]) < np.hypot(half[0], half[1]) + 0.4:
                continue
            _box(cv, (x, y, half[2]), half, rng.uniform(0, math.pi), surf, look)
        elif kind == "table":
            hx, hy, top = rng.uniform(0.3, 0.8), rng.uniform(0.25, 0.5), rng.uniform(0.6, 0.8)
            x, y = _ground_spot(rng, cam, yaw, dims, float(np.hypot(hx, hy)) + 0.02)
            if math.hypot(x - cam[0], y - cam[1]) < np.hypot(hx, hy) + 0.4:
                continue
            ty = rng.uniform(0, math.pi)
            thick, leg = rng.uniform(0.03, 0.06), rng.uniform(0.025, 0.045)
            _box(cv, (x, y, top - thick / 2), (hx, hy, thick / 2), ty, surf, look)
            rz = _rot_z(ty)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    off = rz @ np.array([sx * (hx - 2 * leg), sy * (hy - 2 * leg), 0.0])
                    centre = (x + off[0], y + off[1], (top - thick) / 2)
                    _box(cv, centre, (leg, leg, (top - thick) / 2), ty, surf, look)
            tables.append((x, y, top))
        elif kind == "sphere":
            r = rng.uniform(0.1, 0.4)
            if tables and rng.random() < 0.5:  # on a table top
                x, y, z = tables[-1]
                r = min(r, 0.2)
            else:
                x, y = _ground_spot(rng, cam, yaw, dims, r + 0.02)
                z = 0.0
            if math.hypot(x - cam[0], y - cam[1]) < r + 0.4:
                continue
            _sphere(cv, (x, y, z + r), r, surf, look)
        else:
            r, height = rng.uniform(0.08, 0.35), rng.uniform(0.3, 1.8)
            x, y = _ground_spot(rng, cam, yaw, dims, r + 0.02)
            if math.hypot(x - cam[0], y - cam[1]) < r + 0.4:
                continue
            _cylinder(cv, (x, y, 0.0), r, height, surf, look)
        obj += 1

    if person_prob > 0 and rng.random() < person_prob:
        for _ in range(1 + int(rng.random() < 0.3)):
            x, y = _ground_spot(rng, cam, yaw, dims, 0.4, (1.5, 4.5))
            if math.hypot(x - cam[0], y - cam[1]) < 0.8:
                continue
            facing = math.atan2(cam[1] - y, cam[0] - x)  # direction towards the camera
            # local -y must point at the camera: yaw = facing + pi/2, plus a random turn
            _person(cv, rng, obj, (x, y), facing + math.pi / 2 + rng.uniform(-0.6, 0.6))
            obj += 1

    sample = _shade_and_label(cv, rng, dims, intr)
    sample["id"] = f"s{int(seed)}_{int(index):06d}"
    return RenderedScene(sample=sample, surface=cv.sid, surfaces=cv.surfaces)


def _shade_and_label(cv: _Canvas, rng, dims, intr: np.ndarray) -> dict[str, Any]:
    """Turn the z-buffer into the image and the label maps of a raw sample."""
    sid = cv.sid.astype(np.intp)  # np.take converts other index types on every call
    surfs, looks = cv.surfaces, cv.looks

    def lut(values, dtype) -> np.ndarray:
        return np.take(np.asarray(values, dtype=dtype), sid)

    salient = {_C[c] for c in SALIENT_CLASSES}
    semseg = lut([s.cls for s in surfs], np.uint8)
    sal = lut([s.cls in salient for s in surfs], _F32)
    if any(s.part for s in surfs):
        human_parts = lut([PERSON_PARTS.get(s.part, 0) for s in surfs], np.uint8)
    else:
        human_parts = np.zeros(sid.shape, dtype=np.uint8)
    if not human_parts.any():
        human_parts[:] = IGNORE_INDEX

    light = (rng.uniform(0.25, 0.75) * dims[0], rng.uniform(0.25, 0.75) * dims[1], dims[2] - 0.4)
    ambient, diffuse = rng.uniform(0.25, 0.45), rng.uniform(0.55, 0.85)
    tint = rng.uniform(0.85, 1.0, 3) * 255.0
    noise = rng.integers(0, 256, sid.shape, dtype=np.uint8)
    noise_scale = rng.uniform(1.0, 4.0) / 127.5
    curved = np.array([n is None for n in cv.flat_normals])
    flat = np.array([np.zeros(3) if n is None else n for n in cv.flat_normals], dtype=_F32)
    kind = np.array([look[1] for look in looks])
    image = np.empty((*sid.shape, 3), dtype=np.uint8)
    normals = np.empty((*sid.shape, 3), dtype=_F32)
    _shade_kernel(
        cv.sid,
        cv.depth,
        cv.d,
        np.array(cv.o + light + (ambient, diffuse, noise_scale), dtype=_F32),
        cv.rot.astype(_F32),
        flat,
        curved,
        cv.n,
        np.array([look[2] for look in looks], dtype=_F32),
        kind == 1,
        np.array([look[3] if look[1] > 0 else 0.0 for look in looks], dtype=_F32),
        kind < 0,
        np.array([look[0] for look in looks], dtype=_F32),
        tint.astype(_F32),
        noise,
        image,
        normals,
    )
    edge = np.zeros(sid.shape, dtype=np.uint8)
    _edge_kernel(np.asarray(cv.edge_keys, dtype=np.int32), cv.sid, cv.depth, edge)
    return {
        "image": image,
        "semseg": semseg,
        "depth": cv.depth,
        "normals": normals,
        "edge": edge,
        "sal": sal,
        "human_parts": human_parts,
        "intrinsics": intr.astype(_F32),
    }


@_njit
def _shade_kernel(
    sid, depth, d, scalars, rot, flat, curved, pixel_n, freq, checker, amp, emissive, albedo,
    tint, noise, image, normals
):  # fmt: skip
    """Image and camera-frame normals of every pixel, in float32 throughout.

    ``scalars``: camera origin (3), light position (3), ambient, diffuse, noise scale.
    Shading: a Lambertian point light plus ambient, times a solid texture
    ``1 + amp * (pattern - 0.5)`` where ``pattern`` is the parity of the 3-D cell index
    (checker) or of the height index only (stripes); windows are emissive (shade 1).
    The operations and their order are part of the data: changing them changes the scenes.
    """
    zero, one, half = np.float32(0.0), np.float32(1.0), np.float32(0.5)
    mid, top = np.float32(127.5), np.float32(255.0)
    o0, o1, o2, l0, l1, l2, ambient, diffuse, noise_scale = scalars
    h, w = sid.shape
    for i in range(h):
        for j in range(w):
            s = sid[i, j]
            if curved[s]:
                n0, n1, n2 = pixel_n[0, i, j], pixel_n[1, i, j], pixel_n[2, i, j]
            else:
                n0, n1, n2 = flat[s, 0], flat[s, 1], flat[s, 2]
            for c in range(3):  # n_cam = R^T n_world
                normals[i, j, c] = zero + rot[0, c] * n0 + rot[1, c] * n1 + rot[2, c] * n2
            t = depth[i, j]
            p0, p1, p2 = t * d[0, i, j] + o0, t * d[1, i, j] + o1, t * d[2, i, j] + o2
            v0, v1, v2 = l0 - p0, l1 - p1, l2 - p2
            ndotl = (n0 * v0 + n1 * v1 + n2 * v2) / np.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
            if ndotl < zero:
                ndotl = zero
            shade = ambient + diffuse * ndotl
            if emissive[s]:
                shade = one
            elif amp[s] != zero:  # amp = 0 gives a factor of exactly 1
                f = freq[s]
                fx = np.int32(np.floor(p0 * f))
                fy = np.int32(np.floor(p1 * f))
                cell = np.int32(np.floor(p2 * f))
                if checker[s]:
                    cell += fx + fy
                shade = shade * (one + amp[s] * (np.float32(cell & 1) - half))
            grain = (np.float32(noise[i, j]) - mid) * noise_scale
            for c in range(3):
                v = albedo[s, c] * shade * tint[c] + grain
                image[i, j, c] = np.uint8(min(max(v, zero), top))


@_njit
def _edge_kernel(keys, sid, depth, edge):
    """Mark pixels where the visible surface changes: of each 4-neighbour pair whose edge keys
    differ, the nearer pixel (the first one on equal depth)."""
    h, w = sid.shape
    for i in range(h):
        for j in range(w):
            k = keys[sid[i, j]]
            if i + 1 < h and keys[sid[i + 1, j]] != k:
                if depth[i, j] <= depth[i + 1, j]:
                    edge[i, j] = 1
                else:
                    edge[i + 1, j] = 1
            if j + 1 < w and keys[sid[i, j + 1]] != k:
                if depth[i, j] <= depth[i, j + 1]:
                    edge[i, j] = 1
                else:
                    edge[i, j + 1] = 1


def render_scene(
    seed: int, index: int, size: tuple[int, int], *, person_prob: float = 0.0
) -> dict[str, Any]:
    """Raw sample (see :mod:`mtcp.data.sample`) of scene ``index`` in family ``seed``.

    Keys: ``image`` uint8 [H, W, 3]; ``semseg`` uint8 [H, W] (indices into
    :data:`SYNTHETIC_CLASSES`); ``depth`` float32 [H, W] metres along z; ``normals`` float32
    [H, W, 3] camera frame, unit; ``edge`` uint8 [H, W] 0/1; ``sal`` float32 [H, W] 0/1;
    ``human_parts`` uint8 [H, W] (all 255 without a visible person); ``intrinsics`` float32
    [4] fx, fy, cx, cy; ``id`` str.
    """
    return render_scene_full(seed, index, size, person_prob=person_prob).sample


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise MtcpError(f"synthetic scenes: size must be (H, W) integers, got {size!r}") from None
    if h < 1 or w < 1:
        raise MtcpError(f"synthetic scenes: size must be positive, got {h}x{w}")
    return h, w


class SyntheticScenes(Dataset):
    """``n`` synthetic scenes as a torch Dataset of tensor samples (:func:`to_tensor`).

    Args:
        n: number of scenes; item ``i`` is ``render_scene(seed, i, size)``.
        size: ``(H, W)`` in pixels.
        seed: scene family.
        tasks: tasks put into each sample (see :mod:`mtcp.tasks`).
        transform: applied to the raw numpy sample before conversion to tensors.
        person_prob: probability of people in a scene; by default 0.5 when ``human_parts``
            is among ``tasks`` and 0 otherwise (NYUD-like indoor scenes).
    """

    def __init__(
        self,
        n: int,
        size: tuple[int, int] = (240, 320),
        seed: int = 0,
        tasks: Iterable[str] = ("semseg", "depth", "normals", "edge", "sal"),
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        person_prob: float | None = None,
    ) -> None:
        if int(n) < 1:
            raise MtcpError(f"synthetic scenes: n must be >= 1, got {n}")
        self.n = int(n)
        self.size = _check_size(size)
        self.seed = int(seed)
        self.tasks = tuple(tasks)
        self.transform = transform
        if person_prob is None:
            person_prob = 0.5 if "human_parts" in self.tasks else 0.0
        self.person_prob = float(person_prob)
        self.classes = list(SYNTHETIC_CLASSES)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | Any]:
        if not 0 <= index < self.n:
            raise IndexError(f"scene {index} out of range [0, {self.n})")
        raw = render_scene(self.seed, index, self.size, person_prob=self.person_prob)
        if self.transform is not None:
            raw = self.transform(raw)
        return to_tensor(raw, self.tasks)
