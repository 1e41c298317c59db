"""A second `synmlops ingest` of an unchanged tree: decided from a manifest, before MLflow is
loaded, and never trusted when the tree, the store or the target moved (docs/ingest.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SYNMLOPS, Server, free_port
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ingest_trees import touch_later, write_checkpoint, write_run, write_worker

from synergos_mlops.ingest import noop

NOOP = "nothing changed since the last ingest"
HEAVY = ("mlflow", "sqlalchemy", "rich", "requests", "pandas", "numpy")


def ingest_cli(
    outputs: Path,
    target: str | Path,
    cache: Path,
    *extra: str,
    importtime: bool = False,
    process: bool = False,
) -> subprocess.CompletedProcess[str]:
    """The real command, with its own XDG cache folder: in this process through click's
    runner, or as a process of its own (``process``, or ``importtime`` to see what it loads;
    also where a database file is replaced under a path MLflow's store keeps an engine for)."""
    args = ["ingest", str(outputs), "--tracking-uri", str(target), *extra]
    if importtime or process:
        command = [*SYNMLOPS, *args]
        if importtime:
            command[1:1] = ["-X", "importtime"]
        env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    else:
        from click.testing import CliRunner

        from synergos_mlops.cli import main

        result = CliRunner(env={"XDG_CACHE_HOME": str(cache)}).invoke(main, args)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        done = subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def is_noop(done: subprocess.CompletedProcess[str]) -> bool:
    return NOOP in done.stdout


def imported(done: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:")}  # fmt: skip


def small_tree(outputs: Path, runs: int = 2, collaboration: str = "collab") -> list[Path]:
    return [write_run(outputs, collaboration, "proj", "exp", f"run_{i}", rounds=2, epochs=1,
                      model_bytes=1024) for i in range(runs)]  # fmt: skip


def manifests(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json")) if folder.exists() else []


# Into a store folder ---------------------------------------------------------------------------


def test_an_unchanged_tree_is_one_line_from_its_manifest_without_loading_heavy_modules(
    tmp_path: Path,
) -> None:
    outputs, store, cache = tmp_path / "outputs", tmp_path / "store", tmp_path / "cache"
    small_tree(outputs)
    first = ingest_cli(outputs, store, cache)
    assert "runs: 2 new, 0 updated, 0 unchanged, 0 skipped" in first.stdout
    assert len(manifests(store / noop.STORE_FOLDER_NAME)) == 1
    again = ingest_cli(outputs, store, cache, importtime=True)
    assert again.stdout.splitlines() == [f"runs: 0 new, 0 updated, 2 unchanged, 0 skipped; {NOOP}"]
    loaded = imported(again)
    assert "synergos_mlops.ingest.noop" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert "synergos_mlops.ingest._ingest" not in loaded
    assert not manifests(cache), "a store folder's manifest lives in the store folder"


def _same_size_new_mtime(folder: Path) -> None:
    path = folder / "global_model.pt"
    path.write_bytes(bytes(reversed(path.read_bytes())))
    touch_later(path)


def _appended(folder: Path) -> None:
    with (folder / "local_model_worker_1.pt").open("ab") as out:
        out.write(b"more")


def _new_file(folder: Path) -> None:
    write_checkpoint(folder, 5, 0, ["worker_1"], 512)


def _deleted(folder: Path) -> None:
    (folder / "checkpoints" / "round_0" / "epoch_0" / "global_model.pt").unlink()


def _touched(folder: Path) -> None:
    touch_later(folder / "global_loss_history.json")


@pytest.mark.parametrize(
    "edit", [_same_size_new_mtime, _appended, _new_file, _deleted, _touched],
    ids=["same size, new mtime", "appended bytes", "a new file", "a deleted file", "touched"],
)  # fmt: skip
def test_every_change_to_the_tree_takes_a_real_pass_and_the_next_one_is_a_noop_again(
    tmp_path: Path, edit: Callable[[Path], None]
) -> None:
    outputs, store, cache = tmp_path / "outputs", tmp_path / "store", tmp_path / "cache"
    folders = small_tree(outputs)
    ingest_cli(outputs, store, cache)
    assert is_noop(ingest_cli(outputs, store, cache))
    edit(folders[0])
    changed = ingest_cli(outputs, store, cache)
    assert not is_noop(changed)
    assert "runs: " in changed.stdout
    if edit in (_same_size_new_mtime, _appended, _new_file):
        assert "runs: 0 new, 1 updated, 1 unchanged, 0 skipped" in changed.stdout
    assert is_noop(ingest_cli(outputs, store, cache))


def test_a_replaced_store_database_a_deleted_run_or_another_store_takes_a_real_pass(
    tmp_path: Path,
) -> None:
    import sqlite3

    outputs, cache = tmp_path / "outputs", tmp_path / "cache"
    small_tree(outputs)
    first, second = tmp_path / "first", tmp_path / "second"
    ingest_cli(outputs, first, cache, process=True)
    other = ingest_cli(outputs, second, cache, process=True)
    assert "runs: 2 new" in other.stdout, "another store is another target"
    assert is_noop(ingest_cli(outputs, first, cache, process=True))
    # The same tree ingested elsewhere, copied over: same digests, other run ids.
    for name in os.listdir(first):
        if name.startswith("mlflow.db"):
            os.unlink(first / name)
    shutil.copy(second / "mlflow.db", first / "mlflow.db")
    replaced = ingest_cli(outputs, first, cache, process=True)
    assert not is_noop(replaced)
    assert "runs: 0 new, 0 updated, 2 unchanged, 0 skipped" in replaced.stdout
    assert is_noop(ingest_cli(outputs, first, cache, process=True))
    with sqlite3.connect(first / "mlflow.db") as connection:
        connection.execute(
            "UPDATE runs SET lifecycle_stage = 'deleted' WHERE run_uuid IN (SELECT run_uuid "
            "FROM tags WHERE key = 'synergos.run' AND value = 'run_1')"
        )
    connection.close()
    assert (
        "runs: 1 new, 0 updated, 1 unchanged"
        in ingest_cli(outputs, first, cache, process=True).stdout
    )


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b"[]", b'{"key": 1}', b'{"runs": "x"}', b"\xff\xfe"]
)
def test_a_corrupt_manifest_is_ignored_and_the_pass_is_real(tmp_path: Path, content: bytes) -> None:
    outputs, store, cache = tmp_path / "outputs", tmp_path / "store", tmp_path / "cache"
    small_tree(outputs)
    ingest_cli(outputs, store, cache)
    (path,) = manifests(store / noop.STORE_FOLDER_NAME)
    path.write_bytes(content)
    again = ingest_cli(outputs, store, cache)
    assert not is_noop(again)
    assert "runs: 0 new, 0 updated, 2 unchanged, 0 skipped" in again.stdout
    assert is_noop(ingest_cli(outputs, store, cache))


def test_worker_outputs_are_part_of_the_tree_and_of_the_key(tmp_path: Path) -> None:
    outputs, store, cache = tmp_path / "outputs", tmp_path / "store", tmp_path / "cache"
    workers = tmp_path / "workers"
    small_tree(outputs, runs=1)
    write_worker(workers, "worker_1", ("collab", "proj", "exp", "run_0"))
    ingest_cli(outputs, store, cache, "--worker-outputs", str(workers))
    assert is_noop(ingest_cli(outputs, store, cache, "--worker-outputs", str(workers)))
    assert not is_noop(ingest_cli(outputs, store, cache)), "without them it is another key"
    stats = next(workers.rglob("inference_statistics_*.json"))
    touch_later(stats)
    assert not is_noop(ingest_cli(outputs, store, cache, "--worker-outputs", str(workers)))


# Into a server URL ---------------------------------------------------------------------------


def test_an_unchanged_tree_into_a_url_is_a_noop_kept_in_the_cache_and_checked_with_the_server(
    tmp_path: Path, shared_server: Server
) -> None:
    from mlflow import MlflowClient

    outputs, cache = tmp_path / "outputs", tmp_path / "cache"
    collaboration = f"collab-{uuid.uuid4().hex[:8]}"  # the session's server: a name of its own
    small_tree(outputs, collaboration=collaboration)
    server = shared_server
    first = ingest_cli(outputs, server.url, cache)
    assert "runs: 2 new, 0 updated, 0 unchanged, 0 skipped" in first.stdout
    assert len(manifests(cache / "synergos_mlops" / "ingest")) == 1
    assert not [p for p in outputs.rglob("*") if "manifest" in p.name]
    assert not (server.store / noop.STORE_FOLDER_NAME).exists()
    again = ingest_cli(outputs, server.url + "/", cache, importtime=True)
    assert again.stdout.splitlines() == [f"runs: 0 new, 0 updated, 2 unchanged, 0 skipped; {NOOP}"]
    assert not {m for m in imported(again) if m.split(".")[0] in HEAVY}
    # A run deleted on the server: the server no longer holds what the manifest says.
    client = MlflowClient(server.url)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(f"{collaboration}/proj/exp").experiment_id],
        filter_string="tags.`synergos.run` = 'run_1' and tags.`synergos.role` = 'federation'",
    )
    client.delete_run(run.info.run_id)
    assert "runs: 1 new, 0 updated, 1 unchanged" in ingest_cli(outputs, server.url, cache).stdout
    assert is_noop(ingest_cli(outputs, server.url, cache))


