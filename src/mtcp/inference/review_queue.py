"""The review queue of a prediction folder: what a person checks, in which order, what they decided.

A prediction folder is what ``mtcp predict ... --out PRED_DIR`` writes: ``predictions.csv`` (one
row per input: ``input``, ``output`` (the image's folder), ``status``, the review score and
flag) and one folder of maps per image. The queue lists the predicted images, flagged ones
first, then by review score, highest (most likely wrong) first.

Decisions live in ``PRED_DIR/review.csv`` (columns :data:`DECISION_COLUMNS`), rewritten
atomically after every decision, so reopening the folder continues where the person stopped
and a stopped server never loses a saved decision. A ``review.csv`` naming images that are
not in the folder's ``predictions.csv`` belongs to another folder and is refused.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtcp.errors import MtcpError
from mtcp.inference.outputs import LEGEND_FILE
from mtcp.io import atomic_write_text

PREDICTIONS_FILE = "predictions.csv"
DECISIONS_FILE = "review.csv"
DECISIONS = ("accept", "reject")
DECISION_COLUMNS = ("input", "decision", "note", "time")
#: columns of ``predictions.csv`` that may hold the review score (first found wins)
SCORE_COLUMNS = ("review_score", "score")
#: map pictures shown per image, in this order (``<task>_color.png`` files)
TASK_ORDER = ("semseg", "human_parts", "depth", "normals", "edge", "sal")


@dataclass
class Item:
    """One predicted image of the queue."""

    input: str
    folder: Path
    flagged: bool
    score: float
    reason: str
    row: dict[str, str]
    decision: str = ""
    note: str = ""
    pictures: dict[str, str] = field(default_factory=dict)

    def as_json(self, root: Path) -> dict[str, Any]:
        return {
            "input": self.input,
            "flagged": self.flagged,
            "score": None if math.isnan(self.score) else self.score,
            "reason": self.reason,
            "decision": self.decision,
            "note": self.note,
            "pictures": self.pictures,
            "values": {k: v for k, v in self.row.items() if k not in ("input", "output", "reason")},
        }


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise MtcpError(f"{path}: cannot read it ({err.strerror})") from None
    return list(csv.DictReader(io.StringIO(text)))


def _pictures(folder: Path, root: Path) -> dict[str, str]:
    """``{name: path relative to root}`` of the image's input, maps and panel."""
    found = {}
    for name, file in [("input", "input.png")] + [(t, f"{t}_color.png") for t in TASK_ORDER]:
        if (folder / file).is_file():
            found[name] = str((folder / file).relative_to(root))
    for extra in sorted(folder.glob("*_color.png")):
        task = extra.name[: -len("_color.png")]
        found.setdefault(task, str(extra.relative_to(root)))
    if (folder / "panel.png").is_file():
        found["panel"] = str((folder / "panel.png").relative_to(root))
    return found


def _folder(root: Path, output: str) -> Path:
    """The image folder named in a ``predictions.csv`` row, which must lie inside ``root``."""
    path = Path(output)
    folder = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not folder.is_dir() or root not in (folder, *folder.parents):
        folder = (root / path.name).resolve()  # the folder was moved or copied as a whole
    return folder


