"""Keep ingesting an output folder as runs appear or change, until told to stop.

Each poll scans the folders (names, sizes and modification times only). A file is taken
once its size and mtime are the same on two polls in a row; a file that is still moving
waits, and so does the rest of its run's record (the run is ingested without it and again
once it settles). A run whose files did not move since it was last ingested costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from synergos_mlops.ingest._ingest import Ingester, IngestReport, RunOutcome
from synergos_mlops.ingest._scan import Problem, WorkerOutputs, scan

__all__ = ["Watcher"]


class Watcher:
    """Polls OUTPUTS every ``interval`` seconds and ingests what settled."""

    def __init__(
        self,
        outputs: Path,
        workers: Sequence[WorkerOutputs] = (),
        *,
        tracking_uri: str | None,
        interval: float = 2.0,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.outputs = outputs
        self.workers = tuple(workers)
        self.interval = interval
        self.echo = echo
        self.stop_event = threading.Event()
        self.report = IngestReport()
        self._ingester = Ingester(tracking_uri)
        self._previous: dict[str, tuple[int, int]] = {}  # file path -> (size, mtime_ns)
        self._done: dict[str, str] = {}  # run label -> digest last ingested whole
        self._seen: set[Problem] = set()
        self._last: dict[str, RunOutcome] = {}  # run label -> latest outcome

    @property
    def tracking_uri(self) -> str:
        return self._ingester.tracking_uri

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> IngestReport:
        """Poll until :meth:`stop` (or KeyboardInterrupt); return what was done."""
        try:
            while not self.stop_event.is_set():
                self.poll()
                self.stop_event.wait(self.interval)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()
        return self.report

    def close(self) -> None:
        """Let go of the destination (its database connections, its tracker)."""
        self._ingester.close()

    def poll(self) -> None:
        """One pass: scan, and ingest every run that has settled files not yet ingested."""
        found = scan(self.outputs, self.workers)
        current: dict[str, tuple[int, int]] = {}
        for run in found.runs:
            for entry in run.files:
                current[str(entry.path)] = (entry.size, entry.mtime_ns)
        for problem in found.problems:
            self._note(problem)
        for skipped in found.skipped:
            if skipped.where not in self._last:
                self._record(RunOutcome(skipped.where, "skipped", skipped.reason))
                self.echo(f"skipped {skipped}")
        for run in found.runs:
            if self.stop_event.is_set():
                break
            digest = run.digest()
            if self._done.get(run.label) == digest:
                continue
            settled = {
                e.name for e in run.files if self._previous.get(str(e.path)) == (e.size, e.mtime_ns)
            }
            if not settled:
                continue
            outcome = self._ingester.ingest_run(run.only(settled))
            for note in outcome.notes:
                self._note(note)
            if outcome.status == "failed":
                self._note(Problem(run.label, f"not ingested: {outcome.reason}; retried"))
                continue
            if len(settled) == len(run.files):
                # Whole: a file left out (a bad JSON file) is tried again once it moves.
                self._done[run.label] = digest
            self._record(outcome)
        self._previous = current

    def _record(self, outcome: RunOutcome) -> None:
        before = self._last.get(outcome.run)
        if outcome.status == "unchanged" and before is not None:
            return
        if before is not None and before.status == "new" and outcome.status == "updated":
            outcome.status = "new"  # first seen in this watch: still one new run
        self._last[outcome.run] = outcome
        self.report.outcomes = list(self._last.values())
        if outcome.files:
            self.echo(f"{outcome.status} {outcome.run}: {outcome.files} files logged")

    def _note(self, problem: Problem) -> None:
        if problem in self._seen:
            return
        self._seen.add(problem)
        self.report.problems.append(problem)
        self.echo(f"left out {problem}")
