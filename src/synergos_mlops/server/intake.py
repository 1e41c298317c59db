"""What the server's intake routes did not store, counted by reason for ``/health``.

Every worker of one server adds to the same JSON file (``$SYNMLOPS_INTAKE_STATUS``, which
``synmlops serve`` sets beside the store and empties at start), under a lock, so ``/health``
says the same whichever worker answers. A reason is named in the server's log the first time
it is counted; later ones are only counted. Without the variable (an app started some other
way) the counts are this process's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["STATUS_ENV", "count_refused", "refused_counts"]

STATUS_ENV = "SYNMLOPS_INTAKE_STATUS"

_lock = threading.Lock()
_local: dict[str, dict[str, int]] = {}


def _say(line: str) -> None:
    with contextlib.suppress(Exception):  # the log is away: the counters still say it
        print(line, file=sys.stderr, flush=True)


def _add(counts: dict[str, dict[str, int]], what: str, refused: Mapping[str, int]) -> list[str]:
    """Add ``refused`` to ``counts[what]``; return the reasons counted for the first time."""
    kept = counts.setdefault(what, {})
    first = [reason for reason in refused if not kept.get(reason)]
    for reason, count in refused.items():
        kept[reason] = kept.get(reason, 0) + count
    return first


def count_refused(what: str, refused: Mapping[str, int], named: Mapping[str, str]) -> None:
    """Count points of ``what`` (e.g. ``metrics``) not stored, by reason; name each reason in
    the log the first time this server counts it (``named``: the words of one example)."""
    if not refused:
        return
    path = os.environ.get(STATUS_ENV)
    with _lock:
        if not path:
            first = _add(_local, what, refused)
        else:
            try:
                with open(path, "a+", encoding="utf-8") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                    handle.seek(0)
                    text = handle.read()
                    counts = json.loads(text) if text.strip() else {}
                    first = _add(counts, what, refused)
                    handle.seek(0)
                    handle.truncate()
                    handle.write(json.dumps(counts, sort_keys=True))
            except (OSError, ValueError) as exc:  # the file is away: count here, say so
                first = _add(_local, what, refused)
                _say(f"synergos: intake counts kept in this worker only ({exc})")
    for reason in first:
        total = refused[reason]
        _say(
            f"synergos: {total} {what} point(s) not stored ({reason}): {named.get(reason, '')}; "
            "further ones are counted in /health"
        )


def refused_counts() -> dict[str, dict[str, int]]:
    """Every count so far: ``{what: {reason: n}}``."""
    path = os.environ.get(STATUS_ENV)
    counts: dict[str, Any] = {}
    if path:
        with contextlib.suppress(OSError, ValueError), open(path, encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            text = handle.read()
            counts = json.loads(text) if text.strip() else {}
    with _lock:
        for what, reasons in _local.items():
            merged = counts.setdefault(what, {})
            for reason, count in reasons.items():
                merged[reason] = merged.get(reason, 0) + count
    return {what: dict(sorted(reasons.items())) for what, reasons in sorted(counts.items())}
