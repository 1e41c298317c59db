"""First versus second ingest of a generated output tree, against a real server.

    .venv/bin/python benchmarks/ingest_bench.py [--runs 12] [--model-kb 256]

Starts `synmlops serve` on a free port with a temporary store, writes a tree of runs with
four participants and checkpoints over rounds and epochs, ingests it twice, then once more
after one run gained a checkpoint, and prints the timings. Then the command line, as a cron
job runs it, into a store folder and into the server's URL: `synmlops ingest` first, then
again on the unchanged tree (the whole command, interpreter start included; the unchanged one
decides from its manifest and never loads MLflow; the median of 5). The URL's manifest goes
to a temporary XDG_CACHE_HOME. Writes the command-line table to ``benchmarks/ingest_results.md``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import start_server  # noqa: E402
from ingest_trees import PARTICIPANTS, write_checkpoint, write_global, write_run  # noqa: E402

from benchmarks._report import Machine  # noqa: E402
from synergos_mlops.ingest import Ingester, scan  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "ingest_results.md"
REPEAT = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model-kb", type=int, default=256)
    args = parser.parse_args()
    machine = Machine.now()
    rows: list[tuple[str, list[str], float, float]] = []
    with tempfile.TemporaryDirectory(prefix="synmlops-bench-") as tmp:
        root = Path(tmp)
        outputs = root / "outputs"
        folders = [
            write_run(
                outputs,
                f"collab_{i % 3}",
                "project",
                "experiment",
                f"run_{i}",
                rounds=args.rounds,
                epochs=args.epochs,
                model_bytes=args.model_kb * 1024,
            )  # fmt: skip
            for i in range(args.runs)
        ]
        found = scan(outputs)
        files = sum(len(r.files) for r in found.runs)
        size = sum(r.size for r in found.runs)
        print(f"tree: {len(found.runs)} runs, {files} files, {size / 1e6:.1f} MB")
        server = start_server(root / "store", workers=2)
        try:
            timings = []
            for label in ("first", "second"):
                started = time.perf_counter()
                report = Ingester(server.url).ingest(scan(outputs))
                timings.append(time.perf_counter() - started)
                print(f"{label} ingest: {timings[-1]:.2f} s  ({report.summary()[0]})")
            write_global(folders[0], rounds=args.rounds + 1)
            write_checkpoint(folders[0], args.rounds, 0, PARTICIPANTS, args.model_kb * 1024)
            started = time.perf_counter()
            report = Ingester(server.url).ingest(scan(outputs))
            grown = time.perf_counter() - started
            print(f"after one run grew: {grown:.2f} s  ({report.summary()[0]})")
            print(f"second / first: {timings[1] / timings[0]:.1%}")
            second = root / "outputs-cli"
            for i in range(args.runs):
                write_run(second, f"cli_collab_{i % 3}", "project", "experiment", f"run_{i}",
                          rounds=args.rounds, epochs=args.epochs,
                          model_bytes=args.model_kb * 1024)  # fmt: skip
            env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache")}
            rows.append(
                _cli(
                    "a store folder",
                    [str(outputs), "--tracking-uri", str(root / "folder-store")],
                    env,
                )
            )
            rows.append(_cli("a server URL (`serve --workers 2`)",
                             [str(second), "--tracking-uri", server.url], env))  # fmt: skip
        finally:
            server.stop()
    machine = machine.finished()
    lines = [
        "# `synmlops ingest` of an unchanged tree, against its first ingest",
        "",
        f"{machine.describe()}. Command: `.venv/bin/python benchmarks/ingest_bench.py "
        f"--runs {args.runs} --rounds {args.rounds} --epochs {args.epochs} --model-kb "
        f"{args.model_kb}` ({len(found.runs)} runs, {files} files, {size / 1e6:.1f} MB). The "
        "whole command, interpreter start included; the unchanged one is the median of "
        f"{REPEAT}. The machine is shared and noisy: figures move by tens of percent.",
        "",
        "| into | first | unchanged | unchanged / first | command |",
        "| --- | ---: | ---: | ---: | --- |",
        *(
            f"| {into} | {first:.2f} s | {again:.2f} s | {again / first:.1%} | "
            f"`synmlops ingest {' '.join(_shown(a) for a in arguments)}` |"
            for into, arguments, first, again in rows
        ),
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"written to {RESULTS}")


def _shown(argument: str) -> str:
    """An argument as the table shows it: the temporary folder as ``$TMP``."""
    start = argument.find("synmlops-bench-")
    if start < 0:
        return argument
    rest = argument[start:].split("/", 1)
    return "$TMP" + (f"/{rest[1]}" if len(rest) > 1 else "")


def _cli(
    into: str, arguments: list[str], env: dict[str, str]
) -> tuple[str, list[str], float, float]:
    """Time `synmlops ingest` first and again on the unchanged tree, as a cron job runs it."""
    command = [sys.executable, "-m", "synergos_mlops", "ingest", *arguments]
    print(f"$ {shlex.join(command)}")
    took = []
    for label in ("first", *["unchanged"] * REPEAT):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        took.append(time.perf_counter() - started)
        print(f"synmlops ingest into {into}, {label}: {took[-1]:.2f} s  "
              f"({done.stdout.strip().splitlines()[0]})")  # fmt: skip
    again = statistics.median(took[1:])
    print(f"unchanged (median of {REPEAT}) / first, into {into}: {again / took[0]:.1%}")
    return into, arguments, took[0], again


if __name__ == "__main__":
    main()
