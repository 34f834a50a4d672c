"""Loss-weighting schemes: LPS per SPEC §4, the comparison schemes, state and NaN handling."""

from __future__ import annotations

import io
import math
import random

import pytest
import torch

from mtcp.errors import MtcpError
from mtcp.losses import WEIGHTINGS, LPSWeighting, create_weighting
from mtcp.losses.weighting.lps import clamp_to_sum

TASKS = ["semseg", "depth", "normals"]


def _losses(values, grad: bool = False) -> dict[str, torch.Tensor]:
    return {t: torch.tensor(float(v), requires_grad=grad) for t, v in zip(TASKS, values)}


def _feed(scheme, steps) -> list[torch.Tensor]:
    """One optimizer step per entry of ``steps`` (per-task losses); returns the totals."""
    totals = []
    for values in steps:
        totals.append(scheme(_losses(values)))
        scheme.step_end()
    return totals


def _from_log(*projected: float) -> list[float]:
    """Losses whose log projection log(1 + L) equals ``projected``."""
    return [math.expm1(a) for a in projected]


# ℓ per step; window 0 means (0.8, 0.5, 0.3), window 1 means (0.4, 0.45, 0.15)
HAND_STEPS = [
    _from_log(1.0, 0.5, 0.4),
    _from_log(0.6, 0.5, 0.2),
    _from_log(0.5, 0.4, 0.1),
    _from_log(0.3, 0.5, 0.2),
]


@pytest.mark.parametrize("window", [2, "epoch"])
def test_lps_matches_hand_computed_weights(window) -> None:
    # ℓ̄ = 1.6 then 1.0 → overall ratio 0.625; task ratios 0.5, 0.9, 0.5
    # r = 0.5/0.625, 0.9/0.625, 0.5/0.625 = 0.8, 1.44, 0.8; mean r = 3.04/3
    # s = 1: p = 1 + r − mean r = 0.78667, 1.42667, 0.78667 (sum 3, inside [0.1, 3])
    scheme = LPSWeighting(TASKS, spread=1.0, window=window)
    for half in (HAND_STEPS[:2], HAND_STEPS[2:]):
        _feed(scheme, half)
        if window == "epoch":
            scheme.epoch_end()
    first, second = scheme.history
    assert first["r"] is None and first["w"] == dict.fromkeys(TASKS, 1.0)
    torch.testing.assert_close(list(first["lbar"].values()), [0.8, 0.5, 0.3])
    torch.testing.assert_close(list(second["lbar"].values()), [0.4, 0.45, 0.15])
    torch.testing.assert_close(list(second["r"].values()), [0.8, 1.44, 0.8])
    mean_r = 3.04 / 3
    expected = [1 + 0.8 - mean_r, 1 + 1.44 - mean_r, 1 + 0.8 - mean_r]
    torch.testing.assert_close(list(scheme.weights.values()), expected, rtol=0, atol=1e-6)

    # s = 7.5: p = 1 + 7.5·(−0.21333) = −0.6 → 0.1 and 1 + 7.5·0.42667 = 4.2 → 3;
    # 0.1 + 3 + 0.1 = 3.2 > 3, so the unpinned task shrinks to 3 − 0.2 = 2.8
    scheme = LPSWeighting(TASKS, spread=7.5, w_min=0.1, w_max=3.0, window=2)
    _feed(scheme, HAND_STEPS)
    torch.testing.assert_close(list(scheme.weights.values()), [0.1, 2.8, 0.1], rtol=0, atol=1e-6)


def test_lps_weights_apply_only_from_the_next_window() -> None:
    scheme = LPSWeighting(TASKS, spread=1.0, window=2)
    totals = _feed(scheme, HAND_STEPS)
    # windows 0 and 1 both use w = 1: the total is Σ ℓ_t
    for values, total in zip(HAND_STEPS, totals):
        torch.testing.assert_close(total.item(), sum(math.log1p(v) for v in values))


def test_lps_gradient_is_weight_over_one_plus_loss() -> None:
    scheme = LPSWeighting(TASKS, spread=7.5, window=2)
    _feed(scheme, HAND_STEPS)
    w = scheme.weights
    assert len(set(w.values())) > 1  # non-trivial weights
    losses = _losses([0.7, 2.5, 0.05], grad=True)
    scheme(losses).backward()
    for t, loss in losses.items():
        torch.testing.assert_close(loss.grad.item(), w[t] / (1 + loss.item()))


