"""``synmlops demo``: what the command prints around :func:`run_demo`.

Progress goes to stderr (a bar over rounds); stdout gets the result and, as its last line,
where to see the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from synergos_mlops.demo.record import DemoConfig, DemoResult, run_demo
from synergos_mlops.demo.target import (
    check_reachable,
    holds_runs,
    is_server,
    run_links,
    store_folder_of,
)
from synergos_mlops.demo.training import RoundResult
from synergos_mlops.settings import setting

if TYPE_CHECKING:
    from synergos_mlops.tracking import FederatedTracker

__all__ = ["demo", "summary_lines"]


def summary_lines(result: DemoResult, *, serve_hint: bool = True) -> list[str]:
    """What the demo reports; the last line says where to see the run (for a store folder,
    how to serve it, unless ``serve_hint`` is off because the caller serves it next)."""
    station, mlflow_ui = run_links(
        result.tracking_uri, result.ids, result.run, result.experiment_id, result.run_id
    )
    lines = [
        f"Federated run {result.run!r} in {result.ids.name}: the global model is "
        f"{result.test_accuracy:.1%} accurate on the held-out test set "
        f"(majority-class baseline {result.baseline_accuracy:.1%}).",
        f"Registered model: {result.registered.uri}",
    ]
    if is_server(result.tracking_uri):
        lines.append(f"Command Station: {station}  MLflow UI: {mlflow_ui}")
    elif serve_hint:
        folder = store_folder_of(result.tracking_uri)
        where = str(folder) if folder is not None else result.tracking_uri
        lines.append(f"Serve it with `synmlops serve --store {where}`, then open {station}")
    return lines


def demo(
    tracking_uri: str | None,
    config: DemoConfig,
    *,
    if_empty: bool,
    echo: Callable[[str], None],
    show_progress: bool = True,
    serve_hint: bool = True,
) -> DemoResult | None:
    """Run the demo against ``tracking_uri`` (else MLFLOW_TRACKING_URI, else the default
    store folder) and print what it did."""
    from synergos_mlops.tracking import FederatedTracker

    target = tracking_uri or setting("tracking_uri").get() or setting("store").get()
    check_reachable(str(target))
    with FederatedTracker(target) as tracker:
        if if_empty and holds_runs(tracker.tracking_uri):
            folder = store_folder_of(tracker.tracking_uri)
            where = f"store {folder}" if folder is not None else tracker.tracking_uri
            echo(f"{where} already holds runs; no demo run added (--if-empty).")
            return None
        result = _run(tracker, config, show_progress=show_progress)
    for line in summary_lines(result, serve_hint=serve_hint):
        echo(line)
    return result


def _run(tracker: FederatedTracker, config: DemoConfig, *, show_progress: bool) -> DemoResult:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    rounds = config.training.rounds
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(stderr=True),
        disable=not show_progress,
    )
    label = f"{config.training.algorithm} rounds"
    with progress:
        task = progress.add_task(label, total=rounds, status="")

        def on_round(result: RoundResult) -> None:
            progress.update(
                task,
                advance=1,
                status=f"test loss {result.evaluate_loss:.3f}, "
                f"accuracy {result.evaluate_accuracy:.1%}",
            )

        return run_demo(tracker, config, on_round=on_round)
