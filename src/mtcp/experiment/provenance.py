"""Provenance of study results: the mtcp source version and the machine of every run.

A result file records :func:`environment` (with :func:`source_hash`); a study folder holds
results of one source version only (:func:`check_sources`), so every figure of a report comes
from the sources users run.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from mtcp.errors import MtcpError
from mtcp.io import read_json

#: the parts of mtcp whose code determines a run's numbers
RESULT_SOURCES = (
    "models",
    "losses",
    "metrics",
    "data",
    "engine",
    "tasks.py",
    "geometry.py",
    "sizes.py",
    # the evaluation loop the runner uses (mtcp.evaluate) and what it runs
    "inference/evaluate.py",
    "inference/predictor.py",
    "inference/precision.py",
    "inference/maps.py",
    "inference/refine.py",
    "experiment/runner.py",
    "experiment/provenance.py",
)


def source_hash() -> str:
    """Short hash of the mtcp sources that determine results (:data:`RESULT_SOURCES`)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for part in RESULT_SOURCES:
        files = [root / part] if part.endswith(".py") else sorted((root / part).rglob("*.py"))
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def environment() -> dict[str, Any]:
    """Machine, library versions and source hash of a run (reported next to the times)."""
    return {
        "mtcp_source": source_hash(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def check_sources(result_files: Iterable[Path], current: str) -> None:
    """Refuse to add results of source version ``current`` next to ``result_files`` of another."""
    found: dict[str, list[str]] = {}
    for path in sorted(result_files):
        stored = read_json(path) or {}
        version = str((stored.get("environment") or {}).get("mtcp_source"))
        found.setdefault(version, []).append(str(path))
    others = {v: p for v, p in found.items() if v != current}
    if others:
        version, paths = next(iter(others.items()))
        raise MtcpError(
            f"{paths[0]} (and {len(paths) - 1} other result file(s)) come from mtcp source "
            f"version {version}, but this is version {current}: results of one study must come "
            "from one source version. Delete those results (or use another --out) to re-run "
            "the study with the current sources."
        )
