"""First versus second ingest of a generated output tree, against a real server.

    .venv/bin/python benchmarks/ingest_bench.py [--runs 12] [--model-kb 256]

Starts `synmlops serve` on a free port with a temporary store, writes a tree of runs with
four participants and checkpoints over rounds and epochs, ingests it twice, then once more
after one run gained a checkpoint, and prints the timings. Then the command line into a store
folder, as a cron job runs it: `synmlops ingest` first, then again on the unchanged tree (the
whole command, interpreter start included; the second one never loads MLflow).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import start_server  # noqa: E402
from ingest_trees import PARTICIPANTS, write_checkpoint, write_global, write_run  # noqa: E402

from synergos_mlops.ingest import Ingester, scan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model-kb", type=int, default=256)
    args = parser.parse_args()
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
        finally:
            server.stop()
        command = [sys.executable, "-m", "synergos_mlops", "ingest", str(outputs),
                   "--tracking-uri", str(root / "folder-store")]  # fmt: skip
        cli = []
        for label in ("first", "unchanged"):
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            cli.append(time.perf_counter() - started)
            print(f"synmlops ingest into a store folder, {label}: {cli[-1]:.2f} s  "
                  f"({done.stdout.strip().splitlines()[-1]})")  # fmt: skip
        print(f"unchanged / first: {cli[1] / cli[0]:.1%}")


if __name__ == "__main__":
    main()
