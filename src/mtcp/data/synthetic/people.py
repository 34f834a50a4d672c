"""People built from primitives, with PASCAL-Part names on their surfaces."""

from __future__ import annotations

import numpy as np

from mtcp.data.synthetic.palette import BASE_ALBEDO, CLASS_ID, jitter
from mtcp.data.synthetic.raycast import (
    Canvas,
    Surface,
    cast_box,
    cast_cylinder,
    cast_sphere,
    rot_z,
)

_F32 = np.float32


def cast_person(cv: Canvas, rng, obj: int, at, yaw: float) -> None:
    """A standing person from primitives, facing local -y; its left side is local +x."""
    s = rng.uniform(1.5, 1.9) / 1.75
    rz = rot_z(yaw)
    skin = jitter(rng, BASE_ALBEDO[CLASS_ID["person"]], 0.2)
    shirt = rng.uniform(0.1, 0.9, 3).astype(_F32)
    trousers = rng.uniform(0.05, 0.6, 3).astype(_F32)
    base = np.array([at[0], at[1], 0.0])

    def world(local):
        return base + rz @ (np.asarray(local, dtype=float) * s)

    def part(name: str, albedo):
        return Surface(CLASS_ID["person"], obj, name), (albedo, 0, 1.0, 0.0)

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
        first[name] = cast_box(cv, centre, half, yaw, *part(name, albedo))
    # The legs of a pair share their front, back, top and bottom planes: where they touch in
    # the image there is no boundary (their x faces differ and are never merged).
    for left, right in (("luleg", "ruleg"), ("llleg", "rlleg")):
        if first[left] is not None and first[right] is not None:
            for face in range(2, 6):
                cv.edge_keys[first[right] + face] = cv.edge_keys[first[left] + face]
    cast_cylinder(cv, world([0, 0, 1.45]), 0.05 * s, 0.08 * s, *part("neck", skin))
    cast_sphere(cv, world([0, 0, 1.64]), 0.115 * s, *part("head", skin))
