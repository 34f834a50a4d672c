"""``mtcp convert-release``: a checkpoint of the authors' training code -> an mtcp weights file.

>>> from mtcp.export.release import convert_release
>>> report = convert_release("model_best.pth.tar", "mtcp_paper_nyud.safetensors")
>>> print(report.summary())

The checkpoint is read with ``weights_only=True`` (never unpickled), mapped by
:func:`mtcp.models.release.convert_release_state`, loaded strictly into ``mtcp_paper`` (which
also renames the Mask2Former Swin keys to the installed transformers generation) and written as
``.safetensors`` with the model config, the input size and, for NYUD, the camera, so that
``mtcp evaluate`` / ``mtcp predict`` / :func:`mtcp.load` use it directly.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from mtcp.errors import MtcpError
from mtcp.export import save_safetensors
from mtcp.geometry import nyud_intrinsics
from mtcp.io import load_checkpoint
from mtcp.models.registry import create_model
from mtcp.models.release import (
    AUX_MODULES,
    CFM_MODULES,
    LOOSE_SCALARS,
    SWIN_MODULES,
    TRACE_MODULES,
    ReleaseConversion,
    convert_release_state,
    release_tasks,
)
from mtcp.models.weights import load_state, strip_wrappers

#: the release's training / test size per dataset (H, W)
RELEASE_SIZES = {"nyud": (480, 640), "pascal": (512, 512)}
#: where training scripts commonly nest the state dict inside a checkpoint
STATE_KEYS = ("state_dict", "model", "model_state_dict", "net")
PRESET = "mtcp_paper"


#: components of the release (key prefixes) and of mtcp_paper (parameter-name prefixes)
COMPONENTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Mask2Former backbone", ("backbon.",), ("backbone.",)),
    ("task Swin decoders", SWIN_MODULES, ("decoders.*.stages", "decoders.*.norms")),
    ("FPNs", ("fpn_",), ("decoders.*.fpn",)),
    ("CFMs", CFM_MODULES, ("cfm.",)),
    ("trace-backs (SRMs)", TRACE_MODULES, ("traceback.",)),
    ("final heads", ("project_",), ("heads.",)),
    ("deep-supervision heads", AUX_MODULES, ("aux_heads.",)),
    ("loose scalars", LOOSE_SCALARS, ()),
)
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "relative_position_index")


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(re.match(re.escape(p).replace(r"\*", r"[^.]+"), name) for p in prefixes)


def component_parameters(
    release_state: Mapping[str, Tensor],
    conversion: ReleaseConversion,
    model: nn.Module,
) -> list[tuple[str, int, int, int]]:
    """``(component, release parameters, of which its forward uses, mtcp parameters)`` per
    component of :data:`COMPONENTS`. Release parameters are the state-dict tensors that are not
    buffers (running statistics, counters, index tables, the criterion's class weights); "used"
    leaves out what the conversion drops."""
    src = strip_wrappers(release_state)
    dropped = {k for k, _ in conversion.dropped}
    rows = []
    for name, release_prefixes, mtcp_prefixes in COMPONENTS:
        params = {
            k: v.numel()
            for k, v in src.items()
            if k.startswith(release_prefixes)
            and not k.endswith(_BUFFERS)
            and not k.startswith("backbon.criterion.")
        }
        used = sum(n for k, n in params.items() if k not in dropped)
        ours = sum(p.numel() for k, p in model.named_parameters() if _matches(k, mtcp_prefixes))
        rows.append((name, sum(params.values()), used, ours))
    return rows


@dataclass
class ReleaseReport:
    """The conversion and where it was written."""

    conversion: ReleaseConversion
    out: Path
    size: tuple[int, int]
    #: ``(component, release parameters, used by its forward, mtcp_paper)``
    parameters: list[tuple[str, int, int, int]]

    def summary(self) -> str:
        """Human-readable lines: what was mapped, dropped (grouped by reason), folded, filled."""
        c = self.conversion
        lines = [
            f"release checkpoint ({c.dataset}, tasks {c.tasks}) -> {self.out} "
            f"({PRESET}, input {self.size[0]}x{self.size[1]})",
            f"mapped {len(c.mapped)} tensors",
            f"dropped {len(c.dropped)} tensors unused by the release's forward:",
        ]
        for reason, n in Counter(r for _, r in c.dropped).most_common():
            lines.append(f"  {n:4d}  {reason}")
        lines.append(f"folded {len(c.folded)} conv biases into BatchNorm running means:")
        lines += [f"  {src} -> {dst}" for src, dst in c.folded]
        if c.filled:
            lines.append(f"filled {len(c.filled)} tensors the release does not have:")
            lines += [f"  {dst}: {what}" for dst, what in c.filled]
        lines.append(f"parameters (M)          {'release':>9} {'used':>9} {'mtcp':>9}")
        totals = [0, 0, 0]
        for name, *counts in self.parameters:
            totals = [t + n for t, n in zip(totals, counts)]
            lines.append(f"  {name:<22}" + "".join(f"{n / 1e6:10.3f}" for n in counts))
        lines.append(f"  {'total':<22}" + "".join(f"{n / 1e6:10.3f}" for n in totals))
        return "\n".join(lines)


def _state_dict(checkpoint: object, where: str) -> dict[str, Tensor]:
    if isinstance(checkpoint, Mapping):
        for key in STATE_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not all(
        isinstance(v, Tensor) for v in checkpoint.values()
    ):
        raise MtcpError(
            f"{where}: expected a state dict of tensors (plain, DDP 'module.'-prefixed, or under "
            f"one of {', '.join(STATE_KEYS)})"
        )
    return dict(checkpoint)


def convert_release(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    size: Sequence[int] | None = None,
) -> ReleaseReport:
    """Convert a release checkpoint into an ``mtcp_paper`` ``.safetensors`` file.

    Args:
        checkpoint: file saved by the authors' training code (``torch.save`` of the model's
            state dict, or a dict holding it); read with ``weights_only=True``.
        out: the ``.safetensors`` file to write (atomically).
        size: input size ``(H, W)`` stored for prediction; default the release's (NYUD
            480x640, PASCAL 512x512).

    Raises:
        MtcpError: unreadable file, a key with no place in mtcp_paper, a missing weight or a
            shape mismatch (each named).
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise MtcpError(f"{out}: the converted weights are written as .safetensors; name it so")
    where = str(checkpoint)
    state = _state_dict(load_checkpoint(checkpoint), where)
    try:
        conversion = convert_release_state(state)
    except MtcpError as err:
        raise MtcpError(f"{where}: {err}") from None
    model = create_model(PRESET, tasks=release_tasks(state))
    try:
        load_state(model, conversion.state, where)
    except MtcpError as err:  # names are mtcp's: point to the table that maps them back
        raise MtcpError(
            f"{err} (mtcp_paper names: the release tensors that map onto them, see "
            "mtcp.models.release, are absent or of another shape)"
        ) from None
    h, w = (int(s) for s in (size or RELEASE_SIZES[conversion.dataset]))
    intrinsics = tuple(nyud_intrinsics((h, w))) if conversion.dataset == "nyud" else None
    save_safetensors(model, out, size=(h, w), intrinsics=intrinsics)
    parameters = component_parameters(state, conversion, model)
    return ReleaseReport(conversion, out, (h, w), parameters)
