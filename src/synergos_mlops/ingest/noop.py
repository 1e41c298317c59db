"""Would a pass of ``synmlops ingest`` change nothing? Decided before MLflow is loaded.

A pass over a tree nothing touched logs nothing, but reaching that answer through MLflow's
client costs seconds of imports. After a pass that left the store holding exactly the
scanned tree, :func:`remember` writes a small manifest; the next ``synmlops ingest`` with
the same OUTPUTS, ``--worker-outputs`` and target calls :func:`check` first, with the
standard library only:

1. The manifest is found by a key of (target, resolved OUTPUTS and worker folders, format,
   version): in the store folder (``<store>/ingest-manifests/``) for a store folder, in the
   user's cache (``$XDG_CACHE_HOME/synergos_mlops/ingest/``) for a server URL.
2. The tree is walked again without reading any file: every entry's path, type, size,
   ``mtime_ns`` and inode (and a link's target) must give the digest the manifest holds.
3. The store must still hold what the pass left there: every run recorded (by its MLflow run
   id) active, with the digest tag of its files. A store folder is asked with ``sqlite3``
   (read-only), a server with one ``runs/search`` request over ``urllib``. A store that was
   replaced, restored, emptied or written by another ingest since fails this check.

Anything else (no manifest, an unreadable or corrupt one, a tree or a store that moved, a
server that does not answer) answers None and the ordinary pass decides, as it always did.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from synergos_mlops import __version__
from synergos_mlops.ingest._tags import DIGEST_TAG

if TYPE_CHECKING:
    from synergos_mlops.ingest._ingest import IngestReport
    from synergos_mlops.ingest._scan import Scan

__all__ = [
    "FORMAT",
    "STORE_FOLDER_NAME",
    "Roots",
    "StoredRun",
    "cache_folder",
    "check",
    "forget",
    "manifest_path",
    "remember",
    "remember_pass",
    "store_database",
    "tree_digest",
]

FORMAT = 1
#: Where a store folder keeps its ingest manifests.
STORE_FOLDER_NAME = "ingest-manifests"
_SEARCH_CHUNK = 500  # run ids per runs/search request (one request for most trees)
_TIMEOUT = 10.0


class _Worker(Protocol):
    @property
    def participant(self) -> str | None: ...

    @property
    def root(self) -> Path: ...


@dataclass(frozen=True)
class Roots:
    """The folders one ``synmlops ingest`` command reads, resolved."""

    outputs: str
    workers: tuple[tuple[str | None, str], ...] = ()

    @classmethod
    def of(cls, outputs: Path, workers: Sequence[_Worker] = ()) -> Roots:
        return cls(
            os.path.realpath(outputs),
            tuple((w.participant, os.path.realpath(w.root)) for w in workers),
        )

    def folders(self) -> list[str]:
        return [self.outputs, *(path for _, path in self.workers)]


@dataclass(frozen=True)
class StoredRun:
    """A parent run a pass left in the store, with the digest tag of its files."""

    label: str  # collaboration/project/experiment/run
    experiment_id: str
    run_id: str
    digest: str


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def store_database(target: str) -> Path | None:
    """The SQLite file of a store-folder target; None for a server or a database URI."""
    if is_url(target):
        return None
    if target.startswith("file:"):
        target = target.removeprefix("file:").removeprefix("//")
    elif "://" in target:
        return None
    path = Path(target) / "mlflow.db"
    return path if path.is_file() else None


def cache_folder() -> Path:
    """``$XDG_CACHE_HOME/synergos_mlops/ingest``, else ``~/.cache/...``."""
    from synergos_mlops.store import user_cache

    return user_cache("ingest")


def _target_id(target: str) -> str:
    if is_url(target):
        return target.rstrip("/")
    database = store_database(target)
    return f"folder:{os.path.realpath(database.parent)}" if database else target


def _key(target: str, roots: Roots) -> str:
    return json.dumps([FORMAT, __version__, _target_id(target), asdict(roots)])


def manifest_path(target: str, roots: Roots) -> Path | None:
    """Where the manifest of ``roots`` into ``target`` lives; None for a target it does not
    serve (a database URI, a store folder with no store yet)."""
    name = hashlib.sha256(_key(target, roots).encode("utf-8", "surrogateescape")).hexdigest()
    if is_url(target):
        return cache_folder() / f"{name[:32]}.json"
    database = store_database(target)
    if database is None:
        return None
    return database.parent / STORE_FOLDER_NAME / f"{name[:32]}.json"


# The tree ------------------------------------------------------------------------------------


def _walk(folder: str, shown: str, lines: list[str]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        lines.append(f"{shown}\0error\0{type(exc).__name__}")
        return
    for entry in entries:
        name = f"{shown}/{entry.name}"
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            lines.append(f"{name}\0gone")
            continue
        if stat.S_ISDIR(info.st_mode):
            lines.append(f"{name}\0dir")
            _walk(entry.path, name, lines)
        elif stat.S_ISLNK(info.st_mode):
            # A link to a file inside the tree is read under the link's name: its target's
            # place and state are part of what the scan sees.
            try:
                seen = os.stat(entry.path)
                state = f"{seen.st_mode}\0{seen.st_size}\0{seen.st_mtime_ns}\0{seen.st_ino}"
            except OSError:
                state = "dangling"
            lines.append(f"{name}\0link\0{os.readlink(entry.path)}\0{state}")
        else:
            lines.append(
                f"{name}\0{info.st_mode}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}"
            )


def tree_digest(roots: Roots) -> str:
    """A digest of every entry under the roots: path, type, size, mtime_ns, inode (no file is
    read). Take it before the scan a pass works from, so a file that moves during the pass
    makes the next digest differ."""
    lines: list[str] = []
    for index, folder in enumerate(roots.folders()):
        lines.append(f"{index}\0root\0{folder}")
        _walk(folder, str(index), lines)
    hasher = hashlib.sha256()
    for line in lines:
        hasher.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return hasher.hexdigest()


# The store -----------------------------------------------------------------------------------


def _folder_holds(database: Path, runs: Sequence[StoredRun]) -> bool:
    import sqlite3

    wanted = {run.run_id: run.digest for run in runs}
    marks = ",".join("?" * len(wanted))
    query = f"""
        SELECT r.run_uuid, digest.value FROM runs r
        JOIN experiments e ON e.experiment_id = r.experiment_id
        LEFT JOIN tags digest ON digest.run_uuid = r.run_uuid AND digest.key = ?
        WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'
              AND r.run_uuid IN ({marks})
    """  # noqa: S608 (placeholders only)
    try:
        connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        found = dict(connection.execute(query, [DIGEST_TAG, *wanted]).fetchall())
    except sqlite3.Error:  # no such table, locked, not a database
        return False
    finally:
        connection.close()
    return found == wanted


def _request_headers() -> dict[str, str]:
    """The credentials MLflow's own client would send (docs/auth.md)."""
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user and password:
        import base64

        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {basic}"
    return headers


