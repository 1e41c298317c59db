"""A tuning study at scale: the study's API and its Command Station page (``make bench`` runs
it; alone: ``.venv/bin/python -m benchmarks.study_bench [--trials 200 --participants 10
--rounds 100] [--hardware]``).

A study of trials × participants × rounds (one round-level key, ``evaluate/accuracy``, for the
global run and every participant) is logged through ``FederatedTracker`` into a real
``synmlops serve``; with ``--hardware``, every participant of every trial also gets hardware
samples, so the study's answer carries each trial's hardware cost. Measured: the study's API
answer (best of 5 requests, after one warm-up) and the time until the study page has drawn
every chart in headless Chromium (the page's own ``chartsDrawnMs``, from navigation start;
median of 3 loads). Goals from the Cluster tier:
API under 300 ms, page under 2 s. Stock MLflow has no study to compare with.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import start_server  # noqa: E402

from synergos_mlops import FederatedTracker, TrackerConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "study_results.md"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
IDS = ("bench", "tuning", "fedprox")
STUDY = "lr search"


def post_hardware(url: str, names: list[str], opened: int, closing: int) -> None:
    """Three samples of four hardware keys per participant, between the trial's start and
    now (as monitors beside each participant would send), attached to the trial's runs."""
    from synergos_mlops.storage.batch import MetricBatch
    from synergos_mlops.storage.samples import encode_samples, target

    batch = MetricBatch()
    stamps = [opened + 1, (opened + closing) // 2, closing]
    for i, name in enumerate(names):
        who = target(IDS[0], name)
        for j, stamp in enumerate(stamps):
            batch.append(who, "system/process_cpu_utilization_percentage", 0, 90.0 + i + j, stamp)
            batch.append(who, "system/process_memory_rss_megabytes", 0, 500.0 + 10 * i, stamp)
            batch.append(who, "system/cpu_utilization_percentage", 0, 40.0 + j, stamp)
            batch.append(who, "system/network_receive_megabytes", 0, 1.0 * j, stamp)
    response = requests.post(
        f"{url}/api/synergos/v1/system/samples", data=encode_samples(batch, {}), timeout=120,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )  # fmt: skip
    response.raise_for_status()


def log_study(
    url: str, spool: Path, trials: int, participants: int, rounds: int, hardware: bool = False
) -> float:
    space = {
        "lr": {"_type": "loguniform", "_value": [0.0001, 0.1]},
        "mu": {"_type": "choice", "_value": [0.0, 0.01, 0.1]},
    }
    names = [f"site-{i}" for i in range(participants)]
    started = time.perf_counter()
    with FederatedTracker(url, TrackerConfig(spool_dir=spool)) as tracker:
        study = tracker.study(*IDS, STUDY, space, metric="evaluate/accuracy", direction="maximize")
        for t in range(trials):
            lr = 0.0001 * (1.05**t) % 0.1 or 0.001
            with study.trial({"lr": lr, "mu": [0.0, 0.01, 0.1][t % 3]}, participants=names) as run:
                opened = int(time.time() * 1000)
                quality = 0.5 + 0.4 * ((t * 37) % trials) / trials
                for r in range(rounds):
                    value = quality * (1 - 1 / (r + 2))
                    run.log_metrics({"evaluate/accuracy": value}, step=r)
                    for i, name in enumerate(names):
                        run.log_metrics(
                            {"evaluate/accuracy": value - 0.01 * i}, step=r, participant=name
                        )
                if hardware:
                    post_hardware(url, names, opened, int(time.time() * 1000))
            if (t + 1) % 25 == 0:
                print(f"  {t + 1} trials logged", flush=True)
    return time.perf_counter() - started


def api_seconds(url: str) -> tuple[float, int, int]:
    path = "/".join(quote(part, safe="") for part in (*IDS, STUDY))
    target = f"{url}/api/synergos/v1/studies/{path}"
    requests.get(target, timeout=120).raise_for_status()  # warm
    times = []
    trials = costed = 0
    for _ in range(5):
        started = time.perf_counter()
        response = requests.get(target, timeout=120)
        times.append(time.perf_counter() - started)
        response.raise_for_status()
        trials = len(response.json()["trials"])
        costed = sum(t["hardware"] is not None for t in response.json()["trials"])
    return min(times), trials, costed


def page_seconds(url: str) -> list[float]:
    from playwright.sync_api import sync_playwright

    path = "/".join(quote(part, safe="") for part in (*IDS, STUDY))
    loads = []
    with sync_playwright() as manager:
        browser = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(3):
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{url}/synergos/studies/{path}")
            page.wait_for_function(
                "document.body.dataset.chartsDrawnMs !== undefined"
                " && document.body.dataset.chartsSettled === document.body.dataset.charts",
                timeout=120_000,
            )
            loads.append(float(page.evaluate("document.body.dataset.chartsDrawnMs")) / 1000)
            page.close()
        browser.close()
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.study_bench")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--hardware",
        action="store_true",
        help="also send hardware samples for every participant of every trial",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    points = args.trials * (args.participants + 1) * args.rounds
    with tempfile.TemporaryDirectory(prefix="synmlops-study-bench-") as tmp:
        server = start_server(Path(tmp) / "store", workers=2)
        try:
            print(f"logging {args.trials} trials × {args.participants} participants × "
                  f"{args.rounds} rounds ({points:,} points) ...", flush=True)  # fmt: skip
            logged = log_study(server.url, Path(tmp) / "spool", args.trials, args.participants,
                               args.rounds, args.hardware)  # fmt: skip
            api, trials, costed = api_seconds(server.url)
            assert trials == args.trials, (trials, args.trials)
            assert costed == (trials if args.hardware else 0), (costed, trials)
            loads = page_seconds(server.url)
        finally:
            server.stop()
    page = statistics.median(loads)
    lines = [
        f"A study of {args.trials} trials × {args.participants} participants × {args.rounds} "
        f"rounds ({points:,} points, logged in {logged:.0f} s"
        + (", with 3 hardware samples of 4 keys per participant and trial" if args.hardware else "")
        + f") in `synmlops serve --workers 2` "
        f"on SQLite, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| measure | result | goal |",
        "| --- | --- | --- |",
        f"| study API answer (best of 5) | {api * 1000:.0f} ms | < 300 ms "
        f"{'✓' if api < 0.3 else '✗'} |",
        f"| study page, every chart drawn (median of 3, headless Chromium) | {page:.2f} s "
        f"({', '.join(f'{x:.2f}' for x in loads)}) | < 2 s {'✓' if page < 2 else '✗'} |",
    ]
    print("\n".join(lines))
    args.output.write_text("\n".join(lines) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
