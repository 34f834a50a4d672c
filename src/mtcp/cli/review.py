"""``mtcp review PRED_DIR``: work through the review queue of a prediction folder in a browser.

Serves a page on 127.0.0.1 (``--port``, default a free one): flagged images first, worst score
first; for each the input, every task's map with its scale and the reasons; accept / reject
buttons, a note, keyboard shortcuts (a accept, r reject, j / k next / previous). Every decision
is saved to ``PRED_DIR/review.csv`` at once; reopening the folder continues where you stopped.
``--report`` only writes the static ``PRED_DIR/report.html`` and exits.
Needs the review extra: ``pip install 'mtcp[review]'``.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "review",
        help="review the flagged predictions of a folder in a local web page",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="the --out folder of mtcp predict")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    parser.add_argument("--report", action="store_true", help="write report.html and exit")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mtcp.inference.review_report import write_report

    path = write_report(args.pred_dir)
    print(f"report: {path}")
    if args.report:
        return 0
    from mtcp.inference.review_server import serve

    serve(
        args.pred_dir,
        port=args.port,
        on_ready=lambda url: print(f"review queue of {args.pred_dir}: {url}  (Ctrl+C to stop)"),
    )
    return 0