def test_a_server_that_is_down_or_whose_store_was_replaced_is_never_a_noop(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    outputs, cache = tmp_path / "outputs", tmp_path / "cache"
    small_tree(outputs)
    port = free_port()
    before = server_factory(tmp_path / "before-store", port=port)
    ingest_cli(outputs, before.url, cache)
    assert is_noop(ingest_cli(outputs, before.url, cache))
    before.stop()
    # Down: one line and exit 1, never "nothing changed".
    command = [*SYNMLOPS, "ingest", str(outputs), "--tracking-uri", before.url]
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "cannot be reached" in done.stderr
    # Another store at the same address: a real ingest.
    after = server_factory(tmp_path / "after-store", port=port)
    assert after.url == before.url
    replaced = ingest_cli(outputs, after.url, cache)
    assert "runs: 2 new, 0 updated, 0 unchanged, 0 skipped" in replaced.stdout
    # Another target (a store folder) for the same tree is another manifest, not this one.
    assert "runs: 2 new" in ingest_cli(outputs, tmp_path / "folder", cache).stdout
    assert is_noop(ingest_cli(outputs, after.url, cache))


# The manifest and the tree digest, in process ----------------------------------------------------


def tree_entries(root: Path) -> dict[str, tuple[int, ...]]:
    """Every folder, and every file with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file()
            else () for p in root.rglob("*")}  # fmt: skip


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["append", "rewrite", "touch", "same mtime", "new", "delete", "mkdir"]),
        st.integers(0, 7),
    ),
    max_size=4,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
@example(edits=[("new", 0), ("delete", 4)])  # a new file deleted again: no change
def test_the_tree_digest_moves_exactly_when_an_entry_changed(
    tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[str, int]]
) -> None:
    root = tmp_path_factory.mktemp("tree")
    for i in range(4):
        (root / f"d{i % 2}").mkdir(exist_ok=True)
        (root / f"d{i % 2}" / f"f{i}").write_bytes(b"x" * (i + 1))
    roots = noop.Roots.of(root)
    before = noop.tree_digest(roots)
    entries = tree_entries(root)
    for action, index in edits:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        path = files[index % len(files)] if files else None
        if action == "append" and path is not None:
            with path.open("ab") as out:
                out.write(b"y")
        elif action == "rewrite" and path is not None:  # same size, mtime moved
            info = path.stat()
            path.write_bytes(b"z" * info.st_size)
            os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
        elif action == "touch" and path is not None:
            touch_later(path, 3)
        elif action == "same mtime" and path is not None:  # utime to what it was: no change
            info = path.stat()
            os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
        elif action == "new":
            (root / f"new{index}-{len(edits)}").write_bytes(b"n")
        elif action == "delete" and path is not None and len(files) > 1:
            path.unlink()
        elif action == "mkdir":
            (root / f"d{index}").mkdir(exist_ok=True)
    # Changed: an entry came, went, or a file's size or time moved (a new file deleted again,
    # or a folder that was there already, is no change).
    changed = tree_entries(root) != entries
    assert (noop.tree_digest(roots) != before) == changed
    shutil.rmtree(root)


MANIFESTS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.fixed_dictionaries({}, optional={
    "key": st.text(max_size=10), "tree": st.text(max_size=10), "summary": MANIFESTS,
    "runs": st.lists(st.dictionaries(st.sampled_from(
        ["label", "experiment_id", "run_id", "digest", "other"]), MANIFESTS, max_size=5),
        max_size=2),
}) | MANIFESTS)  # fmt: skip
def test_any_manifest_content_is_either_trusted_whole_or_ignored_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, data: object
) -> None:
    root = tmp_path_factory.mktemp("noop")
    (root / "outputs").mkdir()
    (root / "store").mkdir()
    (root / "store" / "mlflow.db").write_bytes(b"")
    roots = noop.Roots.of(root / "outputs")
    target = str(root / "store")
    path = noop.manifest_path(target, roots)
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    assert noop.check(target, roots) is None
    shutil.rmtree(root)


def test_a_url_manifest_lives_in_the_users_cache_keyed_by_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    roots = noop.Roots.of(tmp_path / "outputs")
    one = noop.manifest_path("http://host:5000", roots)
    assert one == noop.manifest_path("http://host:5000/", roots)
    assert one is not None and one.is_relative_to(tmp_path / "cache" / "synergos_mlops")
    assert one != noop.manifest_path("http://host:5001", roots)
    assert one != noop.manifest_path("http://host:5000", noop.Roots.of(tmp_path / "other"))
    assert noop.manifest_path("postgresql://u@h/db", roots) is None
    assert noop.manifest_path(str(tmp_path / "no-store-yet"), roots) is None
