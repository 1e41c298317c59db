"""A run's artifacts: listing, one file, and the whole run as one streamed ZIP.

The ZIP is written by :mod:`zipfile` into a sink that is emptied after every chunk, so the
memory used does not grow with the run's size: at most one chunk of input and its
compressed output are held at a time. Files are read through the artifact repository of
the server's artifacts destination (or of the run's own artifact URI).

Layout of a run's bundle::

    hyperparameters.json                        the run's data, written from the stores
    metrics.csv                                 (see :mod:`synergos_mlops.views.run_data`)
    statistics.csv
    model_versions.json
    global/<artifact path>                      the federation (parent) run's artifacts
    participants/<participant id>/<path>        each participant's artifacts
    system.csv                                  hardware series (participant, key, step,
                                                value, timestamp), when monitored

A participant's bundle holds its files at the top level.

A run the original Synergos TTP logged keeps every file in the parent run's one flat folder;
``local_model_<p>.pt`` and ``local_loss_history_<p>.json`` there belong to participant ``p``
and are listed and bundled with that participant (:func:`owned_artifacts`). Files in a local
artifact folder that are links leading out of it are never listed or served.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

from synergos_mlops.storage.reads import RunRow
from synergos_mlops.views.federated_runs import Backend, FederatedRun, NotFoundError
from synergos_mlops.views.run_data import ArtifactFile, DataFile, data_files

__all__ = [
    "ArtifactFile",
    "BundleItem",
    "UnsafePathError",
    "bundle_entries",
    "bundle_time",
    "iter_zip",
    "list_artifacts",
    "RunArtifacts",
    "open_artifact",
    "owned_artifacts",
    "safe_relative_path",
    "write_zip",
    "zip_folder_name",
]

CHUNK = 1024 * 1024
ZIP64_LIMIT = (1 << 31) - 1


class UnsafePathError(ValueError):
    """An artifact path that could leave the run's artifact root."""


#: What a bundle holds: artifact files and data files written from the stores.
BundleItem = ArtifactFile | DataFile


def safe_relative_path(path: str) -> str:
    """``path`` as a clean relative POSIX path, or UnsafePathError.

    Refuses absolute paths, ``..`` and ``.`` segments, empty segments, backslashes and
    control characters, so that no form of the path can leave the run's artifact root.
    """
    if not path:
        raise UnsafePathError("the artifact path is empty")
    if "\\" in path or any(ord(c) < 32 or c == "\x7f" for c in path):
        raise UnsafePathError(f"artifact path {path!r} holds a backslash or control character")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise UnsafePathError(f"artifact path {path!r} must be relative")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePathError(f"artifact path {path!r} must not hold empty, '.' or '..' parts")
    return posixpath.join(*parts)


def _escapes(repo: Any, path: str) -> bool:
    """True for a file of a local repository that is a link leading out of its folder."""
    folder = getattr(repo, "artifact_dir", None)
    if not isinstance(folder, str):
        return False
    real_root = os.path.realpath(folder)
    real = os.path.realpath(os.path.join(folder, path))
    return real != real_root and not real.startswith(real_root + os.sep)


def _walk(repo: Any, root: str, path: str) -> Iterator[ArtifactFile]:
    full = posixpath.join(root, path) if path else root
    try:
        entries = repo.list_artifacts(full or None)
    except OSError:
        return
    for info in sorted(entries, key=lambda i: i.path):
        # Repositories return paths relative to their own root.
        relative = posixpath.relpath(info.path, root) if root else info.path
        if relative in (".", path) or relative.startswith(".."):
            continue
        if _escapes(repo, info.path):
            continue
        if info.is_dir:
            yield from _walk(repo, root, relative)
        else:
            yield ArtifactFile(repo, posixpath.join(root, relative), relative, info.file_size)


def list_artifacts(backend: Backend, run: RunRow) -> list[ArtifactFile]:
    """Every artifact file of one MLflow run, sorted by path (a path held in two of the
    run's locations is the first location's)."""
    found: dict[str, ArtifactFile] = {}
    for repo, root in backend.artifact_roots(run):
        for item in _walk(repo, root, ""):
            found.setdefault(item.relative, item)
    return [found[path] for path in sorted(found)]


