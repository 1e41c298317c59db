"""The ``synmlops`` command: one thin module that wires subcommands to their modules.

Domain errors (:class:`synergos_mlops.errors.SynergosError`) become one line on stderr and
exit code 1; click reports usage errors with exit code 2. Never a traceback for a user's
mistake.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from synergos_mlops import __version__
from synergos_mlops.errors import SynergosError
from synergos_mlops.settings import setting

F = TypeVar("F", bound=Callable[..., Any])


def _domain_errors(func: F) -> F:
    """Turn a SynergosError into click's one-line error and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SynergosError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _option(name: str, *flags: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option built from the setting declared once in settings.py."""
    spec = setting(name)
    default = spec.default
    return click.option(
        *flags,
        envvar=spec.env,
        default=default,
        show_default=default is not None,
        show_envvar=True,
        help=spec.help,
        **kwargs,
    )


def _worker_outputs(values: tuple[str, ...]) -> list[Any]:
    if not values:
        return []
    from synergos_mlops.ingest import parse_worker_outputs

    return [parse_worker_outputs(value) for value in values]


_WORKER_OUTPUTS_HELP = (
    "Workers' output folder: DIR shared by several workers (DIR/<participant>/<c>/<p>/<e>/<r>/"
    "<stage>/), or PARTICIPANT=DIR for one worker's own (DIR/<c>/<p>/<e>/<r>/<stage>/). "
    "Repeat for several."
)


#: Said when OUTPUTS holds no run folder: nothing is wrong (exit 0), but say what was looked for.
_EXPECTED_LAYOUT = (
    "no run folder in {outputs}: ingest looks for "
    "<outputs>/<collaboration>/<project>/<experiment>/<run>/ holding global_model.pt, "
    "global_loss_history.json, local_model_<participant>.pt, "
    "local_loss_history_<participant>.json or checkpoints/round_<r>/epoch_<e>/ "
    "(see docs/ingest.md)"
)


def _echo_report(report: Any, outputs: Path) -> None:
    for line in report.summary():
        click.echo(line)
    if not report.outcomes:
        click.echo(_EXPECTED_LAYOUT.format(outputs=outputs))


def _target_of(tracking_uri: str | None) -> str:
    return tracking_uri or setting("store").get() or "./mlflow"


def _tracking_target(tracking_uri: str | None, *, reading: bool = False) -> str:
    """Where a client command goes: --tracking-uri, else MLFLOW_TRACKING_URI (click reads it),
    else the store folder (SYNMLOPS_STORE, else ./mlflow). One rule and one set of messages
    for demo, ingest, watch and export."""
    target = _target_of(tracking_uri)
    if target.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(f"{target.rstrip('/')}/health", timeout=10)
        except requests.RequestException as exc:
            raise SynergosError(
                f"the tracking server at {target} cannot be reached ({type(exc).__name__})"
            ) from None
    elif reading and "://" not in target and not Path(target.removeprefix("file:")).is_dir():
        raise SynergosError(
            f"store folder {target} does not exist: pass --tracking-uri (a server URL or a "
            "store folder) or set MLFLOW_TRACKING_URI"
        )
    return target


def _new_store_notice(target: str) -> Callable[[], None]:
    """A callable that says, in one line on stderr, that opening ``target`` created a new
    empty store folder (nothing when the target is a URL or its store already existed)."""
    if "://" in target:
        return lambda: None
    from synergos_mlops.store import StoreFolder

    folder = StoreFolder.at(target.removeprefix("file:"))
    if folder.db_path.exists():
        return lambda: None

    def announce() -> None:
        if folder.db_path.exists():
            click.echo(f"New empty store: created {folder.db_path}", err=True)

    return announce


