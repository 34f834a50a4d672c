"""``PRED_DIR/report.html``: a static summary of a prediction folder to share (no server needed).

Counts (images, flagged, skipped, decided), the histogram of the review scores with the flag
threshold when ``predictions.csv`` gives one, and the flagged images, worst first, with their
panel, reasons and the decision made in ``review.csv``. Pictures are linked by relative path, so
the report stays valid when the folder is moved or zipped as a whole.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from mtcp.inference.review_queue import PREDICTIONS_FILE, ReviewQueue, _read_csv, scores_of
from mtcp.io import atomic_write_text

REPORT_FILE = "report.html"


def _histogram_png(scores: list[float]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.4), dpi=100)
    ax.hist(scores, bins=20, range=(0, 1), color="#4477aa")
    ax.set_xlabel("review score (higher = more likely wrong)")
    ax.set_ylabel("images")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def render_report(pred_dir: str | Path) -> str:
    """The HTML text of the report of ``pred_dir``."""
    queue = ReviewQueue(pred_dir)
    rows = _read_csv(queue.root / PREDICTIONS_FILE)
    skipped = sum(r.get("status", "ok") != "ok" for r in rows)
    s = queue.summary()
    scores = scores_of(queue)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>mtcp predictions: {html.escape(queue.root.name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:20px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "vertical-align:top;font-size:13px}img.panel{max-width:720px}</style></head><body>",
        f"<h1>Predictions in {html.escape(str(queue.root))}</h1>",
        "<p id='counts'>"
        f"{s['images']} images predicted, {skipped} skipped, {s['flagged']} flagged for review; "
        f"{s['decided']} reviewed ({s['accepted']} accepted, {s['rejected']} rejected).</p>",
    ]
    if scores:
        b64 = base64.b64encode(_histogram_png(scores)).decode()
        parts.append(
            f"<h2>Review scores</h2><img alt='score histogram' src='data:image/png;base64,{b64}'>"
        )
    else:
        parts.append("<p>No review scores in predictions.csv (uncalibrated model?).</p>")
    flagged = [i for i in queue.ordered() if i.flagged]
    parts.append(f"<h2>Flagged images ({len(flagged)})</h2>")
    if flagged:
        parts.append(
            "<table><tr><th>image</th><th>score</th><th>reasons</th><th>decision</th>"
            "<th>panel</th></tr>"
        )
        for item in flagged:
            score = "n/a" if math.isnan(item.score) else f"{item.score:.3f}"
            panel = item.pictures.get("panel")
            img = f"<img class='panel' src='{html.escape(panel)}' alt='panel'>" if panel else ""
            decision = html.escape(item.decision + (f": {item.note}" if item.note else ""))
            parts.append(
                f"<tr class='flagged'><td>{html.escape(item.input)}</td><td>{score}</td>"
                f"<td>{html.escape(item.reason)}</td><td>{decision}</td><td>{img}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(pred_dir: str | Path) -> Path:
    """Write ``PRED_DIR/report.html`` atomically; returns its path."""
    path = Path(pred_dir) / REPORT_FILE
    atomic_write_text(path, render_report(pred_dir))
    return path