def find_artifact(backend: Backend, run: RunRow, path: str, owner: str) -> ArtifactFile:
    """One artifact file of a run, checked against the run's listing."""
    relative = safe_relative_path(path)
    parent = posixpath.dirname(relative)
    for repo, root in backend.artifact_roots(run):
        for item in _walk_one(repo, root, parent):
            if item.relative == relative:
                return item
    raise NotFoundError(f"artifact {relative!r} not found in {owner}")


def _walk_one(repo: Any, root: str, folder: str) -> Iterator[ArtifactFile]:
    full = posixpath.join(root, folder) if folder else root
    try:
        entries = repo.list_artifacts(full or None)
    except OSError:
        return
    for info in entries:
        relative = posixpath.relpath(info.path, root) if root else info.path
        if not info.is_dir and not _escapes(repo, info.path):
            yield ArtifactFile(repo, posixpath.join(root, relative), relative, info.file_size)


@contextmanager
def open_artifact(item: ArtifactFile) -> Iterator[IO[bytes]]:
    """A binary file object over one artifact; remote ones are fetched to a temporary file."""
    local = None
    get_local = getattr(item.repo, "get_local_path", None)
    if get_local is not None:
        local = get_local(item.path)
    if local is not None:
        with open(local, "rb") as handle:
            yield handle
        return
    folder = tempfile.mkdtemp(prefix="synmlops-artifact-")
    try:
        fetched = item.repo.download_artifacts(item.path, dst_path=folder)
        with open(fetched, "rb") as handle:
            yield handle
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def zip_folder_name(participant_id: str) -> str:
    """A participant id as one ZIP folder name that cannot climb out of ``participants/``.

    Ids written by the tracker never hold ``/``, but a participant tag set by another MLflow
    client may hold anything; such an id is percent-encoded (``..`` becomes ``%2E%2E``).
    """
    try:
        if safe_relative_path(participant_id) == participant_id and "/" not in participant_id:
            return participant_id
    except UnsafePathError:
        pass
    encoded = quote(participant_id, safe="")
    return encoded.replace(".", "%2E") if encoded.strip(".") == "" else encoded


@dataclass(frozen=True)
class RunArtifacts:
    """A federated run's artifact files by owner."""

    shared: list[ArtifactFile]
    """The parent run's files that are global."""
    moved: dict[str, list[ArtifactFile]]
    """The parent run's flat files that belong to a participant (the original TTP's layout)."""
    own: dict[str, list[ArtifactFile]]
    """Each participant run's own files."""

    def of(self, participant: str) -> list[ArtifactFile]:
        return self.moved.get(participant, []) + self.own.get(participant, [])


def owned_artifacts(backend: Backend, run: FederatedRun) -> RunArtifacts:
    """The run's artifact files: the global ones, and each participant's (its own run's files
    and the top-level ``local_model_<p>.*`` / ``local_loss_history_<p>.*`` of the parent's
    flat folder, where the original TTP put them)."""
    from synergos_mlops.legacy import legacy_participant_of_artifact

    known = {row.synergos_id for row in run.participants}
    shared: list[ArtifactFile] = []
    moved: dict[str, list[ArtifactFile]] = {}
    for item in list_artifacts(backend, run.parent):
        owner = None if "/" in item.relative else legacy_participant_of_artifact(item.relative)
        if owner is not None and owner in known:
            moved.setdefault(owner, []).append(item)
        else:
            shared.append(item)
    own = {row.synergos_id: list_artifacts(backend, row) for row in run.participants}
    return RunArtifacts(shared, moved, own)


