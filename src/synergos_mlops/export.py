"""``synmlops export``: one federated run's artifacts as one ZIP file.

From a server URL the bundle is downloaded from ``/api/synergos/v1/runs/.../bundle.zip``; from
a store folder it is written in this process by the same bundle writer the server uses.
The ZIP is written next to the output as a hidden ``.part`` file and renamed into place only
once it is complete and readable, so a failure never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote, urlparse

from synergos_mlops.errors import ServerUnavailableError, StoreError, SynergosError
from synergos_mlops.federation import ExperimentIds, validate_id

__all__ = ["ExportError", "ExportRequest", "export_run"]

API_PREFIX = "/api/synergos/v1"  # the server's; kept here so the client never imports it
CHUNK = 256 * 1024


class ExportError(SynergosError):
    """The server refused the export or the output cannot be written."""


def _segment(value: str) -> str:
    """One URL path segment; ``.`` and ``..`` escaped, so no client resolves them away."""
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


@dataclass(frozen=True)
class ExportRequest:
    collaboration: str
    project: str
    experiment: str
    run: str
    participant: str | None = None

    def __post_init__(self) -> None:
        ExperimentIds(self.collaboration, self.project, self.experiment)
        validate_id("run", self.run)
        if self.participant is not None:
            validate_id("participant", self.participant)

    @property
    def api_path(self) -> str:
        ids = (self.collaboration, self.project, self.experiment, self.run)
        path = f"{API_PREFIX}/runs/" + "/".join(_segment(i) for i in ids)
        if self.participant is not None:
            path += f"/participants/{_segment(self.participant)}"
        return path + "/bundle.zip"


class _Progress:
    """A rich progress bar on stderr (silent when ``show`` is false)."""

    def __init__(self, description: str, total: int | None, show: bool) -> None:
        self._bar = None
        if show:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            task = self._bar.tasks[0]
            self._bar.update(self._task, total=task.completed)


def _check_output(output: Path) -> Path:
    """The folder the output goes to; ExportError when it cannot be written there."""
    parent = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise ExportError(f"output {output} is a folder; give a file name such as run.zip")
    if not parent.is_dir():
        raise ExportError(f"folder {parent} of the output does not exist")
    return parent


def _umask() -> int:
    """The process's umask: from /proc on Linux (no other thread sees it change), else by
    setting it and setting it back at once."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("Umask:"))
        return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _atomic_output(output: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside ``output`` that replaces it only on success."""
    parent = _check_output(output)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=parent)
    except OSError as exc:
        raise ExportError(f"cannot write in {parent}: {exc.strerror}") from None
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            # mkstemp makes the file private (0600); the output is an ordinary file, so it
            # gets the mode the user's umask gives to new files.
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
        try:
            with zipfile.ZipFile(partial) as check:
                check.namelist()
        except zipfile.BadZipFile:
            raise ExportError("the bundle arrived incomplete; nothing was written") from None
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _error_message(response: object) -> str:
    try:
        body = response.json()  # type: ignore[attr-defined]
        return str(body["error"]["message"])
    except Exception:  # noqa: BLE001 - any unreadable body: fall back to the status line
        status = getattr(response, "status_code", "?")
        return f"the server answered {status} {getattr(response, 'reason', '')}".strip()


def _download(url: str, request: ExportRequest, output: Path, show: bool) -> int:
    import requests

    from synergos_mlops.tracking.tls import tls_options

    target = url.rstrip("/") + request.api_path
    try:
        response = requests.get(target, stream=True, timeout=(10, 600), **tls_options())
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise ServerUnavailableError(
            f"cannot reach the tracking server at {url} ({reason})"
        ) from None
    with response:
        if response.status_code != 200:
            raise ExportError(_error_message(response))
        if "zip" not in response.headers.get("Content-Type", ""):
            raise ExportError(f"{url} is not a Synergos MLOps server (no bundle at {target})")
        written = 0
        with (
            _atomic_output(output) as handle,
            _Progress(f"Exporting {request.run}", None, show) as progress,
        ):
            try:
                for chunk in response.iter_content(CHUNK):
                    handle.write(chunk)
                    written += len(chunk)
                    progress.advance(len(chunk))
            except requests.RequestException:
                raise ExportError("the connection broke during the download") from None
            progress.finish()
    return written


def _store_folder(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


def _write_local(folder: Path, request: ExportRequest, output: Path, show: bool) -> int:
    from synergos_mlops.views.bundle import bundle_entries, bundle_time, iter_zip
    from synergos_mlops.views.federated_runs import Backend, NotFoundError, resolve_run

    if not folder.is_dir():
        raise StoreError(f"store folder {folder} does not exist")
    backend = Backend.of_store_folder(folder)
    try:
        found = resolve_run(
            backend, request.collaboration, request.project, request.experiment, request.run
        )
        entries = bundle_entries(backend, found, request.participant)
    except NotFoundError as exc:
        raise ExportError(str(exc)) from None
    total = sum(item.size or 0 for _name, item in entries)
    written = 0
    with (
        _atomic_output(output) as handle,
        _Progress(f"Exporting {request.run}", total or None, show) as progress,
    ):
        done = 0
        for data in iter_zip(entries, bundle_time(found)):
            handle.write(data)
            written += len(data)
            # Advance by input bytes as zip output trails them; close enough for a bar.
            step = min(len(data), max(total - done, 0))
            done += step
            progress.advance(step)
        progress.finish()
    return written


def export_run(
    request: ExportRequest, output: Path, tracking_uri: str | None, *, progress: bool = True
) -> int:
    """Write the run's bundle to ``output``; return its size in bytes."""
    _check_output(output)
    if not tracking_uri:
        raise ExportError("no tracking server: give --tracking-uri or set MLFLOW_TRACKING_URI")
    scheme = urlparse(tracking_uri).scheme
    if scheme in ("http", "https"):
        _download(tracking_uri, request, output, progress)
    else:
        folder = _store_folder(tracking_uri)
        if folder is None:
            raise ExportError(
                f"tracking URI {tracking_uri!r} is neither a server URL nor a store folder"
            )
        _write_local(folder, request, output, progress)
    return output.stat().st_size
