"""Analytic ray casting into a z-buffer: the room, decals, boxes, spheres and cylinders.

One ray per pixel centre (camera z component 1, so a hit's ray parameter is its depth along the
optical axis) is intersected with each primitive over the pixels of its screen-space bounding
box; :class:`Canvas` keeps the nearest hit, its surface id and, for curved surfaces, its normal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mtcp.data.synthetic.palette import CLASS_ID

_NEAR = 0.05  # metres: primitives closer than this to the camera plane use the whole image

_F32 = np.float32
# Outward normals of the faces 2k / 2k + 1 of a box (the +k / -k side); also the inward
# normals of the room faces (face 2k lies at coordinate 0 along k, 2k + 1 at the far side).
_FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


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


class Canvas:
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


def rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (world z up) whose columns are the camera x, y, z axes."""
    f = np.array(
        [math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)]
    )
    r0 = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    d0 = np.cross(f, r0)
    r = math.cos(roll) * r0 + math.sin(roll) * d0
    d = -math.sin(roll) * r0 + math.cos(roll) * d0
    return np.stack([r, d, f], axis=1)


def cast_room(cv: Canvas, dims: Sequence[float], looks: list) -> None:
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
    for k, cls in enumerate([CLASS_ID["wall"]] * 4 + [CLASS_ID["floor"], CLASS_ID["ceiling"]]):
        cv.add(Surface(cls), looks[k], normals=[normals[k]])
    cv.commit((slice(None), slice(None)), t, face)


def cast_decal(cv: Canvas, face: int, rect: Sequence[float], dims, surface: Surface, look) -> None:
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


def cast_box(cv: Canvas, centre, half, yaw: float, surface: Surface, look) -> int | None:
    """A box of half extents ``half`` rotated by ``yaw`` about the vertical axis.

    Returns the first of its 6 surface ids (face ``2k`` / ``2k + 1``: the +k / -k side in the
    box frame), or None when it is off-screen.
    """
    rz = rot_z(yaw)
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


def cast_sphere(cv: Canvas, centre, radius: float, surface: Surface, look) -> None:
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


def cast_cylinder(cv: Canvas, base, radius: float, height: float, surface: Surface, look) -> None:
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
