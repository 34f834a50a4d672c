"""`mtcp experiment`: study files, the claim rule, and the --quick study end to end."""

from __future__ import annotations

import itertools
import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mtcp.cli import main
from mtcp.errors import MtcpError
from mtcp.experiment import aggregate as agg
from mtcp.experiment import run_study, write_report
from mtcp.experiment.runner import read_curves
from mtcp.experiment.study import Claim, load_study
from mtcp.metrics import delta_m
from mtcp.metrics.per_image import per_image_keys
from mtcp.tasks import get_task

STUDY = "synthetic_ablation"


def _table(markdown: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table after ``heading``."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    block = itertools.takewhile(lambda ln: ln.startswith("|"), lines[start:])
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in block]
    return rows[0], rows[2:]


def _mean(cell: str) -> float:
    return float(cell.split("±")[0])


def test_quick_study_writes_results_report_and_resumes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["experiment", STUDY, "--quick", "--out", str(out)]) == 0
    study = load_study(STUDY).quick_variant()
    names = list(study.configurations)
    results = {n: json.loads((out / "results" / n / "seed_0.json").read_text()) for n in names}
    tasks = study.tasks
    for result in results.values():
        assert result["steps"] > 0 and result["train_seconds"] > 0 and result["params"] > 0
        for task in tasks:
            assert math.isfinite(result["metrics"][task][get_task(task).main_metric])
        assert result["curves"] and result["curves"][0]["epochs"][0]["train_loss"]
    assert len(results["single_task"]["curves"]) == len(tasks)  # one model per task
    # per-image values of every claim key, one per test image, kept for re-judging
    for result in results.values():
        assert {len(v) for v in result["per_image"].values()} == {study.test_scenes}
        assert set(result["per_image"]) == set(per_image_keys(tasks))
    # the refined configuration: the parent's models and training, refined test maps
    refined, parent = results["mtcp_lps_refined"], results["mtcp_lps"]
    assert refined["refine_of"] == "mtcp_lps" and refined["steps"] == parent["steps"]
    assert refined["params"] == parent["params"] and refined["eval_seconds"] > 0
    coherence = [r["metrics"]["coherence"]["depth_normal_mean"] for r in (refined, parent)]
    assert coherence[0] < coherence[1]
    assert refined["metrics"]["semseg"] == parent["metrics"]["semseg"]  # only depth, normals
    # the consistency terms were weighted like tasks
    weights = results["mtcp_consistency"]["weights_history"][-1]["w"]
    assert {"depth_normal", "semantic_edge"} <= set(weights)
    # LPS updates every step in the quick study: one weight record per step, up to the last
    lps = results["mtcp_lps"]
    assert [r["step"] for r in lps["weights_history"]] == list(range(1, lps["steps"] + 1))
    assert results["single_task"]["weights_history"] is None

    report = (out / "EXPERIMENTS.md").read_text()
    header, rows = _table(report, "## Results")
    assert header[0] == "configuration" and header[-1] == "seeds"
    assert [re.search(r"\(`(\w+)`\)", r[0]).group(1) for r in rows] == names
    reference = results[study.reference]["metrics"]
    for row in rows:
        name = re.search(r"\(`(\w+)`\)", row[0]).group(1)
        metrics = results[name]["metrics"]
        cells = dict(zip(header, row))
        # every number is finite and is the value stored in the JSON (rounded as shown)
        for cell in row[1:]:
            assert math.isfinite(_mean(cell)), (name, cell)
        expected = {
            "Δm (%) ↑": delta_m(metrics, reference, tasks=tasks),
            "semseg/mIoU ↑": metrics["semseg"]["mIoU"],
            "depth/rmse ↓": metrics["depth"]["rmse"],
            "normals/mean ↓": metrics["normals"]["mean"],
            "edge/odsF ↑": metrics["edge"]["odsF"],
            "depth–normal coherence (°) ↓": metrics["coherence"]["depth_normal_mean"],
            "boundary coherence F ↑": metrics["coherence"]["boundary_F"],
            "parameters (M) ↓": results[name]["params"] / 1e6,
            "train time (s) ↓": results[name]["train_seconds"],
        }
        for column, value in expected.items():
            shown = cells[column]
            places = len(shown.split(".")[1]) if "." in shown else 0
            assert _mean(shown) == pytest.approx(value, abs=0.51 * 10**-places), (name, column)
        assert cells["seeds"] == "1"
    assert "## Which claims hold at this scale" in report
    assert "## Did training converge?" in report
    assert re.search(
        r"95 % interval \[[-+]?[\d.–]+, [-+]?[\d.–]+\]; 1 seed\(s\) × 8 images", report
    )
    assert re.search(r"At this scale, \d+ of \d+ claims hold", report)
    for plot in ("curves_architecture.png", "loss_weights.png"):
        assert (out / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{plot}" in report

    # --report-only reproduces the report byte for byte; a second run skips every finished run
    (out / "EXPERIMENTS.md").unlink()
    assert main(["experiment", STUDY, "--quick", "--out", str(out), "--report-only"]) == 0
    assert (out / "EXPERIMENTS.md").read_text() == report
    # sections written by hand below the marker survive a rewrite
    from mtcp.experiment.report import HAND_WRITTEN

    notes = f"{HAND_WRITTEN}\n\n## Notes by hand\n\nkept\n"
    (out / "EXPERIMENTS.md").write_text(report + "\n" + notes)
    assert main(["experiment", STUDY, "--quick", "--out", str(out), "--report-only"]) == 0
    assert (out / "EXPERIMENTS.md").read_text() == report.rstrip("\n") + "\n\n" + notes
    (out / "EXPERIMENTS.md").write_text(report)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")}
    capsys.readouterr()
    assert main(["experiment", STUDY, "--quick", "--out", str(out)]) == 0
    trained = [n for n in names if study.configurations[n].refine_of is None]
    assert capsys.readouterr().out.count("done before, skipped") == len(trained)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # results of another source version are not mixed in
    path = out / "results" / "hps" / "seed_0.json"
    stored = json.loads(path.read_text())
    stored["environment"]["mtcp_source"] = "0123456789ab"
    path.write_text(json.dumps(stored))
    with pytest.raises(MtcpError, match="one source version"):
        run_study(study, out)
    with pytest.raises(MtcpError, match="2 mtcp source versions"):
        write_report(study, out, out / "EXPERIMENTS.md", "cmd")


def _results(shifts: dict[str, float], seeds=(0, 1, 2), images: int = 40) -> dict:
    """Result files with per-image values only: configuration ``x`` scores ``base + shift``."""
    rng = np.random.default_rng(0)
    base = {
        "semseg/mIoU": rng.uniform(0.3, 0.6, (len(seeds), images)),
        "depth/rmse": rng.uniform(0.5, 1.5, (len(seeds), images)),
        "normals/mean": rng.uniform(20, 40, (len(seeds), images)),
        "edge/odsF": rng.uniform(0.3, 0.6, (len(seeds), images)),
        "coherence/depth_normal_mean": rng.uniform(30, 50, (len(seeds), images)),
        "coherence/boundary_F": rng.uniform(0.1, 0.3, (len(seeds), images)),
    }
    out: dict = {}
    for name, shift in shifts.items():
        for i, seed in enumerate(seeds):
            noise = np.random.default_rng(100 + i).normal(0, 0.002, images)
            per_image = {k: (v[i] * (1 + shift) + noise).tolist() for k, v in base.items()}
            out.setdefault(name, {})[seed] = {"per_image": per_image}
    return out


def test_claims_are_judged_by_the_bootstrap_on_per_image_values(tmp_path: Path) -> None:
    study = load_study(
        _write(
            tmp_path,
            """
            study: {seeds: [0, 1, 2], reference: ref}
            base: {config: synthetic}
            configurations:
              ref: {overrides: {model.name: stl_tiny}}
              a: {overrides: {}}
              b: {overrides: {model.name: hps_tiny}}
            """,
        )
    )
    results = _results({"ref": 0.0, "a": 0.05, "b": -0.05})
    for metric, better, than, outcome in [
        ("semseg/mIoU", "a", "b", agg.HOLDS),  # 5 % higher in every image
        ("depth/rmse", "a", "b", agg.FAILS),  # 5 % higher, but lower is better
        ("delta_m", "b", "a", agg.INCONCLUSIVE),  # equal gains and losses cancel in Δm
        ("coherence/boundary_F", "a", "a", agg.INCONCLUSIVE),
    ]:
        verdict = agg.judge(Claim("c", metric, better, than), study, results)
        assert verdict.outcome == outcome, (metric, better, than)
        assert (verdict.comparison.seeds, verdict.comparison.images) == (3, 40)
    # worst task: a is 5 % worse than the reference on depth and normals (Δm terms −5)
    worst = agg.judge(Claim("c", "delta_m_worst", "a", "ref"), study, results)
    assert worst.comparison.than_mean == pytest.approx(0.0, abs=1e-9)  # the reference itself
    assert worst.comparison.effect == pytest.approx(-5.0, abs=0.5) and worst.outcome == agg.FAILS
    # seeds that one side lacks are left out; no common seed at all: not run
    partial = {**results, "b": {0: results["b"][0]}}
    one = agg.judge(Claim("c", "semseg/mIoU", "a", "b"), study, partial)
    assert one.outcome == agg.INCONCLUSIVE and one.comparison.seeds == 1
    missing = agg.judge(Claim("c", "semseg/mIoU", "a", "nothing"), study, results)
    assert missing.outcome == agg.NOT_RUN and missing.comparison is None


def test_flattening_measures_the_last_fifth_of_training() -> None:
    def run(values):
        epochs = [{"epoch": i + 1, "val": {"gm_error": v}} for i, v in enumerate(values)]
        return {"curves": [{"tasks": ["depth"], "epochs": epochs}]}

    assert agg.flattening(run([4.0, 3.0, 2.0, 1.5, 1.49, 1.5, 1.5, 1.5, 1.5, 1.5])) == 0.0
    assert agg.flattening(run([2.0] * 8 + [1.0, 0.9])) == pytest.approx(0.55)  # k = 2
    assert agg.flattening(run([1.0])) is None


def test_engine_configs_share_settings_and_split_single_task(tmp_path: Path) -> None:
    study = load_study(STUDY)
    runs = study.engine_configs("single_task", seed=1, root=tmp_path)
    assert [tasks for tasks, _ in runs] == [[t] for t in study.tasks]
    full = study.engine_configs("mtcp_no_cfm", seed=1, root=tmp_path)[0][1]
    for _, cfg in runs:
        assert cfg.model.name == "stl_tiny" and cfg.trainer.seed == 1
        assert cfg.run.root == str(tmp_path)
        assert cfg.data.size == full.data.size and cfg.trainer.max_epochs == full.trainer.max_epochs
    assert full.model.options == {"cfm": False} and full.data.tasks == study.tasks
    # the fingerprint follows what changes results, not where runs write
    assert study.fingerprint("mtcp_lps", 0) == study.fingerprint("mtcp_lps", 0)
    assert study.fingerprint("mtcp_lps", 0) != study.fingerprint("mtcp_lps", 1)
    assert study.fingerprint("mtcp_lps", 0) != study.fingerprint("mtcp_no_cfm", 0)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_study_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    good = """
        study: {seeds: [0], reference: a}
        base: {config: synthetic}
        configurations:
          a: {overrides: {model.name: hps_tiny}}
    """
    assert list(load_study(_write(tmp_path, good)).configurations) == ["a"]
    cases = {
        "unknown key data.sizes": good.replace("model.name: hps_tiny", "data.sizes: 64x96"),
        "unknown configuration 'b'": good + "    claims: [{text: t, metric: delta_m, better: a, "
        "than: b}]\n",
        "study.reference 'x'": good.replace("reference: a", "reference: x"),
    }
    for message, text in cases.items():
        with pytest.raises(MtcpError, match=re.escape(message)) as err:
            load_study(_write(tmp_path, text))
        assert "study.yaml" in str(err.value)
    assert main(["experiment", str(tmp_path / "missing.yaml")]) == 2


def test_read_curves_keeps_training_epochs_only(tmp_path: Path) -> None:
    csv_text = textwrap.dedent(
        """\
        epoch,step,train/loss/depth_epoch,val/depth/rmse,val/loss/depth
        0,9,,0.9,0.5
        0,9,1.5,,
        1,19,,0.7,0.4
        1,19,1.2,,
        2,20,,0.7,0.4
        """
    )
    path = tmp_path / "metrics.csv"
    path.write_text(csv_text)
    curves = read_curves(path, max_epochs=2)
    assert [c["epoch"] for c in curves] == [1, 2]
    assert [c["step"] for c in curves] == [10, 20]
    assert curves[1]["train_loss"] == {"depth": 1.2}
    assert curves[0]["val"] == {"depth/rmse": 0.9}
