"""Model outputs → maps in physical units, one converter per task kind (:mod:`mtcp.tasks`).

===========  ===================================  ==========================================
task kind    model output ``[B, C, H, W]``          map per image (numpy)
===========  ===================================  ==========================================
classes      logits                               ``int64 [H, W]`` argmax class id
depth        metres                               ``float32 [H, W]`` metres, clamped at 0
normals      unnormalised vectors                 ``float32 [H, W, 3]`` unit vectors
binary       logit                                ``float32 [H, W]`` sigmoid probability
===========  ===================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from mtcp.tasks import get_task

#: task kind → ``[B, C, H, W]`` float output → batch of maps (see the module table)
TO_MAP: dict[str, Callable[[torch.Tensor], np.ndarray]] = {
    "classes": lambda out: out.argmax(1).numpy(),
    "depth": lambda out: out[:, 0].clamp_min(0).numpy(),
    "normals": lambda out: torch.nn.functional.normalize(out, dim=1).permute(0, 2, 3, 1).numpy(),
    "binary": lambda out: out[:, 0].sigmoid().numpy(),
}


def to_numpy_maps(
    outputs: Mapping[str, torch.Tensor], tasks: Mapping[str, int] | list[str]
) -> list[dict[str, np.ndarray]]:
    """Model outputs of a batch → per-image dicts of physical-unit numpy maps (module table)."""
    per_task = {
        task: TO_MAP[get_task(task).kind](outputs[task].detach().float().cpu()) for task in tasks
    }
    n = next(iter(per_task.values())).shape[0]
    return [{t: v[i] for t, v in per_task.items()} for i in range(n)]
