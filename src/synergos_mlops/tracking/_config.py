"""The tracker's configuration: one small immutable value object."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TrackerConfig", "default_spool_dir"]


def default_spool_dir() -> Path:
    """``$SYNMLOPS_SPOOL``, else ``$XDG_CACHE_HOME/synergos_mlops/spool``, else
    ``~/.cache/synergos_mlops/spool``."""
    explicit = os.environ.get("SYNMLOPS_SPOOL")
    if explicit:
        return Path(explicit).expanduser()
    from synergos_mlops.store import user_cache

    return user_cache("spool")


@dataclass(frozen=True)
class TrackerConfig:
    """How a :class:`~synergos_mlops.tracking.FederatedTracker` batches, waits and spools.

    Attributes:
        batch_size: points per request (and per spool file).
        flush_interval: seconds between background sends; points logged are on disk in the
            spool within this time even if nobody calls ``flush()``.
        flush_timeout: seconds ``flush()`` and the end of a ``with tracker.run(...)`` block wait
            for an absent server before they give up with a warning (what is unsent stays in
            the spool).
        connect_timeout: seconds the calls that need an answer (creating runs, params, status,
            artifacts) retry an absent server before raising ``ServerUnavailableError``.
        request_timeout: seconds one HTTP request may take.
        retry_interval: longest pause between two tries while the server is away.
        spool_dir: where unsent points wait (default: :func:`default_spool_dir`).
    """

    batch_size: int = 20_000
    flush_interval: float = 1.0
    flush_timeout: float = 60.0
    connect_timeout: float = 60.0
    request_timeout: float = 60.0
    retry_interval: float = 2.0
    spool_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("TrackerConfig.batch_size must be at least 1")
        for name in ("flush_interval", "flush_timeout", "connect_timeout", "request_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrackerConfig.{name} must not be negative")
        if self.retry_interval <= 0:
            raise ValueError("TrackerConfig.retry_interval must be positive")

    @property
    def spool_root(self) -> Path:
        return Path(self.spool_dir).expanduser() if self.spool_dir else default_spool_dir()
