"""The authors' release checkpoints in mtcp's names: a pure state-dict mapping (no IO).

The MT-CP release (``MultiTaskModel_NYUD`` / ``MultiTaskModel_PASCAL``) saves one flat state
dict, possibly ``module.``-prefixed (DDP). Tasks are fixed by its position in the release:

=============  ==========================  ==========================
release        NYUD                        PASCAL
=============  ==========================  ==========================
position 1     semseg                      semseg
position 2     depth                       human_parts
position 3     normals                     sal
=============  ==========================  ==========================

Module by module (``K`` = position, ``t`` = its task; Swin names as in timm):

===============================================  ===============================================
release                                          mtcp_paper
===============================================  ===============================================
``backbon.model.*`` (HF Mask2FormerModel)        ``backbone.model.*`` (either transformers naming)
``transformerK.layers.i.blocks.j.*``             ``decoders.t.stages.i.blocks.j.*``
``transformerK.layers.i.downsample.*``           ``decoders.t.stages.(i+1).downsample.*``
``transformerK.norm{i}.*``                       ``decoders.t.norms.i.*``
``fpn_*.lateral_convs.i`` / ``fpn_convs.0``      ``decoders.t.fpn.laterals.i`` / ``fpn.output``
``gaaf{K}.cbam_sem`` + ``cbam_sem_norm``          ``cfm.t.value.0`` + ``value.1``
``gaaf{K}.gate1`` / ``gate2`` / ``conv1``          ``cfm.t.gates.0`` / ``gates.1`` / ``fuse.0``
``gaaf{K}.cbam_dep(_norm)`` / ``cbam_dep2(_norm)``  ``cfm.t.query.0 (.1)`` / ``cfm.t.key.0 (.1)``
``gaaf{K}.shared_dep2(_norm)``                    ``cfm.t.out.0 (.1)``
``trace_back{K}.spf_modules.0 / 1 / 2``          ``traceback.t.srm3 / srm2 / srm1``
   ``sem_cbam / dep_cbam``                          ``cbam_in / cbam_feat``
   ``sem_conv + b1 / dep_conv + b2``                ``predict.0 + predict.1 / refine.0 + refine.1``
``project_*``                                    ``heads.t`` (release heads, mtcp.models.heads)
``*_pred_layers.i.module``                       ``aux_heads.t.i`` (i = 0: 1/16, 1: 1/8)
===============================================  ===============================================

CBAM inside: ``ChannelGate.mlp.1 / .3`` -> ``mlp.0 / .2``; ``SpatialGate.spatial.conv / .bn``
-> ``spatial.0 / .1``.

Dropped (the release never uses them in its forward): the dead ImageNet Swin-S ``backbone.*``,
the class predictor and criterion of ``backbon.``, the task Swins' ``patch_embed`` and their
constant ``relative_position_index`` buffers, ``fpn_convs.1`` / ``.2`` (computed, discarded),
``gaaf*.conv2`` / ``conv3``, ``spf_modules.3`` (the same module as ``.2``, registered twice),
the last SRM's ``dep_conv`` / ``b2`` (its refined feature feeds nothing), and the loose
scalars ``log_var_list``, ``skip_gate``, ``lambda_param``, ``alpha_param``.

Folded: the biases of the SRM convs, which mtcp does not have: ``BN(Wx + b)`` with running mean
``m`` equals ``BN(Wx)`` with running mean ``m - b`` (exact in eval; in training BatchNorm
subtracts the batch mean, so the bias never mattered).

Filled: PASCAL's human-parts and saliency deep-supervision heads have one conv before their
BatchNorm, mtcp's two; the first gets the identity (the same function).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mtcp.errors import MtcpError
from mtcp.models.weights import strip_wrappers

RELEASE_TASKS: dict[str, tuple[str, str, str]] = {
    "nyud": ("semseg", "depth", "normals"),
    "pascal": ("semseg", "human_parts", "sal"),
}
_FPN = {
    "nyud": ("fpn_semseg", "fpn_depth", "fpn_normal"),
    "pascal": ("fpn_semseg", "fpn_human", "fpn_normal"),
}
_HEAD = {
    "nyud": ("project_semseg", "project_depth", "project_normals"),
    "pascal": ("project_semseg", "project_human", "project_sal"),
}
#: the last conv of each release head: its output width is the task's channel count
_HEAD_OUT = {"project_depth": "4"}
AUX_MODULES = ("sem_pred_layers", "depth_pred_layers", "normals_pred_layers")
SWIN_MODULES = ("transformer1", "transformer2", "transformer3")
TRACE_MODULES = ("trace_back", "trace_back2", "trace_back3")
CFM_MODULES = ("gaaf", "gaaf2", "gaaf3")
_CFM_PARTS = {
    "cbam_sem": "value.0",
    "cbam_sem_norm": "value.1",
    "gate1": "gates.0",
    "gate2": "gates.1",
    "conv1": "fuse.0",
    "cbam_dep": "query.0",
    "cbam_dep_norm": "query.1",
    "cbam_dep2": "key.0",
    "cbam_dep2_norm": "key.1",
    "shared_dep2": "out.0",
    "shared_dep2_norm": "out.1",
}
_CBAM_PARTS = (
    ("ChannelGate.mlp.1.", "mlp.0."),
    ("ChannelGate.mlp.3.", "mlp.2."),
    ("SpatialGate.spatial.conv.", "spatial.0."),
    ("SpatialGate.spatial.bn.", "spatial.1."),
)
_SRM = {"0": "srm3", "1": "srm2", "2": "srm1"}
LOOSE_SCALARS = ("log_var_list", "skip_gate", "lambda_param", "alpha_param")


@dataclass
class ReleaseConversion:
    """What :func:`convert_release_state` produced and what it did with every release key.

    Attributes:
        state: the state dict in mtcp_paper's names (Swin keys in the checkpoint's own
            transformers naming; :func:`mtcp.models.weights.load_state` renames them).
        dataset: ``"nyud"`` or ``"pascal"``.
        tasks: ``{task: channels}`` in the release's order.
        mapped: ``(release key, mtcp key)`` pairs copied as they are.
        dropped: ``(release key, reason)``.
        folded: ``(release bias key, mtcp running-mean key)``.
        filled: ``(mtcp key, what it holds)`` for weights the release does not have.
    """

    state: dict[str, Tensor]
    dataset: str
    tasks: dict[str, int]
    mapped: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    folded: list[tuple[str, str]] = field(default_factory=list)
    filled: list[tuple[str, str]] = field(default_factory=list)


def release_dataset(state: Mapping[str, Tensor]) -> str:
    """``"nyud"`` or ``"pascal"`` for a release state dict (``module.`` prefix allowed)."""
    keys = strip_wrappers(state)
    for dataset, fpns in _FPN.items():
        if f"{fpns[1]}.lateral_convs.0.weight" in keys:
            return dataset
    raise MtcpError(
        "not a checkpoint of the MT-CP release: none of "
        + ", ".join(f"{f[1]}.lateral_convs.0.weight" for f in _FPN.values())
        + " is in it"
    )


def release_tasks(state: Mapping[str, Tensor]) -> dict[str, int]:
    """``{task: channels}`` of a release state dict, read from its final heads."""
    keys = strip_wrappers(state)
    dataset = release_dataset(keys)
    tasks = {}
    for task, head in zip(RELEASE_TASKS[dataset], _HEAD[dataset]):
        key = f"{head}.{_HEAD_OUT.get(head, '3')}.weight"
        if key not in keys:
            raise MtcpError(f"release checkpoint has no {key!r} (the {task} head's last conv)")
        tasks[task] = int(keys[key].shape[0])
    return tasks


def _cbam(rest: str) -> str | None:
    for old, new in _CBAM_PARTS:
        if rest.startswith(old):
            return new + rest[len(old) :]
    return None


class _Mapper:
    """Places one release key at a time; unplaced keys are collected."""

    def __init__(self, state: dict[str, Tensor], dataset: str) -> None:
        self.src = state
        self.dataset = dataset
        self.tasks = RELEASE_TASKS[dataset]
        self.out = ReleaseConversion({}, dataset, {})
        self.unplaced: list[str] = []
        self.biases: dict[str, str] = {}  # SRM conv bias -> the BN it folds into

    def map(self, src: str, dst: str) -> None:
        self.out.state[dst] = self.src[src]
        self.out.mapped.append((src, dst))

    def drop(self, src: str, reason: str) -> None:
        self.out.dropped.append((src, reason))

    def place(self, key: str) -> None:
        module, _, rest = key.partition(".")
        if module in LOOSE_SCALARS:
            return self.drop(key, "loose scalar, unused in forward")
        if module == "backbone":
            return self.drop(key, "dead ImageNet Swin-S, never called")
        if module == "backbon":
            if rest.startswith("model."):
                return self.map(key, "backbone." + rest)
            return self.drop(key, "Mask2Former class predictor / criterion, unused")
        for table, handler in (
            (SWIN_MODULES, self._swin),
            (_FPN[self.dataset], self._fpn),
            (CFM_MODULES, self._cfm),
            (TRACE_MODULES, self._trace),
            (_HEAD[self.dataset], self._head),
            (AUX_MODULES, self._aux),
        ):
            if module in table:
                task = self.tasks[table.index(module)]
                if handler(key, task, rest) is not False:
                    return None
        self.unplaced.append(key)
        return None

    def _swin(self, key: str, task: str, rest: str) -> bool:
        base = f"decoders.{task}."
        if rest.startswith("patch_embed."):
            self.drop(key, "task Swin patch embedding, bypassed by the release")
        elif rest.endswith("relative_position_index"):
            self.drop(key, "constant index buffer, rebuilt by timm")
        elif m := re.fullmatch(r"layers\.(\d)\.blocks\.(\d+)\.(.+)", rest):
            self.map(key, f"{base}stages.{m[1]}.blocks.{m[2]}.{m[3]}")
        elif m := re.fullmatch(r"layers\.(\d)\.downsample\.(.+)", rest):
            self.map(key, f"{base}stages.{int(m[1]) + 1}.downsample.{m[2]}")
        elif m := re.fullmatch(r"norm(\d)\.(weight|bias)", rest):
            self.map(key, f"{base}norms.{m[1]}.{m[2]}")
        else:
            return False
        return True

    def _fpn(self, key: str, task: str, rest: str) -> bool:
        base = f"decoders.{task}.fpn."
        if m := re.fullmatch(r"lateral_convs\.(\d)\.(weight|bias)", rest):
            self.map(key, f"{base}laterals.{m[1]}.{m[2]}")
        elif m := re.fullmatch(r"fpn_convs\.0\.(weight|bias)", rest):
            self.map(key, f"{base}output.{m[1]}")
        elif re.fullmatch(r"fpn_convs\.[12]\.(weight|bias)", rest):
            self.drop(key, "coarser FPN output, computed and discarded")
        else:
            return False
        return True

    def _cfm(self, key: str, task: str, rest: str) -> bool:
        part, _, inner = rest.partition(".")
        if part in ("conv2", "conv3"):
            self.drop(key, "CFM conv never called")
            return True
        if part not in _CFM_PARTS:
            return False
        dst = _CFM_PARTS[part]
        if part.startswith(("cbam", "shared")) and not part.endswith("_norm"):
            inner = _cbam(inner)  # type: ignore[assignment]
            if inner is None:
                return False
        self.map(key, f"cfm.{task}.{dst}.{inner}")
        return True

    def _trace(self, key: str, task: str, rest: str) -> bool:
        m = re.fullmatch(r"spf_modules\.(\d)\.([a-z0-9_]+)\.(.+)", rest)
        if m is None:
            return False
        index, part, inner = m.groups()
        if index == "3":
            self.drop(key, "spf_modules.3 is spf_modules.2 registered twice")
            return True
        if index not in _SRM:
            return False
        base = f"traceback.{task}.{_SRM[index]}."
        last = index == "2"
        if part in ("sem_cbam", "dep_cbam"):
            inner = _cbam(inner)  # type: ignore[assignment]
            if inner is None:
                return False
            self.map(key, base + ("cbam_in." if part == "sem_cbam" else "cbam_feat.") + inner)
        elif last and part in ("dep_conv", "b2"):
            self.drop(key, "last SRM's refined feature, feeds nothing")
        elif part in ("sem_conv", "dep_conv"):
            out = "predict" if part == "sem_conv" else "refine"
            if inner == "weight":
                self.map(key, f"{base}{out}.0.weight")
            elif inner == "bias":
                self.biases[key] = f"{base}{out}.1.running_mean"
            else:
                return False
        elif part in ("b1", "b2"):
            self.map(key, f"{base}{'predict' if part == 'b1' else 'refine'}.1.{inner}")
        else:
            return False
        return True

    def _head(self, key: str, task: str, rest: str) -> bool:
        index, _, inner = rest.partition(".")
        base = f"heads.{task}."
        if task == "depth" and self.dataset == "nyud":  # ReleaseDepthHead: the same indices
            if index in ("0", "2", "4"):
                self.map(key, base + rest)
                return True
            return False
        dst = {"0": "0.0", "1": "0.1", "3": "1"}.get(index)
        if dst is None:
            return False
        self.map(key, f"{base}{dst}.{inner}")
        return True

    def _aux(self, key: str, task: str, rest: str) -> bool:
        m = re.fullmatch(r"([01])\.module\.(\d)\.(.+)", rest)
        if m is None:
            return False
        head, index, inner = m.groups()
        two_convs = f"{key.split('.')[0]}.{head}.module.4.weight" in self.src
        table = (
            {"0": "0", "1": "1.0", "2": "1.1", "4": "2"}
            if two_convs
            else {
                "0": "1.0",
                "1": "1.1",
                "3": "2",
            }
        )
        if index not in table:
            return False
        dst = f"aux_heads.{task}.{head}.{table[index]}.{inner}"
        self.map(key, dst)
        if not two_convs and index == "0":  # mtcp's first conv: the identity
            width = self.src[key].shape[1]
            eye = torch.eye(width, dtype=self.src[key].dtype).view(width, width, 1, 1)
            ident = f"aux_heads.{task}.{head}.0.weight"
            self.out.state[ident] = eye
            self.out.filled.append((ident, "identity (the release has one conv here)"))
        return True

    def fold(self) -> None:
        for bias_key, mean_key in self.biases.items():
            if mean_key not in self.out.state:
                self.unplaced.append(bias_key)  # its BatchNorm is missing: cannot fold
                continue
            folded = self.out.state[mean_key] - self.src[bias_key]
            self.out.state[mean_key] = folded
            self.out.folded.append((bias_key, mean_key))


def convert_release_state(state: Mapping[str, Tensor]) -> ReleaseConversion:
    """Map a release state dict (plain or ``module.``-prefixed) onto ``mtcp_paper``'s names.

    Pure: no file is read, the input is not modified. Raises :class:`MtcpError` naming every
    key it cannot place. Completeness (every mtcp weight present, shapes) is checked when the
    result is loaded with :func:`mtcp.models.weights.load_state`.
    """
    src = strip_wrappers(state)
    dataset = release_dataset(src)
    mapper = _Mapper(src, dataset)
    mapper.out.tasks = release_tasks(src)
    for key in src:
        mapper.place(key)
    mapper.fold()
    if mapper.unplaced:
        shown = ", ".join(mapper.unplaced[:10])
        more = f" ... ({len(mapper.unplaced) - 10} more)" if len(mapper.unplaced) > 10 else ""
        raise MtcpError(
            f"{len(mapper.unplaced)} key(s) of the release checkpoint have no place in "
            f"mtcp_paper ({dataset}): {shown}{more}"
        )
    return mapper.out
