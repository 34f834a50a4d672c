"""The report's verdict sections: each claim with its effect and interval, and convergence.

Markdown lines for :mod:`.report`, from :func:`mtcp.experiment.aggregate.judge` verdicts and
:func:`mtcp.experiment.aggregate.flattening`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mtcp.experiment import aggregate as agg
from mtcp.experiment import stats
from mtcp.experiment.study import Study
from mtcp.experiment.tables import decimals, label_of, markdown_table


def _num(value: float | None, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:{'+' if sign else ''}.{decimals(value)}f}"


def _verdict_line(v: agg.Verdict) -> str:
    c = v.claim
    unit = label_of(c.metric)
    if v.comparison is None:
        return f"- **{c.text}** — {agg.NOT_RUN} (`{c.better}` or `{c.than}` has no result)."
    r = v.comparison
    relative = "" if r.relative is None else f" ({r.relative:+.1f} % of `{c.than}`)"
    return (
        f"- **{c.text}** — **{v.outcome}**: {unit} `{c.better}` {_num(r.better_mean)} vs "
        f"`{c.than}` {_num(r.than_mean)}; effect in the claim's favour "
        f"{_num(r.effect, True)}{relative}, 95 % interval [{_num(r.low, True)}, "
        f"{_num(r.high, True)}]; {r.seeds} seed(s) × {r.images} images."
    )


def claim_lines(verdicts: Sequence[agg.Verdict]) -> list[str]:
    """The claims section: the rule, one line per claim, and the tally."""
    lines = [
        "Each claim is judged by a paired hierarchical bootstrap over seeds and test images "
        f"({stats.N_BOOT} resamples: draw the seeds with replacement, then the test images "
        "with replacement within each drawn seed; every configuration is scored on the same "
        "draws). The effect is the mean over seeds of the per-seed difference of the image "
        "means, signed so that positive favours the claim (for Δm: the difference of the Δm "
        "against the reference of the same seed; for the worst-task Δm: of the lowest task "
        "term). A claim **holds** when the 95 % interval of the effect lies above 0, **does "
        "not hold** when it lies below 0 and is **inconclusive** otherwise, and always with "
        f"fewer than {agg.MIN_SEEDS} seeds. Values here are image means (each test image "
        "weighs the same), so they differ slightly from the pooled metrics of the tables.",
        "",
        *(_verdict_line(v) for v in verdicts),
        "",
    ]
    counts = {o: sum(v.outcome == o for v in verdicts) for o in (agg.HOLDS, agg.FAILS)}
    counts[agg.INCONCLUSIVE] = sum(v.outcome == agg.INCONCLUSIVE for v in verdicts)
    counts[agg.NOT_RUN] = sum(v.outcome == agg.NOT_RUN for v in verdicts)
    lines.append(
        f"At this scale, {counts[agg.HOLDS]} of {len(verdicts)} claims hold, "
        f"{counts[agg.FAILS]} do not hold, {counts[agg.INCONCLUSIVE]} are inconclusive"
        + (f" and {counts[agg.NOT_RUN]} were not run." if counts[agg.NOT_RUN] else ".")
    )
    return lines


def convergence_lines(study: Study, results: Mapping[str, Mapping[int, Any]]) -> list[str]:
    """Whether every run's validation curve flattened (:func:`agg.flattening`)."""
    rows, flat, runs = [], 0, 0
    for name, conf in study.configurations.items():
        if conf.refine_of is not None or name not in results:
            continue
        changes = {s: agg.flattening(r) for s, r in sorted(results[name].items())}
        known = [c for c in changes.values() if c is not None]
        runs += len(known)
        flat += sum(c < agg.FLAT_TOLERANCE for c in known)
        cells = [f"{100 * c:.2f}" if c is not None else "–" for c in changes.values()]
        worst = max(known) if known else None
        verdict = "–" if worst is None else "yes" if worst < agg.FLAT_TOLERANCE else "**no**"
        rows.append([f"`{name}`", ", ".join(cells), verdict])
    tol = 100 * agg.FLAT_TOLERANCE
    return [
        "Relative change of `val/gm_error` over the last fifth of each model's training "
        f"epochs (|g_E − g_(E−k)| / g_(E−k), k = E/5), in % per seed; flattened when below "
        f"{tol:g} % in every seed (the curves plots show `val/gm_error`, last fifth shaded). "
        f"{flat} of {runs} runs flattened.",
        "",
        *markdown_table(["configuration", "change over the last fifth (%)", "flattened"], rows),
        "",
    ]