def test_lps_prioritises_the_slowest_falling_task() -> None:
    rates = {"semseg": 0.9, "depth": 0.7, "normals": 0.5}  # semseg falls slowest
    scheme = LPSWeighting(TASKS, spread=2.0, window=1)
    _feed(scheme, [[2.0 * rates[t] ** k for t in TASKS] for k in range(6)])
    updates = [h for h in scheme.history if h["r"] is not None]
    assert len(updates) == 5
    for h in updates:
        assert max(h["w"], key=h["w"].get) == "semseg"
        assert min(h["w"], key=h["w"].get) == "normals"
        assert h["r"]["semseg"] > 1 > h["r"]["normals"]


def _random_steps(n: int, k: int = 3, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(0.01, 3.0) for _ in range(k)] for _ in range(n)]


def test_lps_spread_zero_gives_equal_weights() -> None:
    scheme = LPSWeighting(TASKS, spread=0.0, window=2)
    _feed(scheme, _random_steps(12))
    assert len(scheme.history) == 6
    for h in scheme.history:
        assert h["w"] == pytest.approx(dict.fromkeys(TASKS, 1.0), abs=1e-12)


def test_lps_weights_stay_in_bounds_and_sum_to_total() -> None:
    tasks = ["semseg", "depth", "normals", "edge"]
    scheme = LPSWeighting(tasks, spread=50.0, w_min=0.2, w_max=1.5, total=4.0, window=1)
    for values in _random_steps(30, k=4, seed=1):
        scheme(dict(zip(tasks, map(torch.tensor, values))))
        scheme.step_end()
    pinned = 0
    for h in scheme.history:
        w = list(h["w"].values())
        assert all(0.2 - 1e-12 <= x <= 1.5 + 1e-12 for x in w)
        assert sum(w) == pytest.approx(4.0, abs=1e-9)
        pinned += sum(math.isclose(x, 0.2) or math.isclose(x, 1.5) for x in w)
    assert pinned > 0  # the bounds were really exercised


def test_clamp_to_sum_keeps_bounds_and_total() -> None:
    rng = random.Random(2)
    for _ in range(200):
        k = rng.randint(2, 6)
        lo, hi = rng.uniform(0.0, 0.9), rng.uniform(1.1, 4.0)
        p = [rng.uniform(-5, 8) for _ in range(k)]
        w = clamp_to_sum(p, lo, hi, float(k))
        assert sum(w) == pytest.approx(k, abs=1e-9)
        assert all(lo - 1e-12 <= x <= hi + 1e-12 for x in w)
        # order of the raw priorities is preserved
        for i in range(k):
            for j in range(k):
                if p[i] > p[j]:
                    assert w[i] >= w[j] - 1e-12


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", ["lps", "dwa", "uncertainty", "logsum"])
def test_save_and_restore_mid_run_continues_bit_identically(name) -> None:
    steps = _random_steps(20, seed=3)
    kwargs = {"window": 3}
    reference = create_weighting(name, TASKS, **kwargs)
    ref_totals = _feed(reference, steps)

    first = create_weighting(name, TASKS, **kwargs)
    totals = _feed(first, steps[:7])  # mid-window: window 2 holds one step
    resumed = create_weighting(name, TASKS, **kwargs)
    resumed.load_state_dict(_roundtrip(first.state_dict()))
    totals += _feed(resumed, steps[7:])

    assert [t.item() for t in totals] == [t.item() for t in ref_totals]
    assert resumed.history == reference.history
    assert resumed.weights == reference.weights
    assert resumed.step == reference.step == 20
    with pytest.raises(MtcpError, match="state is for tasks"):
        create_weighting(name, TASKS[:2], **kwargs).load_state_dict(first.state_dict())
    if name == "lps":
        assert len({round(w, 9) for w in resumed.weights.values()}) > 1


def test_nonfinite_loss_names_task_and_step_and_never_enters_history() -> None:
    scheme = LPSWeighting(TASKS, window=2)
    _feed(scheme, _random_steps(3))
    with pytest.raises(MtcpError, match="'depth'") as err:
        scheme(_losses([0.5, float("nan"), 0.2]))
    assert "'depth'" in str(err.value) and "step 3" in str(err.value)
    assert "semseg" not in str(err.value)

    steps = _random_steps(4, seed=4)
    clean = LPSWeighting(TASKS, window=4)
    _feed(clean, steps)
    skipping = LPSWeighting(TASKS, window=5, on_nonfinite="skip")
    _feed(skipping, steps[:2])
    with pytest.warns(RuntimeWarning, match=r"'normals'.*inf"):
        total = skipping(_losses([0.5, 0.4, float("inf")], grad=True))
    assert skipping.last_step_skipped and total.item() == 0.0
    total.backward()  # still usable in a loop
    skipping.step_end()
    _feed(skipping, steps[2:])
    assert not skipping.last_step_skipped
    # the skipped step is absent: same window mean as the clean 4-step window
    assert skipping.history[0]["lbar"] == pytest.approx(clean.history[0]["lbar"], abs=1e-15)