class ReviewQueue:
    """The images of a prediction folder in review order, with the decisions made so far."""

    def __init__(self, pred_dir: str | Path) -> None:
        self.root = Path(pred_dir).resolve()
        if not self.root.is_dir():
            raise MtcpError(
                f"{pred_dir}: no such folder (expected the --out folder of mtcp predict)"
            )
        predictions = self.root / PREDICTIONS_FILE
        if not predictions.is_file():
            raise MtcpError(
                f"{pred_dir}: no {PREDICTIONS_FILE}; expected the --out folder of "
                f"`mtcp predict CKPT INPUTS... --out {pred_dir}`"
            )
        self.items: dict[str, Item] = {}
        for row in _read_csv(predictions):
            if "input" not in row or "output" not in row:
                raise MtcpError(
                    f"{predictions}: expected the columns 'input' and 'output' of mtcp predict, "
                    f"got {list(row)}"
                )
            if row.get("status", "ok") != "ok" or not row["output"]:
                continue  # unreadable inputs have no maps to review
            score = next((_float(row.get(c)) for c in SCORE_COLUMNS if c in row), math.nan)
            folder = _folder(self.root, row["output"])
            self.items[row["input"]] = Item(
                input=row["input"],
                folder=folder,
                flagged=row.get("review", "0") not in ("", "0"),
                score=score,
                reason=row.get("reason", ""),
                row=row,
                pictures=_pictures(folder, self.root) if folder.is_dir() else {},
            )
        self._load_decisions()

    @property
    def decisions_path(self) -> Path:
        return self.root / DECISIONS_FILE

    def _load_decisions(self) -> None:
        if not self.decisions_path.is_file():
            return
        rows = _read_csv(self.decisions_path)
        unknown = [r.get("input", "") for r in rows if r.get("input") not in self.items]
        if unknown:
            raise MtcpError(
                f"{self.decisions_path}: lists {len(unknown)} image(s) that are not in "
                f"{self.root / PREDICTIONS_FILE} (e.g. {unknown[0]!r}): it belongs to another "
                "prediction folder. Move it away to start a new review of this folder."
            )
        for r in rows:
            if r.get("decision") not in DECISIONS:
                raise MtcpError(
                    f"{self.decisions_path}: decision {r.get('decision')!r} for {r['input']!r}; "
                    f"expected one of {', '.join(DECISIONS)}"
                )
            item = self.items[r["input"]]
            item.decision, item.note = r["decision"], r.get("note", "")

    def ordered(self) -> list[Item]:
        """Flagged images first, then by score (highest first; unscored last), then by name."""

        def key(item: Item) -> tuple:
            score = -item.score if not math.isnan(item.score) else math.inf
            return (not item.flagged, score, item.input)

        return sorted(self.items.values(), key=key)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.ordered())

    def __len__(self) -> int:
        return len(self.items)

    def decide(self, image: str, decision: str, note: str = "") -> Item:
        """Record ``decision`` (accept / reject) and ``note`` for ``image``; saved at once."""
        if image not in self.items:
            raise MtcpError(f"{self.root}: no predicted image {image!r} in {PREDICTIONS_FILE}")
        if decision not in DECISIONS:
            raise MtcpError(
                f"decision for {image!r}: expected one of {DECISIONS}, got {decision!r}"
            )
        item = self.items[image]
        item.decision, item.note = decision, note
        self._save()
        return item

    def _save(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=DECISION_COLUMNS, lineterminator="\n")
        writer.writeheader()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        for item in self.ordered():
            if item.decision:
                writer.writerow(
                    {
                        "input": item.input,
                        "decision": item.decision,
                        "note": item.note,
                        "time": stamp,
                    }
                )
        atomic_write_text(self.decisions_path, buf.getvalue())

    def summary(self) -> dict[str, Any]:
        """Counts of the folder: images, flagged, decided, accepted, rejected."""
        items = list(self.items.values())
        return {
            "images": len(items),
            "flagged": sum(i.flagged for i in items),
            "decided": sum(bool(i.decision) for i in items),
            "accepted": sum(i.decision == "accept" for i in items),
            "rejected": sum(i.decision == "reject" for i in items),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.root),
            "summary": self.summary(),
            "items": [item.as_json(self.root) for item in self.ordered()],
        }


def scores_of(queue: ReviewQueue) -> list[float]:
    """The finite review scores of the queue's images."""
    return [i.score for i in queue.items.values() if not math.isnan(i.score)]


def legends(item: Item) -> dict[str, Any]:
    """The scale of each map of ``item``: depth range (metres), classes present, normals key.

    Depth: the 2nd–98th percentile of the valid pixels of ``depth_mm.png`` (the rule
    :func:`mtcp.viz.colorize_depth` colours with) unless ``legend.json`` stores the range.
    Classes: the ids of ``<task>.png`` with the colour they have in ``<task>_color.png`` and their
    names from ``legend.json`` (``{"classes": {task: [name, ...]}}``) when it has them.
    """
    import numpy as np
    from PIL import Image

    from mtcp.io import read_json

    stored = read_json(item.folder / LEGEND_FILE) or {}
    names = stored.get("classes", {})
    out: dict[str, Any] = {}
    depth_file = item.folder / "depth_mm.png"
    if "depth" in stored:
        out["depth"] = stored["depth"]
    elif depth_file.is_file():
        mm = np.asarray(Image.open(depth_file)).astype(np.float64)
        valid = mm[mm > 0] / 1000.0
        if valid.size:
            lo, hi = np.percentile(valid, [2, 98])
            out["depth"] = {"vmin": float(lo), "vmax": float(hi), "unit": "m", "cmap": "turbo"}
    if "depth" in out and "stops" not in out["depth"]:
        from matplotlib import colormaps

        cmap = colormaps[out["depth"].get("cmap", "turbo")]
        out["depth"]["stops"] = [
            [round(255 * c) for c in cmap(x)[:3]] for x in np.linspace(0, 1, 9)
        ]
    for task in ("semseg", "human_parts"):
        ids_file, colour_file = item.folder / f"{task}.png", item.folder / f"{task}_color.png"
        if not (ids_file.is_file() and colour_file.is_file()):
            continue
        ids = np.asarray(Image.open(ids_file)).astype(np.int64)
        colours = np.asarray(Image.open(colour_file).convert("RGB"))
        if ids.shape != colours.shape[:2]:
            continue
        present, first, counts = np.unique(ids.ravel(), return_index=True, return_counts=True)
        table = names.get(task, [])
        rows = []
        for k, idx, count in sorted(zip(present, first, counts), key=lambda r: -r[2]):
            rgb = colours.reshape(-1, 3)[idx].tolist()
            name = table[k] if 0 <= k < len(table) else f"class {k}"
            rows.append({"id": int(k), "name": name, "rgb": rgb, "share": float(count / ids.size)})
        out[task] = rows
    return out
