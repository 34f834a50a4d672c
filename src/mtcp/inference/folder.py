"""``predict_to_folder``: dense maps for image files, folders and videos, written into a folder
(what ``mtcp predict`` does; the files are described in :mod:`mtcp.inference.outputs`).

The images are read and decoded in DataLoader worker processes (:mod:`mtcp.inference.inputs`)
while the model runs in this one, and each predicted image is scored and written in a background
thread while the model runs on the next batch. Every image is resized to the network's input
size, so images of any size share a batch; the outputs are resized back to each image's own
size. Each image's review score (:mod:`mtcp.inference.review`) is computed from the network's
inputs and outputs of its batch, and so are the CSV's coherence scores (at which size: see
:mod:`mtcp.inference.outputs`). With ``refine=True`` each image's depth and normals are
refined to agree (:meth:`Predictor.refine`, in the writing thread) before they are written and
scored; the review score stays that of the network's outputs. A failure of one
image (unreadable file, a decoder error, any exception while predicting, scoring or writing it)
is reported, listed in ``predictions.csv`` with its error, and skipped; the others go on.

The output folder must be new or empty unless ``overwrite=True``, which replaces only the files
this function writes (other files in the folder are left alone).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader
from tqdm import tqdm

from mtcp.errors import MtcpError
from mtcp.inference.inputs import DecodedImages, as_list, expand_inputs, stack_inputs
from mtcp.inference.maps import to_numpy_maps
from mtcp.inference.outputs import (
    OUTPUT_SETS,
    RAW_FORMATS,
    coherence_scores,
    write_csv,
    write_outputs,
)
from mtcp.inference.predictor import Predictor
from mtcp.inference.review import coherence_of
from mtcp.inference.review_report import write_report
from mtcp.io import flush_to_disk, remove_stale_temporaries

CSV_NAME = "predictions.csv"


@dataclass
class PredictSummary:
    """What :func:`predict_to_folder` did: ``rows`` are the CSV rows, in input order."""

    out: Path
    csv: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: wall time of the whole run (reading, predicting, writing)
    seconds: float = 0.0

    @property
    def n_ok(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)

    @property
    def n_failed(self) -> int:
        return len(self.rows) - self.n_ok

    @property
    def n_flagged(self) -> int:
        return sum(int(r.get("review") or 0) for r in self.rows)


def check_output_folder(out: str | Path, overwrite: bool = False) -> Path:
    """``out`` as a folder mtcp may write into: new, empty, or ``overwrite`` given."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MtcpError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and not overwrite:
        entries = sorted(p.name for p in out.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise MtcpError(
                f"--out {out}: folder is not empty ({len(entries)} entries: {shown}); choose a "
                "new folder, or pass --overwrite to replace the files mtcp predict writes there"
            )
    return out


def default_workers() -> int:
    """Decoding worker processes: up to 2, fewer on a machine with fewer cores."""
    return min(2, max((os.cpu_count() or 1) - 1, 0))


def default_writer_threads() -> int:
    """Writing threads: 2 where there are 2 cores or more (about 1.2× the images/s of one on
    2 cores with the default outputs, the same with ``outputs="maps"``; BENCHMARKS.md), else
    1."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def _output_name(name: str, used: set[str]) -> str:
    stem = name.split("#")[0]
    base = Path(stem).stem + (f"_f{int(name.split('#')[1]):06d}" if "#" in name else "")
    candidate, k = base, 1
    while candidate in used:
        candidate, k = f"{base}_{k}", k + 1
    used.add(candidate)
    return candidate


def _describe(err: Exception) -> str:
    return str(err) if isinstance(err, MtcpError) else f"{type(err).__name__}: {err}"


class _Writer:
    """Per-image work after the forward pass (maps, scores, files, the CSV row), in
    ``threads`` background threads (0 = inline) so that it overlaps the next forward pass;
    PNG encoding and the torch / numpy work of the scores release the GIL."""

    def __init__(
        self,
        predictor: Predictor,
        out: Path,
        raw: str,
        report: Callable[[str], None],
        threads: int,
        refine: bool = False,
        pictures: bool = True,
    ) -> None:
        self.predictor, self.out, self.raw, self.report = predictor, out, raw, report
        self.refine, self.pictures = refine, pictures
        self.used: set[str] = set()
        self.rows: dict[tuple[int, int], dict[str, Any]] = {}
        self.pool = ThreadPoolExecutor(threads) if threads > 0 else None
        self.pending: deque[Future] = deque()
        self.limit = 2 * max(threads, 1)

    def fail(self, item: dict[str, Any], message: str, status: str) -> None:
        self.report(f"skipped {message}")
        self.rows[item["key"]] = {"input": item["name"], "status": status, "reason": message}

    def write(self, item: dict[str, Any], raw_maps: dict[str, Any], verdict: Any) -> None:
        """Queue the work of one predicted image with its review (a
        :class:`mtcp.inference.review.Review`); its folder name is chosen here, in order."""
        folder = self.out / _output_name(item["name"], self.used)
        if self.pool is None:
            self._finish(item, raw_maps, verdict, folder)
            return
        while len(self.pending) >= self.limit:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._finish, item, raw_maps, verdict, folder))

    def close(self, cancel: bool = False) -> None:
        """Wait for the queued images (or drop those not started, with ``cancel``)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=cancel)

    def _finish(
        self, item: dict[str, Any], raw_maps: dict[str, Any], verdict: Any, folder: Path
    ) -> None:
        rgb = item["rgb"]
        try:
            if self.refine:
                raw_maps = self.predictor.refine(raw_maps, rgb.shape[:2])
            maps = to_numpy_maps({t: v[None] for t, v in raw_maps.items()}, self.predictor.tasks)[0]
            # unrefined: the review's, computed at the network's size where the model predicts
            scores = (
                coherence_scores(maps, self.predictor.camera(rgb.shape[:2]))
                if self.refine
                else coherence_of(verdict.parts)
            )
            names = self.predictor.class_names
            write_outputs(folder, rgb, maps, self.predictor.tasks, self.raw, names, self.pictures)
        except Exception as err:  # any failure of one image: listed, the others go on
            self.fail(item, f"{item['name']}: {_describe(err)}", "failed")
            return
        self.rows[item["key"]] = {
            "input": item["name"],
            "output": str(folder),
            "status": "ok",
            "height": rgb.shape[0],
            "width": rgb.shape[1],
            **{k: round(v, 4) for k, v in scores.items()},
            "review_score": round(verdict.score, 4),
            "review": int(verdict.flag),
            "reason": verdict.reasons,
        }