class _Commands(click.Group):
    """``synmlops``: a usage error (an unknown command or option, a value out of range) is one
    line on stderr, ``Error: ...``, exit 2, as every other refusal here; ``--help`` has the
    usage. click would print the usage and a hint before it."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:  # fmt: skip
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.ctx = None
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a command's own options, parsed in here
            exc.ctx = None
            raise


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synmlops")
def main() -> None:
    """Synergos MLOps: keep, see and manage the results of federated learning."""


@main.command()
@_option("store", "--store", type=click.Path(path_type=Path))
@_option("host", "--host", type=str)
@_option("port", "--port", type=click.IntRange(1, 65535))
@_option("workers", "--workers", type=click.IntRange(1, 64))
@_option("backend_store_uri", "--backend-store-uri", type=str)
@_option("artifacts_destination", "--artifacts-destination", type=str)
@_option("frame_options", "--x-frame-options", "frame_options", type=str)
@_option("certfile", "--certfile", type=click.Path(path_type=Path))
@_option("keyfile", "--keyfile", type=click.Path(path_type=Path))
@_option("allowed_hosts", "--allowed-hosts", type=str)
@_option("cors_allowed_origins", "--cors-allowed-origins", type=str)
@_option("auth", "--auth", is_flag=True)
@_option("gelf_port", "--gelf-port", type=click.IntRange(1, 65535))
@_option("gelf_host", "--gelf-host", type=str)
@_option("gelf_allow", "--gelf-allow", type=str, multiple=True)
@_option("gelf_certfile", "--gelf-certfile", type=click.Path(path_type=Path))
@_option("gelf_keyfile", "--gelf-keyfile", type=click.Path(path_type=Path))
@_option("gelf_client_ca", "--gelf-client-ca", type=click.Path(path_type=Path))
@_option("log_retention_days", "--log-retention-days", type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--watch", "watch_outputs", type=click.Path(path_type=Path), default=None,
    help="Also keep ingesting this orchestrator output folder into the served tracker; "
    "/health shows what the watch did and left out, and answers 503 while it is down.",
)  # fmt: skip
@click.option("--worker-outputs", "worker_outputs", multiple=True, help=_WORKER_OUTPUTS_HELP)
@click.pass_context
@_domain_errors
def serve(
    ctx: click.Context,
    store: Path,
    host: str,
    port: int,
    workers: int,
    backend_store_uri: str | None,
    artifacts_destination: str | None,
    frame_options: str,
    certfile: Path | None,
    keyfile: Path | None,
    allowed_hosts: str | None,
    cors_allowed_origins: str | None,
    auth: bool,
    gelf_port: int | None,
    gelf_host: str,
    gelf_allow: tuple[str, ...],
    gelf_certfile: Path | None,
    gelf_keyfile: Path | None,
    gelf_client_ca: Path | None,
    log_retention_days: float | None,
    watch_outputs: Path | None,
    worker_outputs: tuple[str, ...],
) -> None:
    """Serve the MLflow UI and REST API, the Synergos API and the Command Station.

    The whole state lives in the --store folder unless --backend-store-uri and
    --artifacts-destination point elsewhere. A --bind=HOST[:PORT] in GUNICORN_CMD_ARGS (the
    documented container usage) is honoured when --host/--port are not given.

    When the folder is an MLflow file store that an original Synergos TTP (mlflow 1.7.2)
    keeps writing, it is served live: what the TTP writes shows within seconds, and the
    TTP's folders are never changed. The server keeps only files in the folder's root
    (mlflow.db, synergos-mlops-sync.json); artifacts logged through the server go to
    STORE.artifacts/ beside it unless STORE/artifacts/ exists.
    """
    import os

    from click.core import ParameterSource

    from synergos_mlops.server.serve import ServeConfig, parse_gunicorn_bind
    from synergos_mlops.server.serve import serve as run

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) in (
            ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT,
        )  # fmt: skip

    bind_host, bind_port = parse_gunicorn_bind(os.environ.get("GUNICORN_CMD_ARGS", ""))
    if bind_host is not None and not given("host"):
        host = bind_host
    if bind_port is not None and not given("port"):
        port = bind_port
    config = ServeConfig(
        store=store,
        host=host,
        port=port,
        workers=workers,
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
        frame_options=frame_options,
        certfile=certfile,
        keyfile=keyfile,
        allowed_hosts=allowed_hosts,
        cors_allowed_origins=cors_allowed_origins,
        auth=bool(auth),
        gelf_port=gelf_port,
        gelf_host=gelf_host,
        gelf_allow=tuple(gelf_allow),
        gelf_certfile=gelf_certfile,
        gelf_keyfile=gelf_keyfile,
        gelf_client_ca=gelf_client_ca,
        log_retention_days=log_retention_days,
    )
    services = []
    if watch_outputs is not None:
        from synergos_mlops.ingest import WatchService, scan

        watched = _worker_outputs(worker_outputs)
        scan(watch_outputs, watched)  # refuse a missing folder before the server starts
        services.append(WatchService(watch_outputs, watched, echo=click.echo))
    code = run(config, echo=click.echo, services=services)
    if code not in (0, -15, -2, 130, 143):
        raise SystemExit(code)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@_domain_errors
def migrate(directory: Path) -> None:
    """Convert an MLflow file store in DIRECTORY into a store folder, in place.

    For a file store whose TTP no longer runs: the TTP's folders move into the backup, so a
    TTP still writing there would lose its experiments. A store a TTP still writes is served
    as it is (synmlops serve --store DIRECTORY), no conversion needed.

    Runs MLflow's own converter, then copies the artifacts into DIRECTORY/artifacts/. The
    original entries are kept in DIRECTORY/filestore-backup-<time>/. A conversion that would
    lose a run, a metric point or a param is undone and refused.
    """
    from synergos_mlops.server.migrate import migrate_file_store

    report = migrate_file_store(directory, progress=click.echo)
    click.echo(
        f"migrated {report.experiments} experiments, {report.runs} runs, "
        f"{report.metrics} metric points, {report.params} params, {report.tags} tags and "
        f"{report.artifact_files} artifact files; the original is kept in {report.backup}"
    )


@main.command()
@click.argument("outputs", type=click.Path(path_type=Path))
@_option("tracking_uri", "--tracking-uri", type=str)
@click.option("--worker-outputs", "worker_outputs", multiple=True, help=_WORKER_OUTPUTS_HELP)
@_domain_errors
def ingest(outputs: Path, tracking_uri: str | None, worker_outputs: tuple[str, ...]) -> None:
    """Bring the orchestrator's output folder OUTPUTS into the tracker, once.

    Every run folder OUTPUTS/<collaboration>/<project>/<experiment>/<run>/ becomes a
    federated run; a run already ingested is updated in place, and an unchanged one costs
    nothing. OUTPUTS without any run folder is not an error: the summary says what was looked
    for. Exit code 1 when a run could not be logged.
    """
    from synergos_mlops.ingest import noop  # the standard library only

    workers = _worker_outputs(worker_outputs)
    # A tree unchanged since the last pass into this target, which still holds it: known from
    # a small manifest before anything heavy is loaded (docs/ingest.md, "Running it again").
    roots = noop.Roots.of(outputs, workers)
    said = noop.check(_target_of(tracking_uri), roots)
    if said is not None:
        click.echo(said)
        return
    tree = noop.tree_digest(roots)  # before the scan: a file that moves meanwhile shows later
    from synergos_mlops.ingest import Ingester, IngestReport, scan, unchanged_report

    found = scan(outputs, workers)
    target = _tracking_target(tracking_uri)  # a server that cannot be reached is said anyway
    if not found.runs:  # nothing to write: no store is opened, none is created
        _echo_report(IngestReport.of_scan(found), outputs)
        return
    # A tree already in a store folder, untouched, with no manifest yet: read from mlflow.db.
    unchanged = unchanged_report(found, target)
    if unchanged is not None:
        _echo_report(unchanged.report, outputs)
        noop.remember_pass(target, roots, tree, found, unchanged.report, unchanged.stored)
        return
    from synergos_mlops.ingest.progress import RichProgress

    announce = _new_store_notice(target)
    ingester = Ingester(target)
    announce()
    try:
        with RichProgress() as progress:
            report = ingester.ingest(found, progress)
    finally:
        ingester.close()
    noop.remember_pass(target, roots, tree, found, report, ingester.stored(found.runs))
    _echo_report(report, outputs)
    if report.failed:
        raise SystemExit(1)


@main.command()
@click.argument("outputs", type=click.Path(path_type=Path))
@_option("tracking_uri", "--tracking-uri", type=str)
@click.option("--worker-outputs", "worker_outputs", multiple=True, help=_WORKER_OUTPUTS_HELP)
@click.option(
    "--interval", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True,
    help="Seconds between two polls; a file is taken once it is the same on two polls.",
)  # fmt: skip
@_domain_errors
def watch(
    outputs: Path, tracking_uri: str | None, worker_outputs: tuple[str, ...], interval: float
) -> None:
    """Keep ingesting OUTPUTS as runs appear or change, until Ctrl-C; then print a summary."""
    import signal

    from synergos_mlops.ingest import Watcher, scan

    workers = _worker_outputs(worker_outputs)
    scan(outputs, workers)  # refuse a missing OUTPUTS before anything starts
    target = _tracking_target(tracking_uri)
    watcher = Watcher(outputs, workers, tracking_uri=target, interval=interval,
                      echo=click.echo)  # fmt: skip

    def interrupt(_signum: int, _frame: object) -> None:
        if watcher.stop_event.is_set():  # a second Ctrl-C does not wait for the current run
            raise KeyboardInterrupt
        watcher.stop()

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    click.echo(f"watching {outputs} every {interval:g} s; logging to {watcher.tracking_uri}")
    report = watcher.run()
    _echo_report(report, outputs)


@main.command()
@click.option("--collaboration", required=True, help="The collaboration's id.")
@click.option("--participant", required=True, help="This participant's id in it.")
@_option("tracking_uri", "--tracking-uri", type=str)
@click.option(
    "--interval", type=click.FloatRange(0.1, 3600), default=1.0, show_default=True,
    help="Seconds between two samples.",
)  # fmt: skip
@click.option(
    "--pid", type=int, default=None,
    help="The training process to watch besides the machine (default: this command's parent).",
)  # fmt: skip
@_domain_errors
def monitor(
    collaboration: str, participant: str, tracking_uri: str | None, interval: float,
    pid: int | None,
) -> None:  # fmt: skip
    """Sample this machine's hardware statistics for a participant until Ctrl-C.

    CPU, memory, disk and network of the machine and of the training process (and GPUs when
    nvidia-ml-py finds any), every --interval seconds, sent to --tracking-uri and attached
    by time to the participant's runs in the collaboration (see docs/system.md). Samples
    wait in a spool while the server is away. Ends with a one-line summary.
    """
    import os
    import signal
    import threading

    from synergos_mlops.tracking import SystemMonitor

    target = tracking_uri or setting("store").get() or "./mlflow"
    watcher = SystemMonitor(
        target,
        collaboration=collaboration,
        participant=participant,
        interval=interval,
        pid=pid if pid is not None else os.getppid(),
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watcher.start()
    click.echo(f"monitoring {participant} of {collaboration} (process {watcher.sampler.pid}) "
               f"every {interval:g} s; sending to {watcher.tracking_uri}")  # fmt: skip
    while not stop.wait(0.5):
        pass
    click.echo(watcher.stop(timeout=10).line(participant))


@main.command()
@_option("tracking_uri", "--tracking-uri", type=str)
@click.option(
    "--participants",
    type=int,
    default=3,
    show_default=True,
    help="Number of participants, each holding a non-IID shard of the data.",
)
@click.option("--rounds", type=int, default=10, show_default=True, help="Federated rounds.")
@click.option("--epochs", type=int, default=5, show_default=True, help="Local epochs per round.")
@click.option(
    "--algorithm",
    type=str,
    default="fedprox",
    show_default=True,
    help="fedavg or fedprox (FedProx adds mu/2 * ||w - w_global||^2 locally).",
)
@click.option(
    "--mu", type=float, default=0.1, show_default=True, help="FedProx's proximal coefficient."
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the data split and the local shuffles.",
)
@click.option(
    "--run",
    "run_name",
    type=str,
    default=None,
    help="Run id (default: the algorithm and the time).",
)
@click.option(
    "--if-empty",
    is_flag=True,
    help="Do nothing when the destination already holds runs (for `make run`).",
)
@click.option(
    "--no-serve-hint", "serve_hint", is_flag=True, flag_value=False, default=True,
    help="Do not end with how to serve a store folder (for `make run`, which serves it next).",
)  # fmt: skip
@click.option(
    "--round-seconds", type=click.FloatRange(0, 60), default=1.5, show_default=True,
    envvar="SYNMLOPS_DEMO_ROUND_SECONDS", show_envvar=True,
    help="The shortest round: a round that trained faster waits, so every round holds "
    "hardware samples; 0 trains flat out (a script that wants the run, not the charts).",
)  # fmt: skip
@_domain_errors
def demo(
    tracking_uri: str | None,
    participants: int,
    rounds: int,
    epochs: int,
    algorithm: str,
    mu: float,
    seed: int,
    run_name: str | None,
    if_empty: bool,
    serve_hint: bool,
    round_seconds: float,
) -> None:
    """Run a real federated cycle (FedAvg/FedProx on scikit-learn's digits) in this process,
    log it through the tracker and register its global model.

    Writes to --tracking-uri: a server URL or a store folder.
    """
    from synergos_mlops.demo import DemoConfig, TrainingConfig
    from synergos_mlops.demo.command import demo as run_demo

    training = TrainingConfig(
        participants=participants,
        rounds=rounds,
        epochs=epochs,
        algorithm=algorithm.lower(),
        mu=mu,
        seed=seed,
    )
    config = DemoConfig(training=training, run=run_name, round_seconds=round_seconds)
    run_demo(
        _tracking_target(tracking_uri), config, if_empty=if_empty, echo=click.echo,
        serve_hint=serve_hint,
    )  # fmt: skip


@main.command()
@click.argument("collaboration")
@click.argument("project")
@click.argument("experiment")
@click.argument("run_id", metavar="RUN")
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
    help="The ZIP file to write; it appears only once complete.",
)  # fmt: skip
@click.option("--participant", default=None, help="Only this participant's artifacts.")
@_option("tracking_uri", "--tracking-uri", type=str)
@_domain_errors
def export(
    collaboration: str,
    project: str,
    experiment: str,
    run_id: str,
    output: Path,
    participant: str | None,
    tracking_uri: str | None,
) -> None:
    """Write a federated run to one ZIP: every artifact (global/, participants/<id>/), its
    data files, log records (logs.jsonl) and hardware samples (system.csv)."""
    from synergos_mlops.export import ExportRequest, export_run

    request = ExportRequest(collaboration, project, experiment, run_id, participant)
    size = export_run(request, output, _tracking_target(tracking_uri, reading=True))
    click.echo(f"wrote {output} ({size} bytes)")


@main.group()
def lineage() -> None:
    """Data lineage of federated runs (datasets, runs, models; see docs/catalogue.md)."""


@lineage.command("export")
@click.argument("collaboration")
@click.argument("project")
@click.argument("experiment")
@click.argument("run_id", metavar="RUN")
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
    help="The JSON-lines file of OpenLineage run events to write.",
)  # fmt: skip
@_option("tracking_uri", "--tracking-uri", type=str)
@_domain_errors
def lineage_export(
    collaboration: str, project: str, experiment: str, run_id: str, output: Path,
    tracking_uri: str | None,
) -> None:  # fmt: skip
    """Write a federated run's lineage as OpenLineage run events, one JSON object a line."""
    from synergos_mlops.federation import ExperimentIds
    from synergos_mlops.lineage import export_lineage

    ids = ExperimentIds(collaboration, project, experiment)
    count = export_lineage(_tracking_target(tracking_uri, reading=True), ids, run_id, output)
    click.echo(f"wrote {output} ({count} OpenLineage events)")


@main.group()
def db() -> None:
    """The tracking database's schema (SQLite or PostgreSQL)."""


@db.command("upgrade")
@click.argument("uri")
@_domain_errors
def db_upgrade(uri: str) -> None:
    """Create or upgrade the MLflow schema of the database at URI (or of a store folder).

    URI is a database URI (postgresql://user:pw@host/db, sqlite:///path/mlflow.db) or a store
    folder. A SQLite file is copied aside first (mlflow.db.before-<revision>).
    """
    from synergos_mlops.server.database import upgrade
    from synergos_mlops.store import StoreFolder

    if "://" not in uri:
        folder = StoreFolder.at(uri)
        folder.check()
        uri = folder.backend_store_uri
    status = upgrade(uri, say=click.echo)
    click.echo(f"schema {status.head}: up to date")


@main.group()
def auth() -> None:
    """Accounts and participant bindings of a store's auth database (for serve --auth)."""


def _auth_admin(store: Path, backend_store_uri: str | None) -> Any:
    from synergos_mlops.server.auth.command import AuthAdmin

    return AuthAdmin.open(store, backend_store_uri)


def _auth_store_options(func: F) -> F:
    func = _option("backend_store_uri", "--backend-store-uri", type=str)(func)
    return _option("store", "--store", type=click.Path(path_type=Path))(func)


@auth.command("add-user")
@click.argument("username")
@click.password_option(
    envvar="SYNMLOPS_NEW_PASSWORD", help="The password (asked twice when not given)."
)
@click.option("--admin", is_flag=True, help="An admin: sees and manages everything.")
@_auth_store_options
@_domain_errors
def auth_add_user(
    username: str, password: str, admin: bool, store: Path, backend_store_uri: str | None
) -> None:
    """Create an MLflow account (the same as MLflow's create-user API)."""
    _auth_admin(store, backend_store_uri).add_user(username, password, admin=admin)
    click.echo(f"created {'admin ' if admin else ''}account {username}")


@auth.command("bind")
@click.argument("username")
@click.option("--collaboration", required=True, help="The collaboration's id.")
@click.option("--participant", required=True, help="The participant's id in it.")
@_auth_store_options
@_domain_errors
def auth_bind(
    username: str, collaboration: str, participant: str, store: Path, backend_store_uri: str | None
) -> None:
    """Bind USERNAME to one participant of a collaboration.

    The account then sees the collaboration's federation (global) runs and this participant's
    runs, and nothing of the other participants, on every route. It is granted READ on the
    collaboration's experiments where it has no permission of its own.
    """
    granted = _auth_admin(store, backend_store_uri).bind(username, collaboration, participant)
    click.echo(f"bound {username} to participant {participant} of collaboration {collaboration}")
    if granted:
        click.echo(f"  READ granted on experiments {', '.join(granted)}")


@auth.command("unbind")
@click.argument("username")
@click.option("--collaboration", default=None, help="Only this collaboration's bindings.")
@click.option("--participant", default=None, help="Only this participant's bindings.")
@_auth_store_options
@_domain_errors
def auth_unbind(
    username: str,
    collaboration: str | None,
    participant: str | None,
    store: Path,
    backend_store_uri: str | None,
) -> None:
    """Remove USERNAME's participant bindings (all of them unless narrowed).

    An account without bindings sees what MLflow's permissions allow, participants included.
    """
    removed = _auth_admin(store, backend_store_uri).unbind(username, collaboration, participant)
    click.echo(f"removed {removed} binding{'' if removed == 1 else 's'} of {username}")


@auth.command("list")
@click.argument("username", required=False)
@_auth_store_options
@_domain_errors
def auth_list(username: str | None, store: Path, backend_store_uri: str | None) -> None:
    """List participant bindings (of USERNAME, or of every account)."""
    from synergos_mlops.server.auth.command import echo_bindings

    echo_bindings(_auth_admin(store, backend_store_uri).list(username), click.echo)


def run() -> None:  # pragma: no cover - console entry
    main()
