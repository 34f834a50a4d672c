"""Studies: train and evaluate several configurations over seeds, then report (issue 10).

``mtcp experiment STUDY`` runs a study file (:mod:`.study`) with :func:`run_study`
(:mod:`.runner`: one JSON per run, resumable) and writes ``EXPERIMENTS.md`` with
:func:`write_report` (:mod:`.report`; numbers from :mod:`.aggregate`, figures from
:mod:`.plots`).
"""

from mtcp.experiment.report import write_report
from mtcp.experiment.runner import run_study
from mtcp.experiment.study import Study, load_study

__all__ = ["Study", "load_study", "run_study", "write_report"]
