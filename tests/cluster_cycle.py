"""One federated cycle as an orchestrator logs it: a real process with a FederatedTracker.

Run by the Cluster-tier tests (tests/cluster_support.py), several at once::

    python tests/cluster_cycle.py URL REPORT.json --run r1 --participants 5 --rounds 50 --keys 20

Per round: every participant's and the global values of ``--keys`` metric keys (values from
``cluster_support.value_of``), and a small global checkpoint (``log_model``). Writes a JSON
report: the MLflow ids, points logged, retried requests, seconds taken. Exits non-zero when
anything could not be stored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_support import model_bytes, value_of  # noqa: E402

from synergos_mlops import FederatedTracker, TrackerConfig  # noqa: E402

COLLABORATION = "cluster"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("report", type=Path)
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--participants", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--pace", type=float, default=0.0)
    parser.add_argument("--no-models", action="store_true")
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--flush-interval", type=float, default=1.0)
    args = parser.parse_args()

    config = TrackerConfig(
        spool_dir=args.spool,
        batch_size=args.batch_size,
        flush_interval=args.flush_interval,
        flush_timeout=600,
        connect_timeout=600,
        request_timeout=120,
        retry_interval=1.0,
    )
    participants = [f"worker_{i}" for i in range(args.participants)]
    keys = [f"evaluate/metric_{k:02d}" for k in range(args.keys)]
    started = time.monotonic()
    tracker = FederatedTracker(args.url, config)
    with tracker.run(
        COLLABORATION, "tuning", "grid", args.run,
        hyperparameters={"algorithm": "FedAvg", "rounds": args.rounds, "run": args.run},
        participants=participants,
    ) as run:  # fmt: skip
        for step in range(args.rounds):
            run.log_metrics({key: value_of(-1, k, step) for k, key in enumerate(keys)}, step=step)
            for index, participant in enumerate(participants):
                values = {key: value_of(index, k, step) for k, key in enumerate(keys)}
                run.log_metrics(values, step=step, participant=participant)
            if not args.no_models:
                run.log_model(model_bytes(args.run, step), round=step)
            if args.pace:
                time.sleep(args.pace)
        stored = run.flush()
    tracker.close()
    report = {
        "run": args.run,
        "run_id": run.run_id,
        "experiment_id": run.experiment_id,
        "participants": {p: run.participant_run_id(p) for p in participants},
        "points": (len(participants) + 1) * args.rounds * len(keys),
        "flushed": stored,
        "retries": tracker.retries,
        "seconds": time.monotonic() - started,
    }
    args.report.write_text(json.dumps(report))
    return 0 if stored else 1


if __name__ == "__main__":
    sys.exit(main())