def _tls_context(url: str) -> Any:
    if not url.startswith("https://"):
        return None
    import ssl

    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1"):
        return ssl._create_unverified_context()  # noqa: S323 (the user asked for it)
    return ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))


def _server_holds(url: str, runs: Sequence[StoredRun]) -> bool:
    import urllib.request

    wanted = {run.run_id: run.digest for run in runs}
    ids = sorted(wanted)
    found: dict[str, str | None] = {}
    for start in range(0, len(ids), _SEARCH_CHUNK):
        chunk = ids[start : start + _SEARCH_CHUNK]
        quoted = ", ".join(f"'{run_id}'" for run_id in chunk)
        body = {
            "experiment_ids": sorted({r.experiment_id for r in runs if r.run_id in chunk}),
            "filter": f"attributes.run_id IN ({quoted})",
            "run_view_type": "ACTIVE_ONLY",
            "max_results": len(chunk),
        }
        request = urllib.request.Request(
            f"{url.rstrip('/')}/api/2.0/mlflow/runs/search",
            data=json.dumps(body).encode(),
            headers=_request_headers(),
            method="POST",
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 (http(s) only: is_url)
                request, timeout=_TIMEOUT, context=_tls_context(url)
            ) as response:
                answer = json.loads(response.read())
            for run in answer.get("runs", []):
                if run["info"].get("lifecycle_stage", "active") != "active":
                    continue
                tags = {t["key"]: t.get("value") for t in run.get("data", {}).get("tags", [])}
                found[run["info"]["run_id"]] = tags.get(DIGEST_TAG)
        except Exception:  # unreachable, refused, not MLflow, an answer of another shape
            return False
    return found == wanted


def _holds(target: str, runs: Sequence[StoredRun]) -> bool:
    if not runs:
        return False
    if is_url(target):
        return _server_holds(target, runs)
    database = store_database(target)
    return database is not None and _folder_holds(database, runs)


# The manifest --------------------------------------------------------------------------------


def check(target: str, roots: Roots) -> str | None:
    """The one line to say when ingesting ``roots`` into ``target`` would change nothing;
    None when the ordinary pass must decide (never raises for what it reads)."""
    try:
        path = manifest_path(target, roots)
        if path is None:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["key"] != _key(target, roots):
            return None
        runs = [StoredRun(**run) for run in data["runs"]]
        summary = str(data["summary"])
        if data["tree"] != tree_digest(roots) or not _holds(target, runs):
            return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None  # no manifest, or one that cannot be read: the ordinary pass decides
    return f"{summary}; nothing changed since the last ingest"


def remember(
    target: str,
    roots: Roots,
    tree: str,
    runs: Iterable[StoredRun],
    summary: str,
) -> Path | None:
    """Write the manifest of a pass that left ``target`` holding exactly the tree whose
    :func:`tree_digest` was ``tree``; ``summary`` is the pass's count line as a no-op would
    say it. Never raises: a manifest that cannot be written only costs the next pass time."""
    path = manifest_path(target, roots)
    if path is None:
        return None
    data = {
        "key": _key(target, roots),
        "tree": tree,
        "runs": [asdict(run) for run in runs],
        "summary": summary,
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        return None
    return path


def forget(target: str, roots: Roots) -> None:
    """Remove the manifest of ``roots`` into ``target`` (a pass that did not end clean)."""
    path = manifest_path(target, roots)
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def remember_pass(
    target: str,
    roots: Roots,
    tree: str,
    scan: Scan,
    report: IngestReport,
    stored: Mapping[str, tuple[str, str, str]],
) -> Path | None:
    """After a pass over ``scan`` (taken after ``tree``): remember it when the store now holds
    every run of the scan with the scan's own digest and nothing failed; otherwise forget any
    manifest of these roots. ``stored`` maps a run's label to (experiment id, parent run id,
    digest tag) as the pass left them."""
    from synergos_mlops.ingest._ingest import IngestReport, RunOutcome

    runs: list[StoredRun] = []
    for run in scan.runs:
        found = stored.get(run.label)
        if report.failed or found is None or found[2] != run.digest():
            forget(target, roots)
            return None
        runs.append(StoredRun(run.label, *found))
    again = IngestReport.of_scan(scan)
    again.outcomes += [RunOutcome(run.label, "unchanged") for run in scan.runs]
    summary = again.summary()[0]
    if again.notes():
        summary += f"; {len(again.notes())} files and folders left out, as listed then"
    return remember(target, roots, tree, runs, summary)