def bundle_entries(
    backend: Backend,
    run: FederatedRun,
    participant: str | None = None,
    *,
    visible: list[str] | None = None,
) -> list[tuple[str, BundleItem]]:
    """``(name in the ZIP, file)`` for a whole run (its data files, every artifact, the
    hardware series and the log records), or for one participant (its own). ``visible``:
    the participants whose log records the reader may see (None: every one)."""
    from synergos_mlops.views.logs import bundle_log_entries

    files = owned_artifacts(backend, run)
    if participant is not None:
        run.participant(participant)  # NotFoundError naming it
        own: list[tuple[str, BundleItem]] = [
            (safe_relative_path(item.relative), item) for item in files.of(participant)
        ]
        own += _system_entries(backend, run, participant)
        return own + bundle_log_entries(backend.engine, run, participant, visible=visible)
    entries: list[tuple[str, BundleItem]] = [*data_files(backend, run)]
    entries += [(f"global/{item.relative}", item) for item in files.shared]
    for row in run.participants:
        prefix = f"participants/{zip_folder_name(row.synergos_id)}/"
        entries += [(prefix + item.relative, item) for item in files.of(row.synergos_id)]
    entries += _system_entries(backend, run)
    entries += bundle_log_entries(backend.engine, run, visible=visible)
    # Every name is a clean relative path, so no bundle can unpack outside its folder.
    return [(safe_relative_path(name), item) for name, item in entries]


def _system_entries(
    backend: Backend, run: FederatedRun, participant: str | None = None
) -> list[tuple[str, BundleItem]]:
    """``system.csv``: the participants' hardware series, when there are any."""
    from synergos_mlops.views.system import system_csv_entries

    return system_csv_entries(backend, run, participant)


class _Sink(io.RawIOBase):
    """A write-only, non-seekable stream whose written bytes are taken out in pieces."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _item_chunks(item: BundleItem) -> Iterator[bytes]:
    if isinstance(item, DataFile):
        yield from item.chunks()
    else:
        yield from iter_file(item)


def bundle_time(run: FederatedRun) -> float:
    """When a bundle's generated entries (data files, logs, hardware series) are dated: the
    run's end, or now for a run that has not ended (seconds since the epoch)."""
    end = run.parent.end_time
    return end / 1000 if end else time.time()


def _item_time(item: BundleItem, default: float) -> float:
    """An artifact's own modification time where the file is on this machine, else
    ``default``."""
    if isinstance(item, ArtifactFile):
        get_local = getattr(item.repo, "get_local_path", None)
        if get_local is not None:
            try:
                local = get_local(item.path)
                if local is not None:
                    return os.stat(local).st_mtime
            except (OSError, NotImplementedError):
                pass
    return default


def _zip_date(when: float) -> tuple[int, int, int, int, int, int]:
    """A ZIP entry's date (local time, as zip tools write it); ZIP cannot say before 1980."""
    local = time.localtime(when)
    if local.tm_year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (local.tm_year, local.tm_mon, local.tm_mday, local.tm_hour, local.tm_min,
            local.tm_sec)  # fmt: skip


def iter_zip(
    entries: list[tuple[str, BundleItem]], generated_at: float | None = None
) -> Iterator[bytes]:
    """Yield a ZIP of ``entries`` piece by piece, never holding more than a chunk or so.

    Artifact entries carry their files' modification times; generated entries carry
    ``generated_at`` (:func:`bundle_time`; now when not given)."""
    default = time.time() if generated_at is None else generated_at
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, item in entries:
            info = zipfile.ZipInfo(name, date_time=_zip_date(_item_time(item, default)))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            big = item.size is None or item.size > ZIP64_LIMIT
            with zf.open(info, "w", force_zip64=big) as target:
                for chunk in _item_chunks(item):
                    target.write(chunk)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data


def write_zip(
    entries: list[tuple[str, BundleItem]], out: IO[bytes], generated_at: float | None = None
) -> int:
    """Write the ZIP of ``entries`` to ``out``; return the bytes written."""
    written = 0
    for data in iter_zip(entries, generated_at):
        out.write(data)
        written += len(data)
    return written


def iter_file(item: ArtifactFile) -> Iterator[bytes]:
    with open_artifact(item) as source:
        while chunk := source.read(CHUNK):
            yield chunk


def content_type(path: str) -> str:
    import mimetypes

    guessed, _ = mimetypes.guess_type(os.path.basename(path))
    return guessed or "application/octet-stream"
