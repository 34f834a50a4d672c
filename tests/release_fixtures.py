"""Random state dicts in the layout of the MT-CP release, from the shared key list."""

from __future__ import annotations

import json
from pathlib import Path

import torch

#: key names and shapes of the release's NYUD model as its training script saves them with
#: transformers 4.46.3 (a copy of the project's shared/data/release_nyud_state_dict.json)
KEY_LIST = Path(__file__).parent / "data" / "release_nyud_state_dict.json"


def key_list() -> list[tuple[str, list[int]]]:
    return [(k, s) for k, s in json.loads(KEY_LIST.read_text())["keys"]]


def random_release_nyud(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key of the release's NYUD model with random values; BatchNorm variances
    positive, counters and index buffers integer."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in key_list():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("relative_position_index"):
            state[key] = torch.randint(0, 169, shape, generator=gen)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    return state


def _one_conv_aux(state, name, out_channels, gen):
    """PASCAL's HumanPred / SalPred: Conv(no bias) -> BN -> ReLU -> Conv."""
    for i in (0, 1):
        old = f"{name}.{i}.module."
        del state[old + "1.weight"], state[old + "4.weight"], state[old + "4.bias"]
        for part in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            state[f"{old}1.{part}"] = state.pop(f"{old}2.{part}")
        state[old + "3.weight"] = torch.randn(out_channels, 256, 1, 1, generator=gen) * 0.05
        state[old + "3.bias"] = torch.randn(out_channels, generator=gen) * 0.05


def random_release_pascal(seed: int = 0) -> dict[str, torch.Tensor]:
    """The PASCAL model (semseg 21, human_parts 7, sal 1) built from the NYUD key list by the
    differences of the release's ``MultiTaskModel_PASCAL``: FPN and head names, heads and the
    human-parts / saliency deep-supervision heads with one conv."""
    gen = torch.Generator().manual_seed(seed + 1)
    nyud = random_release_nyud(seed)
    state = {}
    for key, value in nyud.items():
        if key.startswith(("log_var_list", "skip_gate", "lambda_param", "alpha_param")):
            continue  # not defined in the PASCAL model
        if key.startswith("project_"):
            continue  # rebuilt below
        key = key.replace("fpn_depth.", "fpn_human.")
        state[key] = value
    prefix = "project_semseg."
    head = {k[len(prefix) :]: v for k, v in nyud.items() if k.startswith(prefix)}
    for name, channels in (("project_semseg", 21), ("project_human", 7), ("project_sal", 1)):
        for part, value in head.items():
            if part.startswith(("0.", "1.")):
                state[f"{name}.{part}"] = value.clone()
        state[f"{name}.3.weight"] = torch.randn(channels, 256, 1, 1, generator=gen) * 0.05
        state[f"{name}.3.bias"] = torch.randn(channels, generator=gen) * 0.05
    for i in (0, 1):
        state[f"sem_pred_layers.{i}.module.4.weight"] = torch.randn(21, 256, 1, 1, generator=gen)
        state[f"sem_pred_layers.{i}.module.4.bias"] = torch.randn(21, generator=gen)
    _one_conv_aux(state, "depth_pred_layers", 7, gen)
    _one_conv_aux(state, "normals_pred_layers", 1, gen)
    return state
