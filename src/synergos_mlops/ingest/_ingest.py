"""Log scanned run folders through the FederatedTracker, once per change.

What is compared: every ingested run keeps a manifest of its files, ``(name, size,
mtime_ns, sha256)``, as the artifact ``ingest/manifest.json`` of its parent run, and a digest
of the ``(name, size, mtime_ns)`` triples as the parent run's tag ``synergos.ingest.digest``.

- The digest of a scanned run equal to its tag: the run is unchanged and nothing is read
  (one search per experiment is the whole cost).
- Otherwise the manifest is fetched; a file whose size and mtime match it is left alone, a
  file whose sha256 matches it (touched, not changed) is only re-recorded, and every other
  file is logged. Loss histories are re-logged whole; the tracker keeps one point per
  (run, participant, key, step), so re-logging never duplicates a point.
- The digest tag is written last, after everything else was logged: a pass that stops
  half-way is simply done again.

Nothing already ingested is removed: a file that vanished from the folder keeps its
artifact and its metric points.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synergos_mlops.catalogue import Note
from synergos_mlops.errors import IngestError, SynergosError
from synergos_mlops.federation import ROLE_FEDERATION, TAG_ROLE, TAG_RUN, ExperimentIds
from synergos_mlops.ingest._parse import (
    FileProblem,
    LossHistory,
    parse_catalogue,
    parse_global_loss,
    parse_local_loss,
    parse_statistics,
    sha256_of,
)
from synergos_mlops.ingest._scan import FileEntry, Kind, Problem, RunFolder, Scan, files_digest
from synergos_mlops.ingest._tags import DIGEST_TAG, MANIFEST_PATH

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "DIGEST_TAG",
    "MANIFEST_PATH",
    "IngestReport",
    "Ingester",
    "ProgressSink",
    "RunOutcome",
]

STATUSES = ("new", "updated", "unchanged", "skipped", "failed")


@dataclass
class RunOutcome:
    """What happened to one run folder."""

    run: str  # collaboration/project/experiment/run
    status: str  # one of STATUSES
    reason: str = ""
    files: int = 0  # files logged
    bytes: int = 0  # bytes logged
    notes: list[Problem] = field(default_factory=list)  # files left out of this run


@dataclass
class IngestReport:
    """Outcomes of runs and problems of files, for one pass or a whole watch."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @classmethod
    def of_scan(cls, scan: Scan) -> IngestReport:
        """What a scan alone says: its problems and the runs it skipped (nothing logged)."""
        report = cls(problems=list(scan.problems))
        report.outcomes = [RunOutcome(s.where, "skipped", s.reason) for s in scan.skipped]
        return report

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> bool:
        return self.count("failed") > 0

    def summary(self) -> list[str]:
        """The summary: one line of counts, then one line per skip and left-out file."""
        counts = ", ".join(f"{self.count(s)} {s}" for s in STATUSES if s != "failed" or self.failed)
        lines = [f"runs: {counts}"]
        for outcome in self.outcomes:
            if outcome.status in ("skipped", "failed"):
                lines.append(f"  {outcome.status} run {outcome.run}: {outcome.reason}")
        notes = self.notes()
        if notes:
            lines.append(f"files and folders left out: {len(notes)}")
            lines.extend(f"  {note}" for note in notes)
        reasons = self.reasons()
        if reasons:
            counted = ", ".join(f"{reason} {count}" for reason, count in reasons.items())
            lines.append(f"catalogue parts left out or missing, by reason: {counted}")
        return lines

    def notes(self) -> list[Problem]:
        """Every problem once (a project's catalogue is part of each of its runs)."""
        return list(dict.fromkeys([*self.problems, *(n for o in self.outcomes for n in o.notes)]))

    def reasons(self) -> dict[str, int]:
        """How many problems there are by reason, of those that name one."""
        counts: dict[str, int] = {}
        for note in self.notes():
            if note.code:
                counts[note.code] = counts.get(note.code, 0) + 1
        return dict(sorted(counts.items()))


