"""An NVFlare client script: a two-weight linear model, logged through nvflare.client.tracking.

Each site appends what it logged to ``$FLARE_LOGGED`` (one JSON line per call), so the test
can compare it with what the server stored. With ``$FLARE_GATES`` (a folder), site-1 holds each
round from round 1 on: it writes ``<folder>/round-<r>`` and waits for ``<folder>/go-<r>``, so a
test can act between rounds (stop the tracking server, start it again).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import nvflare.client as flare
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.client.tracking import MLflowWriter, SummaryWriter


def note(site: str, kind: str, values: dict, step: int | None) -> None:
    line = {"site": site, "kind": kind, "values": values, "step": step}
    with open(os.environ["FLARE_LOGGED"], "a") as out:
        out.write(json.dumps(line) + "\n")


def gate(site: str, step: int) -> None:
    folder = os.environ.get("FLARE_GATES")
    if not folder or site != "site-1" or step < 1:
        return
    (Path(folder) / f"round-{step}").touch()
    deadline = time.monotonic() + 400
    while not (Path(folder) / f"go-{step}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"round {step} was never let go")
        time.sleep(0.1)


def main() -> None:
    flare.init()
    site = flare.get_site_name()
    offset = 0.1 * int(site.rsplit("-", 1)[-1])
    rng = np.random.default_rng(int(site.rsplit("-", 1)[-1]))
    x = rng.uniform(-1, 1, size=30)
    y = 2 * x + 1 + offset
    mlflow_writer, summary = MLflowWriter(), SummaryWriter()
    while flare.is_running():
        model = flare.receive()
        step = model.current_round
        gate(site, step)
        if step == 0:
            # After the first task: the server drops events sent before its run has started.
            params = {"lr": 0.3, "site_offset": offset}
            mlflow_writer.log_params(params)
            note(site, "params", params, None)
            mlflow_writer.set_tag("hardware", f"cpu-{site}")
            note(site, "tags", {"hardware": f"cpu-{site}"}, None)
            # A name MLflow refuses and a reserved tag, each beside a good one.
            mlflow_writer.log_params({"bad name!": 1, "momentum": 0.9})
            note(site, "params", {"momentum": 0.9}, None)
            mlflow_writer.set_tags({"synergos.participant": "site-9", "os": "linux"})
            note(site, "tags", {"os": "linux"}, None)
            mlflow_writer.log_text("outside the run", "../escape.txt")  # refused, counted
            mlflow_writer.log_text(f"notes of {site}", "notes/site.txt")
            note(site, "text", {"notes/site.txt": f"notes of {site}"}, None)
        w, b = (float(v) for v in np.asarray(model.params["numpy_key"]).ravel())
        before = float(np.mean((w * x + b - y) ** 2))
        for _ in range(5):
            error = w * x + b - y
            w -= 0.3 * float(np.mean(2 * error * x))
            b -= 0.3 * float(np.mean(2 * error))
        loss = float(np.mean((w * x + b - y) ** 2))
        mlflow_writer.log_metric("train/loss", loss, step)
        mlflow_writer.log_metrics({"train/w": w, "train/b": b}, step)
        summary.add_scalar("evaluate/loss", before, step)
        note(site, "metrics", {"train/loss": loss, "train/w": w, "train/b": b}, step)
        note(site, "metrics", {"evaluate/loss": before}, step)
        flare.send(
            FLModel(
                params={"numpy_key": np.array([w, b])},
                metrics={"loss": loss},
                meta={"NUM_STEPS_CURRENT_ROUND": 5},
            )
        )


if __name__ == "__main__":
    main()
