"""Where the report of :func:`mtcp.evaluate` is written: beside the checkpoint, else where it can.

Results are never lost: ``mtcp evaluate`` prints its table first, then :func:`save_report`
writes the JSON, falling back to the current folder when the checkpoint's folder cannot be
written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtcp.errors import MtcpError
from mtcp.io import write_json


def report_path(checkpoint: str | os.PathLike[str], split: str) -> Path:
    """Default JSON file of an evaluation: ``<checkpoint stem>.<split>.json`` beside it."""
    return Path(checkpoint).with_suffix(f".{split}.json")


def save_report(
    report: Mapping[str, Any], out: str | os.PathLike[str] | None, split: str = "test"
) -> tuple[Path, str | None]:
    """Write ``report`` as JSON where it can; returns ``(path written, note or None)``.

    ``out`` given: written there, or an :class:`MtcpError` saying why not. ``out=None``: beside
    the checkpoint (:func:`report_path`); when that folder is not writable (read-only, no
    permission, full), into the current folder instead, and the note says so.
    """

    if out is not None:
        try:
            return write_json(out, report), None
        except (OSError, MtcpError) as err:
            raise MtcpError(
                f"cannot write the results to {out} ({_why(err)}); the table above holds them: "
                "choose another --out"
            ) from None
    default = report_path(report["checkpoint"] or "evaluation", split)
    try:
        return write_json(default, report), None
    except (OSError, MtcpError) as err:
        fallback = Path.cwd() / default.name
        reason = f"cannot write {default} ({_why(err)})"
        try:
            write_json(fallback, report)
        except (OSError, MtcpError) as err2:
            raise MtcpError(
                f"{reason}, nor {fallback} ({_why(err2)}); the table above holds the results: "
                "pass --out FILE in a writable folder"
            ) from None
        return fallback, f"{reason}; wrote {fallback} instead (choose with --out)"


def _why(err: Exception) -> str:
    return (err.strerror if isinstance(err, OSError) else None) or str(err)