def test_eval_mode_does_not_record() -> None:
    scheme = LPSWeighting(TASKS, window=1).eval()
    _feed(scheme, _random_steps(3))
    assert scheme.history == []


def test_equal_fixed_and_logsum_totals_and_gradients() -> None:
    values = [0.5, 2.0, 0.25]
    losses = _losses(values, grad=True)
    total = create_weighting("equal", TASKS)(losses)
    torch.testing.assert_close(total.item(), sum(values))

    w = {"semseg": 1.0, "depth": 0.5, "normals": 4.0}
    losses = _losses(values, grad=True)
    create_weighting("fixed", TASKS, weights=w)(losses).backward()
    assert [losses[t].grad.item() for t in TASKS] == [w[t] for t in TASKS]
    with pytest.raises(MtcpError, match="normals"):
        create_weighting("fixed", TASKS, weights={"semseg": 1.0, "depth": 1.0})
    with pytest.raises(MtcpError, match="one weight per task"):
        create_weighting("fixed", TASKS)

    losses = _losses(values, grad=True)
    scheme = create_weighting("logsum", TASKS)
    total = scheme(losses)
    torch.testing.assert_close(total.item(), sum(math.log(v) for v in values))
    total.backward()
    for t, v in zip(TASKS, values):
        torch.testing.assert_close(losses[t].grad.item(), 1 / v)
        torch.testing.assert_close(scheme.weights[t], 1 / v)


def test_uncertainty_forms_for_regression_and_classification() -> None:
    scheme = create_weighting("uncertainty", TASKS)
    with torch.no_grad():
        scheme.log_vars.copy_(torch.tensor([0.3, -0.2, 0.7]))
    values = [0.5, 2.0, 0.25]
    total = scheme(_losses(values))
    s = [0.3, -0.2, 0.7]
    # semseg (classification): e^{−s} L + s/2; depth, normals (regression): ½ e^{−s} L + s/2
    expected = (
        math.exp(-s[0]) * values[0]
        + 0.5 * math.exp(-s[1]) * values[1]
        + 0.5 * math.exp(-s[2]) * values[2]
        + 0.5 * sum(s)
    )
    torch.testing.assert_close(total.item(), expected)
    total.backward()
    grads = scheme.log_vars.grad.tolist()
    torch.testing.assert_close(grads[0], -math.exp(-s[0]) * values[0] + 0.5)
    torch.testing.assert_close(scheme.weights["depth"], 0.5 * math.exp(0.2))
    assert "log_vars" in scheme.state_dict()


def test_dwa_equal_for_two_epochs_then_softmax_of_ratios() -> None:
    scheme = create_weighting("dwa", TASKS)
    epochs = [[2.0, 1.0, 4.0], [1.0, 0.9, 3.0], [0.8, 0.8, 2.0]]
    for values in epochs:
        assert scheme.weights == dict.fromkeys(TASKS, 1.0)
        _feed(scheme, [values])
        scheme.epoch_end()
        if scheme.epoch == 2:
            break
    r = [1.0 / 2.0, 0.9 / 1.0, 3.0 / 4.0]
    e = [math.exp(x / 2.0) for x in r]
    expected = [3 * x / sum(e) for x in e]
    torch.testing.assert_close(list(scheme.weights.values()), expected)
    losses = _losses(epochs[2], grad=True)
    scheme(losses).backward()
    torch.testing.assert_close([losses[t].grad.item() for t in TASKS], expected)


def test_create_weighting_rejects_unknown_names_and_options() -> None:
    assert set(WEIGHTINGS) == {"equal", "fixed", "uncertainty", "dwa", "logsum", "lps"}
    with pytest.raises(MtcpError, match="choose from"):
        create_weighting("gradnorm", TASKS)
    with pytest.raises(MtcpError, match="temperature"):
        create_weighting("lps", TASKS, temperature=2.0)
    with pytest.raises(MtcpError, match="w_min"):
        create_weighting("lps", TASKS, w_min=1.5)
    with pytest.raises(MtcpError, match="window"):
        create_weighting("equal", TASKS, window=0)
    with pytest.raises(MtcpError, match="missing"):
        create_weighting("equal", TASKS)({"depth": torch.tensor(1.0)})
