"""A rich progress bar over runs and bytes, drawn on stderr while a pass runs."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from synergos_mlops.ingest._ingest import ProgressSink, RunOutcome

__all__ = ["RichProgress"]


class RichProgress(ProgressSink):
    """Two bars: runs done of all runs, and bytes compared or logged of all bytes."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description:>6}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._runs: TaskID | None = None
        self._bytes: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def start(self, runs: int, total_bytes: int) -> None:
        self._runs = self._progress.add_task("runs", total=runs, detail="")
        self._bytes = self._progress.add_task("bytes", total=total_bytes, detail="")

    def advance(self, nbytes: int) -> None:
        if self._bytes is not None:
            self._progress.advance(self._bytes, nbytes)

    def run_done(self, outcome: RunOutcome) -> None:
        if self._runs is not None:
            self._progress.update(self._runs, advance=1, detail=f"{outcome.status} {outcome.run}")
