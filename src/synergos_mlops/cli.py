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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
) -> None:
    """Serve the MLflow UI and REST API, the Synergos API and the Command Station.

    The whole state lives in the --store folder unless --backend-store-uri and
    --artifacts-destination point elsewhere. A --bind=HOST[:PORT] in GUNICORN_CMD_ARGS (the
    documented container usage) is honoured when --host/--port are not given.
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
    )
    code = run(config, echo=click.echo)
    if code not in (0, -15, -2, 130, 143):
        raise SystemExit(code)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@_domain_errors
def migrate(directory: Path) -> None:
    """Convert an MLflow file store in DIRECTORY into a store folder, in place.

    The original entries are kept in DIRECTORY/filestore-backup-<time>/.
    """
    from synergos_mlops.server.migrate import migrate_file_store

    report = migrate_file_store(directory, progress=lambda m: click.echo(m, err=True))
    click.echo(
        f"migrated {report.experiments} experiments, {report.runs} runs, "
        f"{report.metrics} metric points, {report.params} params, {report.tags} tags and "
        f"{report.artifact_files} artifact files; the original is kept in {report.backup}"
    )


def run() -> None:  # pragma: no cover - console entry
    main()