class ProgressSink:
    """Told of the work as it goes (the CLI draws a progress bar from it)."""

    def start(self, runs: int, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def run_done(self, outcome: RunOutcome) -> None:
        pass


@dataclass
class _Recorded:
    size: int
    mtime_ns: int
    sha256: str


def _manifest_json(files: dict[str, _Recorded]) -> str:
    return json.dumps(
        {
            "version": 1,
            "files": {
                name: {"size": r.size, "mtime_ns": r.mtime_ns, "sha256": r.sha256}
                for name, r in sorted(files.items())
            },
        },
        indent=1,
        ensure_ascii=False,
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def check_reachable(tracking_uri: str) -> None:
    """Raise IngestError at once when an HTTP tracker does not answer."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=10)
    except requests.RequestException as exc:
        raise IngestError(
            f"the tracking server at {tracking_uri} cannot be reached: {_short(exc)}"
        ) from None


class Ingester:
    """Logs run folders through one FederatedTracker, comparing each with what it holds."""

    def __init__(self, tracking_uri: str | None) -> None:
        if tracking_uri:
            check_reachable(tracking_uri)
        from mlflow import MlflowClient

        from synergos_mlops.tracking import FederatedTracker

        self.tracker = FederatedTracker(tracking_uri)
        self.tracking_uri: str = self.tracker.tracking_uri
        self.client: MlflowClient = MlflowClient(self.tracking_uri)
        self._known: dict[str, dict[str, tuple[str, str | None]]] = {}
        self._experiment_ids: dict[str, str] = {}

    def close(self) -> None:
        """Send what is left and stop the tracker's sender."""
        with warnings.catch_warnings(record=True):
            self.tracker.close()

    # What the tracker holds ---------------------------------------------------------------

    def _existing(self, ids: ExperimentIds) -> dict[str, tuple[str, str | None]]:
        """Parent runs of an experiment: run id -> (MLflow run id, digest tag)."""
        if ids.name in self._known:
            return self._known[ids.name]
        found: dict[str, tuple[str, str | None]] = {}
        experiment = self.client.get_experiment_by_name(ids.name)
        if experiment is not None:
            self._experiment_ids[ids.name] = experiment.experiment_id
            token: str | None = None
            while True:
                page = self.client.search_runs(
                    [experiment.experiment_id],
                    filter_string=f"tags.`{TAG_ROLE}` = '{ROLE_FEDERATION}'",
                    max_results=1000,
                    page_token=token,
                )
                for run in page:
                    name = run.data.tags.get(TAG_RUN)
                    if name is not None and name not in found:
                        found[name] = (run.info.run_id, run.data.tags.get(DIGEST_TAG))
                token = page.token
                if not token:
                    break
        self._known[ids.name] = found
        return found

    def _manifest(self, run_id: str) -> dict[str, _Recorded]:
        try:
            with tempfile.TemporaryDirectory(prefix="synmlops-") as tmp:
                local = self.client.download_artifacts(run_id, MANIFEST_PATH, tmp)
                data = json.loads(Path(local).read_text(encoding="utf-8"))
            return {
                name: _Recorded(int(v["size"]), int(v["mtime_ns"]), str(v["sha256"]))
                for name, v in data["files"].items()
            }
        except Exception:  # no manifest yet, or an unreadable one: compare nothing
            return {}

    def stored(self, runs: Iterable[RunFolder]) -> dict[str, tuple[str, str, str]]:
        """What this ingester knows the tracker holds for ``runs`` (those it looked up or
        logged): label -> (experiment id, parent run id, digest tag)."""
        found: dict[str, tuple[str, str, str]] = {}
        for run in runs:
            name = ExperimentIds(run.collaboration, run.project, run.experiment).name
            run_id, digest = self._known.get(name, {}).get(run.run, (None, None))
            if run_id is None or digest is None:
                continue
            if name not in self._experiment_ids:
                try:
                    experiment = self.client.get_experiment_by_name(name)
                except Exception:  # not known, then: the next pass takes the ordinary way
                    continue
                if experiment is None:
                    continue
                self._experiment_ids[name] = experiment.experiment_id
            found[run.label] = (self._experiment_ids[name], run_id, digest)
        return found

    # One pass -----------------------------------------------------------------------------

    def ingest(self, scan: Scan, progress: ProgressSink | None = None) -> IngestReport:
        progress = progress or ProgressSink()
        report = IngestReport.of_scan(scan)
        progress.start(len(scan.runs) + len(scan.skipped), sum(r.size for r in scan.runs))
        for outcome in report.outcomes:
            progress.run_done(outcome)
        for run in scan.runs:
            outcome = self.ingest_run(run, progress)
            report.outcomes.append(outcome)
            progress.run_done(outcome)
        return report

    def ingest_run(self, run: RunFolder, progress: ProgressSink | None = None) -> RunOutcome:
        """Bring one run folder in; never raises for a problem of the folder or the tracker."""
        progress = progress or ProgressSink()
        try:
            return self._ingest_run(run, progress)
        except (SynergosError, OSError) as exc:
            return RunOutcome(run.label, "failed", _short(exc))
        except Exception as exc:  # MLflow and HTTP errors: report, retry on a later pass
            return RunOutcome(run.label, "failed", f"{type(exc).__name__}: {_short(exc)}")

    def _ingest_run(self, run: RunFolder, progress: ProgressSink) -> RunOutcome:
        ids = ExperimentIds(run.collaboration, run.project, run.experiment)
        existing = self._existing(ids).get(run.run)
        digest = run.digest()
        if existing is not None and existing[1] == digest:
            progress.advance(run.size)
            return RunOutcome(run.label, "unchanged")
        recorded = self._manifest(existing[0]) if existing is not None else {}
        outcome = RunOutcome(run.label, "new" if existing is None else "updated")

        # What changed: size and mtime first, the content's hash only when they moved.
        kept: dict[str, _Recorded] = {}
        changed: list[tuple[FileEntry, str]] = []
        for entry in run.files:
            before = recorded.get(entry.name)
            if before is not None and (before.size, before.mtime_ns) == (
                entry.size,
                entry.mtime_ns,
            ):
                kept[entry.name] = before
                progress.advance(entry.size)
                continue
            try:
                sha = sha256_of(entry)
            except FileProblem as exc:
                outcome.notes.append(Problem(_where(run, entry), str(exc)))
                progress.advance(entry.size)
                continue
            if before is not None and before.sha256 == sha:
                kept[entry.name] = _Recorded(entry.size, entry.mtime_ns, sha)
                progress.advance(entry.size)
                continue
            changed.append((entry, sha))

        if not changed:
            if existing is not None:
                self._record(existing[0], kept, outcome)
                self._known[ids.name][run.run] = (existing[0], files_digest(
                    (name, r.size, r.mtime_ns) for name, r in kept.items()
                ))  # fmt: skip
                outcome.status = "unchanged"
                return outcome
            outcome.status = "skipped"
            outcome.reason = "no file could be read yet; retried later"
            return outcome

        run_id = self._log(run, changed, kept, outcome, progress)
        self._known[ids.name][run.run] = (run_id, files_digest(
            (name, r.size, r.mtime_ns) for name, r in kept.items()
        ))  # fmt: skip
        return outcome

    def _record(self, run_id: str, kept: dict[str, _Recorded], outcome: RunOutcome) -> None:
        """Rewrite the manifest and the digest of what is recorded (touched files)."""
        with tempfile.TemporaryDirectory(prefix="synmlops-") as tmp:
            path = Path(tmp) / "manifest.json"
            path.write_text(_manifest_json(kept), encoding="utf-8")
            self.client.log_artifact(run_id, str(path), "ingest")
        self.client.set_tag(
            run_id, DIGEST_TAG, files_digest((n, r.size, r.mtime_ns) for n, r in kept.items())
        )

    def _log(
        self,
        run: RunFolder,
        changed: list[tuple[FileEntry, str]],
        kept: dict[str, _Recorded],
        outcome: RunOutcome,
        progress: ProgressSink,
    ) -> str:
        changed_names = {entry.name for entry, _ in changed}
        logged: dict[str, _Recorded] = {}
        with (
            tempfile.TemporaryDirectory(prefix="synmlops-") as tmp,
            self.tracker.run(
                collaboration=run.collaboration,
                project=run.project,
                experiment=run.experiment,
                run=run.run,
                hyperparameters={},
                participants=run.participants,
            ) as tracked,
        ):
            failed = self._log_losses(run, changed_names, tracked, outcome)
            step = _final_round(run)
            for entry, sha in changed:
                if entry.name in failed:
                    progress.advance(entry.size)
                    continue
                try:
                    self._log_file(entry, tracked, Path(tmp), step, outcome)
                except FileProblem as exc:
                    outcome.notes.append(Problem(_where(run, entry), str(exc), exc.code))
                    progress.advance(entry.size)
                    continue
                if _moved(entry):
                    outcome.notes.append(
                        Problem(_where(run, entry), "changed while it was logged; retried later")
                    )
                else:
                    logged[entry.name] = _Recorded(entry.size, entry.mtime_ns, sha)
                    outcome.files += 1
                    outcome.bytes += entry.size
                progress.advance(entry.size)
            kept.update(logged)
            manifest = Path(tmp) / "manifest.json"
            manifest.write_text(_manifest_json(kept), encoding="utf-8")
            tracked.log_artifact(manifest, artifact_path="ingest")
            with warnings.catch_warnings(record=True):
                stored = tracked.flush()
            if stored is False:
                raise IngestError(
                    f"the metric points of {run.label} are not stored yet (they wait in the "
                    "tracker's spool); the run is ingested again on the next pass"
                )
            run_id: str = tracked.run_id
        # Last: the digest says "all of this is in", so it is only written once it is.
        self.client.set_tag(
            run_id, DIGEST_TAG, files_digest((n, r.size, r.mtime_ns) for n, r in kept.items())
        )
        return run_id

    def _log_losses(
        self, run: RunFolder, changed: set[str], tracked: Any, outcome: RunOutcome
    ) -> set[str]:
        """Re-log every loss history that changed (whole); return the files that failed."""
        failed: set[str] = set()
        groups: dict[str | None, list[FileEntry]] = {}
        for entry in run.files:
            if entry.kind in (Kind.GLOBAL_LOSS, Kind.LOCAL_LOSS):
                groups.setdefault(entry.participant, []).append(entry)
        for participant, entries in groups.items():
            if not any(e.name in changed for e in entries):
                continue
            # Checkpoints first, the run's own history last: the latest value wins.
            entries.sort(key=lambda e: (e.round is None, e.round or 0, e.epoch or 0))
            merged: dict[str, LossHistory] = {}
            for entry in entries:
                notes: list[str] = []
                try:
                    if participant is None:
                        histories = parse_global_loss(entry, notes)
                    else:
                        histories = {"train": parse_local_loss(entry, notes)}
                except FileProblem as exc:
                    if entry.name in changed:
                        failed.add(entry.name)
                        outcome.notes.append(Problem(_where(run, entry), str(exc)))
                    continue
                if entry.name in changed:
                    outcome.notes.extend(Problem(_where(run, entry), n) for n in notes)
                for stage, history in histories.items():
                    merged.setdefault(stage, {}).update(history)
            by_round: dict[int, dict[str, float]] = {}
            for stage, history in merged.items():
                for round_, loss in history.items():
                    by_round.setdefault(round_, {})[f"{stage}/loss"] = loss
            for round_ in sorted(by_round):
                tracked.log_metrics(by_round[round_], step=round_, participant=participant)
        return failed

    def _log_file(
        self, entry: FileEntry, tracked: Any, tmp: Path, step: int, outcome: RunOutcome
    ) -> None:
        path = _named(entry, tmp)
        p = entry.participant
        checkpoint = entry.round is not None
        if entry.kind in (Kind.GLOBAL_MODEL, Kind.LOCAL_MODEL):
            if checkpoint:
                tracked.log_model(path, participant=p, round=entry.round, epoch=entry.epoch)
            else:
                tracked.log_model(path, participant=p)
        elif entry.kind in (Kind.GLOBAL_LOSS, Kind.LOCAL_LOSS):
            folder = (
                f"checkpoints/round_{entry.round}/epoch_{entry.epoch}"
                if checkpoint
                else "loss_history"
            )
            tracked.log_artifact(path, participant=p, artifact_path=folder)
        elif entry.kind is Kind.CATALOGUE:
            assert p is not None
            partial: list[Note] = []
            try:
                datasets = parse_catalogue(
                    entry, tracked.ids.collaboration, tracked.ids.project, partial
                )
            except FileProblem:
                raise
            except Exception as exc:  # a shape no check foresaw: this file only, not the run
                raise FileProblem(
                    f"could not be read as a data catalogue ({type(exc).__name__}: {_short(exc)})",
                    "unexpected",
                ) from None
            for dataset in datasets:
                tracked.log_dataset(
                    p, dataset.split, dataset.metadata, schema=dataset.schema,
                    headers=dataset.headers,
                )  # fmt: skip
            outcome.notes.extend(Problem(entry.name, str(n), n.reason) for n in partial)
        else:
            assert p is not None and entry.stage is not None
            if entry.kind is Kind.STATISTICS:
                notes: list[str] = []
                statistics = parse_statistics(entry, notes)
                outcome.notes.extend(Problem(entry.name, n) for n in notes)
                if statistics:
                    tracked.log_statistics({p: statistics}, stage=entry.stage, step=step)
            tracked.log_artifact(path, participant=p, artifact_path=f"inference/{entry.stage}")


def _where(run: RunFolder, entry: FileEntry) -> str:
    return f"{run.label}: {entry.name}"


def _moved(entry: FileEntry) -> bool:
    try:
        info = entry.path.stat()
    except OSError:
        return True
    return (info.st_size, info.st_mtime_ns) != (entry.size, entry.mtime_ns)


def _named(entry: FileEntry, tmp: Path) -> Path:
    """The file to hand to the tracker, under its name in the folder (a link may differ)."""
    if entry.path.name == entry.filename:
        return entry.path
    folder = tmp / f"link-{abs(hash(entry.name))}"
    folder.mkdir(exist_ok=True)
    target = folder / entry.filename
    shutil.copyfile(entry.path, target)
    return target


def _final_round(run: RunFolder) -> int:
    """The step of the inference statistics: the run's last round (0 when none is known)."""
    rounds = [e.round for e in run.files if e.round is not None]
    for entry in run.files:
        if entry.kind is Kind.GLOBAL_LOSS and entry.round is None:
            try:
                histories = parse_global_loss(entry, [])
            except FileProblem:
                continue
            rounds.extend(r for h in histories.values() for r in h)
    return max(rounds, default=0)


def summarize(outcomes: Iterable[RunOutcome]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


Echo = Callable[[str], None]
