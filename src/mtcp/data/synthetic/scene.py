"""Scene composition: room, decals, objects and people of scene ``(seed, index)``; rendering."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtcp.data.synthetic.palette import BASE_ALBEDO, CLASS_ID, jitter, random_look
from mtcp.data.synthetic.people import cast_person
from mtcp.data.synthetic.raycast import (
    Canvas,
    Surface,
    camera_rotation,
    cast_box,
    cast_cylinder,
    cast_decal,
    cast_room,
    cast_sphere,
    rot_z,
)
from mtcp.data.synthetic.shading import shade_and_label
from mtcp.errors import MtcpError
from mtcp.geometry import nyud_intrinsics
from mtcp.sizes import parse_size

_F32 = np.float32


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


def ground_spot(rng, cam, yaw: float, dims, margin: float, dist=(1.2, 5.0)):
    """A floor point (x, y) in front of the camera, inside the room by ``margin``."""
    a = yaw + rng.uniform(-0.5, 0.5)
    r = rng.uniform(*dist)
    x = float(np.clip(cam[0] + r * math.cos(a), margin, dims[0] - margin))
    y = float(np.clip(cam[1] + r * math.sin(a), margin, dims[1] - margin))
    return x, y


def render_scene_full(
    seed: int, index: int, size: tuple[int, int], *, person_prob: float = 0.0
) -> RenderedScene:
    """Render scene ``index`` of the family ``seed`` at ``size = (H, W)`` pixels.

    ``person_prob`` is the probability that the scene holds one or two people (0 keeps the
    scenes NYUD-like, 1 always places at least one). Returns the raw sample and the
    per-pixel surface ids the on-disk layouts need (PASCAL object and part masks).
    """
    h, w = check_size(size)
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
    rot = camera_rotation(yaw, -rng.uniform(0.05, 0.45), rng.uniform(-0.06, 0.06))
    cv = Canvas((h, w), intr, cam, rot)

    wall_albedo = jitter(rng, BASE_ALBEDO[CLASS_ID["wall"]], 0.3)
    room_looks = [(wall_albedo, 2 if rng.random() < 0.3 else 0, rng.uniform(2, 6), 0.06)] * 4
    room_looks += [
        random_look(rng, jitter(rng, BASE_ALBEDO[CLASS_ID["floor"]], 0.4), 0.8),
        (jitter(rng, BASE_ALBEDO[CLASS_ID["ceiling"]], 0.08), 0, 1.0, 0.0),
    ]
    cast_room(cv, dims, room_looks)

    # Decals on the walls and the floor; a face seen from inside is 2 * axis + side.
    def wall_rect(width, z0, z1):
        face = int(rng.integers(4))
        length = dims[1] if face < 2 else dims[0]
        a0 = rng.uniform(0.1, max(length - width - 0.1, 0.2))
        return face, (a0, a0 + width, z0, z1)

    if rng.random() < 0.8:
        face, rect = wall_rect(rng.uniform(0.8, 1.0), 0.0, rng.uniform(1.95, 2.2))
        look = random_look(rng, jitter(rng, BASE_ALBEDO[CLASS_ID["door"]]), 0.5)
        cast_decal(cv, face, rect, dims, Surface(CLASS_ID["door"]), look)
    for _ in range(int(rng.integers(0, 3))):
        z0 = rng.uniform(0.8, 1.1)
        face, rect = wall_rect(rng.uniform(0.6, 1.5), z0, z0 + rng.uniform(0.8, 1.2))
        look = (jitter(rng, BASE_ALBEDO[CLASS_ID["window"]], 0.1), -1, 1.0, 0.0)  # -1: emissive
        cast_decal(cv, face, rect, dims, Surface(CLASS_ID["window"]), look)
    for _ in range(int(rng.integers(0, 4))):
        z0 = rng.uniform(1.1, 1.7)
        face, rect = wall_rect(rng.uniform(0.3, 1.0), z0, z0 + rng.uniform(0.3, 0.7))
        look = random_look(rng, rng.uniform(0.1, 0.95, 3).astype(_F32), 0.9)
        cast_decal(cv, face, rect, dims, Surface(CLASS_ID["picture"]), look)
    if rng.random() < 0.5:
        rx, ry = ground_spot(rng, cam, yaw, dims, 0.8, (1.5, 4.0))
        hx, hy = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.9)
        look = random_look(rng, rng.uniform(0.1, 0.8, 3).astype(_F32), 0.9)
        rug = Surface(CLASS_ID["rug"])
        cast_decal(cv, 4, (rx - hx, rx + hx, ry - hy, ry + hy), dims, rug, look)

    obj = 0
    tables: list[tuple[float, float, float]] = []  # x, y, top height
    for _ in range(int(rng.integers(3, 8))):
        kind = rng.choice(["box", "table", "sphere", "cylinder"], p=[0.35, 0.2, 0.25, 0.2])
        look = random_look(rng, jitter(rng, BASE_ALBEDO[CLASS_ID[kind]], 0.5))
        surf = Surface(CLASS_ID[kind], obj)
        if kind == "box":
            half = np.array(
                [rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.75)]
            )
            x, y = ground_spot(rng, cam, yaw, dims, float(np.hypot(half[0], half[1])) + 0.02)
            if math.hypot(x - cam[0], y - cam[1]) < np.hypot(half[0], half[1]) + 0.4:
                continue
            cast_box(cv, (x, y, half[2]), half, rng.uniform(0, math.pi), surf, look)
        elif kind == "table":
            hx, hy, top = rng.uniform(0.3, 0.8), rng.uniform(0.25, 0.5), rng.uniform(0.6, 0.8)
            x, y = ground_spot(rng, cam, yaw, dims, float(np.hypot(hx, hy)) + 0.02)
            if math.hypot(x - cam[0], y - cam[1]) < np.hypot(hx, hy) + 0.4:
                continue
            ty = rng.uniform(0, math.pi)
            thick, leg = rng.uniform(0.03, 0.06), rng.uniform(0.025, 0.045)
            cast_box(cv, (x, y, top - thick / 2), (hx, hy, thick / 2), ty, surf, look)
            rz = rot_z(ty)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    off = rz @ np.array([sx * (hx - 2 * leg), sy * (hy - 2 * leg), 0.0])
                    centre = (x + off[0], y + off[1], (top - thick) / 2)
                    cast_box(cv, centre, (leg, leg, (top - thick) / 2), ty, surf, look)
            tables.append((x, y, top))
        elif kind == "sphere":
            r = rng.uniform(0.1, 0.4)
            if tables and rng.random() < 0.5:  # on a table top
                x, y, z = tables[-1]
                r = min(r, 0.2)
            else:
                x, y = ground_spot(rng, cam, yaw, dims, r + 0.02)
                z = 0.0
            if math.hypot(x - cam[0], y - cam[1]) < r + 0.4:
                continue
            cast_sphere(cv, (x, y, z + r), r, surf, look)
        else:
            r, height = rng.uniform(0.08, 0.35), rng.uniform(0.3, 1.8)
            x, y = ground_spot(rng, cam, yaw, dims, r + 0.02)
            if math.hypot(x - cam[0], y - cam[1]) < r + 0.4:
                continue
            cast_cylinder(cv, (x, y, 0.0), r, height, surf, look)
        obj += 1

    if person_prob > 0 and rng.random() < person_prob:
        for _ in range(1 + int(rng.random() < 0.3)):
            x, y = ground_spot(rng, cam, yaw, dims, 0.4, (1.5, 4.5))
            if math.hypot(x - cam[0], y - cam[1]) < 0.8:
                continue
            facing = math.atan2(cam[1] - y, cam[0] - x)  # direction towards the camera
            # local -y must point at the camera: yaw = facing + pi/2, plus a random turn
            cast_person(cv, rng, obj, (x, y), facing + math.pi / 2 + rng.uniform(-0.6, 0.6))
            obj += 1

    sample = shade_and_label(cv, rng, dims, intr)
    sample["id"] = f"s{int(seed)}_{int(index):06d}"
    return RenderedScene(sample=sample, surface=cv.sid, surfaces=cv.surfaces)


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


def check_size(size: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` of a scene to render (:func:`mtcp.sizes.parse_size`)."""
    return parse_size(tuple(size), "synthetic scenes: size")
