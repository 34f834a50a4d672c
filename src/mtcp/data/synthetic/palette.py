"""Classes, base colours and random surface looks of the synthetic scenes (numpy only)."""

from __future__ import annotations

import numpy as np

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
CLASS_ID = {name: i for i, name in enumerate(SYNTHETIC_CLASSES)}
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
BASE_ALBEDO = np.array(
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


def jitter(rng: np.random.Generator, base: np.ndarray, amount: float = 0.25) -> np.ndarray:
    return np.clip(base * rng.uniform(1 - amount, 1 + amount, 3), 0.02, 1.0).astype(np.float32)


def random_look(rng: np.random.Generator, albedo: np.ndarray, textured: float = 0.6):
    """Albedo plus texture (kind 0 plain, 1 3-D checker, 2 horizontal stripes, freq, amp)."""
    kind = int(rng.choice(3, p=[1 - textured, textured / 2, textured / 2]))
    return albedo, kind, float(rng.uniform(1.5, 8.0)), float(rng.uniform(0.08, 0.35))