def _forward(
    predictor: Predictor, items: list[dict[str, Any]], writer: _Writer, budget: dict[str, Any]
) -> None:
    """One batch through the model and the review score; if the batch fails, each image alone
    (isolates the bad one)."""
    sizes = [item["rgb"].shape[:2] for item in items]
    try:
        batch = stack_inputs(items)
        network = predictor.forward_network(batch)
        outputs = predictor.forward_prepared(batch, sizes, network)
        reviews = predictor.review(batch, network, **budget)
    except KeyboardInterrupt:
        raise
    except Exception as err:
        if len(items) == 1:
            writer.fail(items[0], f"{items[0]['name']}: {_describe(err)}", "failed")
            return
        for item in items:
            _forward(predictor, [item], writer, budget)
        return
    for item, raw_maps, verdict in zip(items, outputs, reviews):
        writer.write(item, raw_maps, verdict)


def predict_to_folder(
    predictor: Predictor,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    raw: str = "png",
    outputs: str = "all",
    every: int = 1,
    review_rate: float | None = None,
    review_threshold: float | None = None,
    overwrite: bool = False,
    refine: bool = False,
    batch_size: int = 4,
    workers: int | None = None,
    writer_threads: int | None = None,
    progress: bool = False,
    report: Callable[[str], None] = lambda message: None,
) -> PredictSummary:
    """Predict every input into ``out`` (see the module docstring).

    Args:
        predictor: from :func:`mtcp.load`.
        inputs: image files, folders of images, videos.
        out: output folder (new or empty unless ``overwrite``).
        raw: raw value format, ``"png"`` or ``"npy"`` (:mod:`mtcp.inference.outputs`).
        outputs: ``"all"`` or ``"maps"`` (raw values and ``legend.json`` only, no pictures).
        every: videos: keep every ``every``-th frame.
        review_rate: review budget, the share of images flagged (default: the model's
            calibration's ``review.rate``).
        review_threshold: flag images whose review score exceeds this value in [0, 1]
            (instead of a rate). Both are ignored for an uncalibrated model (legacy rule).
        refine: refine each image's depth and normals to agree before writing them
            (:mod:`mtcp.inference.refine`; the model needs both tasks and a camera).
        batch_size: images per forward pass.
        workers: decoding processes (``0`` = decode in this process; default
            :func:`default_workers`).
        writer_threads: threads scoring and writing predicted images while the model runs
            (``0`` = in turn with the model; default :func:`default_writer_threads`).
        progress: show a progress bar with images/s on stderr.
        report: called with one line per skipped input.

    Returns:
        a :class:`PredictSummary`; ``predictions.csv`` is written even when interrupted.
    """
    if raw not in RAW_FORMATS:
        raise MtcpError(f"raw format {raw!r}: expected one of {', '.join(RAW_FORMATS)}")
    if outputs not in OUTPUT_SETS:
        raise MtcpError(f"outputs {outputs!r}: expected one of {', '.join(OUTPUT_SETS)}")
    if refine:
        predictor.check_refine()
    out = check_output_folder(out, overwrite)
    entries = expand_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    workers = default_workers() if workers is None else max(int(workers), 0)
    threads = default_writer_threads() if writer_threads is None else max(int(writer_threads), 0)
    loader = DataLoader(
        DecodedImages(entries, predictor.size, every),
        batch_size=max(int(batch_size), 1),
        collate_fn=as_list,
        num_workers=min(workers, len(entries)),
    )
    writer = _Writer(predictor, out, raw, report, threads, refine, outputs == "all")
    budget = {"rate": review_rate, "threshold": review_threshold}
    has_video = any(e.kind == "video" for e in entries)
    bar = _progress_bar(None if has_video else len(entries), progress)
    start = time.perf_counter()
    finished = False
    try:
        for batch in loader:
            good = [item for item in batch if item["error"] is None]
            for item in batch:
                if item["error"] is not None:
                    writer.fail(item, item["error"], "unreadable")
            if good:
                _forward(predictor, good, writer, budget)
            bar.update(len(batch))
        finished = True
    finally:
        writer.close(cancel=not finished)
        bar.close()
        rows = [writer.rows[k] for k in sorted(writer.rows)]
        flush_to_disk()  # the images' files, written without fsync, before the CSV lists them
        path = write_csv(out / CSV_NAME, rows)
    write_report(out)  # report.html, to share the run without a server
    return PredictSummary(out, path, rows, time.perf_counter() - start)


def _progress_bar(total: int | None, enabled: bool) -> Any:
    return tqdm(total=total, unit="img", disable=not enabled, desc="mtcp predict", leave=False)
