"""The dense prediction tasks mtcp knows, and the conventions every module shares.

Tensor conventions (one sample; a batch adds a leading ``B``):

==============  ===========================  ==============================================
key             dtype / shape                meaning
==============  ===========================  ==============================================
``image``       float32 [3, H, W]            RGB normalised with ``IMAGENET_MEAN/STD``
``semseg``      int64 [H, W]                 class id in ``[0, C)``, ``255`` = ignore
``human_parts`` int64 [H, W]                 part id in ``[0, 7)``, ``255`` = ignore
``depth``       float32 [1, H, W]            metres, ``0`` = invalid
``normals``     float32 [3, H, W]            unit vectors, camera frame, zero = invalid
``edge``        float32 [1, H, W]            ``1`` boundary, ``0`` not, ``255`` = ignore
``sal``         float32 [1, H, W]            saliency in ``[0, 1]``, ``255`` = ignore
``intrinsics``  float32 [4]                  ``fx, fy, cx, cy`` in pixels of this image
``labelled``    dict task -> bool            False when the sample has no label for a task
==============  ===========================  ==============================================

Normals camera frame: x points right, y points down, z points forward (away from the camera,
OpenCV convention); a visible surface's normal points towards the camera, so its z is <= 0.

Model outputs use the same units: class logits ``[B, C, H, W]`` for ``semseg`` and
``human_parts``, metres ``[B, 1, H, W]`` for ``depth``, unnormalised vectors ``[B, 3, H, W]``
for ``normals`` and logits ``[B, 1, H, W]`` for ``edge`` and ``sal``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mtcp.errors import MtcpError

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TaskSpec:
    """What mtcp needs to know about one task.

    Attributes:
        name: task key used in batches, outputs, configs and files.
        kind: ``"classes"`` (per-pixel classification), ``"depth"``, ``"normals"`` or
            ``"binary"`` (one logit per pixel).
        channels: default number of output channels (classes for ``"classes"`` tasks).
        main_metric: the metric used in Δm and for model selection.
        higher_is_better: direction of ``main_metric``.
    """

    name: str
    kind: str
    channels: int
    main_metric: str
    higher_is_better: bool


TASKS: dict[str, TaskSpec] = {
    "semseg": TaskSpec("semseg", "classes", 40, "mIoU", True),
    "depth": TaskSpec("depth", "depth", 1, "rmse", False),
    "normals": TaskSpec("normals", "normals", 3, "mean", False),
    "edge": TaskSpec("edge", "binary", 1, "odsF", True),
    "human_parts": TaskSpec("human_parts", "classes", 7, "mIoU", True),
    "sal": TaskSpec("sal", "binary", 1, "maxF", True),
}


def get_task(name: str) -> TaskSpec:
    """Return the :class:`TaskSpec` of ``name`` or raise a clear error listing the known tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise MtcpError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def resolve_tasks(tasks: Iterable[str] | Mapping[str, int]) -> dict[str, int]:
    """Normalise a task selection to ``{task: output channels}`` in a stable order.

    ``tasks`` is a list of task names (default channel counts) or a mapping from task name to
    its number of classes / channels. Only the ``"classes"`` tasks may change their count.
    """
    items = tasks.items() if isinstance(tasks, Mapping) else ((t, None) for t in tasks)
    out: dict[str, int] = {}
    for name, channels in items:
        spec = get_task(name)
        if name in out:
            raise MtcpError(f"task {name!r} is listed twice")
        if channels is None:
            channels = spec.channels
        channels = int(channels)
        if spec.kind != "classes" and channels != spec.channels:
            raise MtcpError(f"task {name!r} has {spec.channels} output channel(s), got {channels}")
        if channels < 1:
            raise MtcpError(f"task {name!r} needs at least one class, got {channels}")
        out[name] = channels
    if not out:
        raise MtcpError(f"no task selected; choose from: {', '.join(TASKS)}")
    return out
