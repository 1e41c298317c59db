"""The guard between ``synmlops serve`` and MLflow's server: every process of the server dies
with ``synmlops serve``, however it dies.

::

    synmlops serve
     └─ python -m synergos_mlops.server.guard SERVE_PID -- python -m uvicorn ...  (this module)
         └─ uvicorn, serving the synergos app      (a process group of its own)
             └─ uvicorn workers                     (same group, when --workers > 1)

``synmlops serve`` killed with SIGKILL cannot stop its children; the guard can. It asks the
kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``) and also watches its
parent's pid, then stops the whole group: SIGTERM to uvicorn (which stops its workers), and
SIGKILL to whatever of the group is left after :data:`GRACE` seconds. uvicorn gets the same
parent-death signal from the guard, so the server also stops should the guard itself be
killed. SIGTERM and SIGINT sent to the guard are
forwarded to uvicorn; the guard exits with its exit code, once the group is gone.

Only the standard library is imported here: the guard starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

__all__ = ["GRACE", "GUARD_MODULE", "guarded_command", "main"]

GUARD_MODULE = "synergos_mlops.server.guard"
#: Seconds between SIGTERM and SIGKILL for the server's process group.
GRACE = 20.0
_PR_SET_PDEATHSIG = 1
_POLL = 0.25


def guarded_command(command: list[str], parent_pid: int | None = None) -> list[str]:
    """``command`` run under a guard that stops it when ``parent_pid`` (this process) dies."""
    parent = os.getpid() if parent_pid is None else parent_pid
    return [sys.executable, "-m", GUARD_MODULE, str(parent), "--", *command]


def _die_with_parent(sig: int) -> None:
    """Ask Linux for ``sig`` when the parent process dies (nothing on other systems)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the pid watch below still stops us
        return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop_group(child: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the server and its group, then SIGKILL to what is left after ``grace``."""
    pgid = child.pid
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        child.poll()  # reap the leader, so a zombie does not count as alive
        if not _group_alive(pgid):
            return
        if child.returncode is not None:
            # The server's main process has gone; its workers may not have heard: tell the group.
            _signal_group(pgid, signal.SIGTERM)
        time.sleep(_POLL)
    _signal_group(pgid, signal.SIGKILL)
    child.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print(
            "usage: python -m synergos_mlops.server.guard PARENT_PID -- COMMAND...", file=sys.stderr
        )
        return 2
    parent_pid, command = int(args[0]), args[2:]
    _die_with_parent(signal.SIGTERM)
    orphaned = os.getppid() != parent_pid  # the parent died before prctl: stop at once
    received: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, note)
    if orphaned:
        return 1
    child = subprocess.Popen(
        command,
        process_group=0,  # the server and every process it starts: one group, ours to stop
        preexec_fn=lambda: _die_with_parent(signal.SIGTERM),  # this process is single-threaded
    )
    forwarded = 0
    while True:
        try:
            code = child.wait(timeout=_POLL)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            # The server stopped by itself or on a forwarded signal: let no process outlive it.
            _stop_group(child, grace=min(GRACE, 5.0))
            return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell
        if os.getppid() != parent_pid:  # synmlops serve has gone: stop the whole server
            _stop_group(child, GRACE)
            return 1
        while forwarded < len(received):
            if child.poll() is None:
                child.send_signal(received[forwarded])
            forwarded += 1


if __name__ == "__main__":
    sys.exit(main())
