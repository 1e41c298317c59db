"""Reads that cost the same on a big store: our indexes exist after migration, the rewritten
queries answer what plain queries answer, and the paged, levelled and searched tree holds
the same items as the whole one (SQLite and PostgreSQL). How fast is ``make bench``'s
business (benchmarks/scale_bench.py), not these tests'."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text

from synergos_mlops.federation import ExperimentIds
from synergos_mlops.storage import reads
from synergos_mlops.storage import studies as stored
from synergos_mlops.storage.batch import MetricBatch
from synergos_mlops.storage.metrics import write_metrics
from synergos_mlops.storage.runs import resolve_run
from synergos_mlops.storage.schema import our_schema, upgrade_ours
from synergos_mlops.views.federated_runs import (
    Backend,
    TreeQuery,
    collaboration_tree,
    tree_part,
)

OUR_INDEXES = {
    "runs": "synergos_runs_experiment",
    "tags": "synergos_tags_value",
    "experiments": "synergos_experiments_name",
    "experiment_tags": "synergos_experiment_tags_experiment",
}


def _fill(store: Any) -> dict[str, Any]:
    """Three collaborations' worth of runs, participants and points; a trial of a study and
    a legacy-named trial; a long tag value on another key."""
    from mlflow.entities import RunTag

    upgrade_ours(store.engine)
    made: dict[str, Any] = {}
    batch = MetricBatch()
    for c in range(3):
        for e in range(2):
            ids = ExperimentIds(f"collab {c}", "project", f"exp_{e}")
            for r in range(4):
                name = "optim_run_1" if (c, e, r) == (2, 1, 0) else f"run-{c}{e}{r}"
                resolved = resolve_run(store, ids, name, [f"p{i}" for i in range(r % 3 + 1)])
                made[f"{c}{e}{r}"] = resolved
                for owner in [resolved.run_id, *resolved.participants.values()]:
                    for step in range(3):
                        batch.append(owner, "train/loss", step, 1 / (step + 1), 1000 + step)
                        batch.append(owner, "evaluate/acc", step, step / 3, 1000 + step)
    write_metrics(store.engine, batch)
    trial = made["000"]
    store.set_tag(trial.run_id, RunTag("synergos.study", "s"))
    store.set_tag(trial.run_id, RunTag("synergos.trial", "1"))
    store.set_tag(made["010"].run_id, RunTag("mlflow.note.content", "x" * 7999))
    return made


def test_our_migrations_add_the_read_indexes_beside_mlflows_schema(sql_store: Any) -> None:
    upgrade_ours(sql_store.engine)
    assert our_schema(sql_store.engine).up_to_date
    found = inspect(sql_store.engine)
    for table, name in OUR_INDEXES.items():
        assert name in {index["name"] for index in found.get_indexes(table)}, (table, name)
    if sql_store.engine.dialect.name == "postgresql":
        with sql_store.engine.connect() as connection:
            definition = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'synergos_tags_value'")
            ).scalar_one()
        assert "WHERE" in definition and "synergos.run" in definition


def test_a_long_tag_value_on_another_key_is_stored_beside_the_partial_index(
    sql_store: Any,
) -> None:
    made = _fill(sql_store)
    run = sql_store.get_run(made["010"].run_id)
    assert run.data.tags["mlflow.note.content"] == "x" * 7999


def _plain_series(store: Any, run_uuids: list[str], keys: list[str]) -> dict[str, Any]:
    """The series as a plain query without any hint reads them."""
    found: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    with store.engine.connect() as connection:
        for run_uuid in run_uuids:
            for key in keys:
                rows = connection.execute(
                    text("SELECT step, value FROM metrics WHERE run_uuid = :r AND key = :k "
                         "ORDER BY step"), {"r": run_uuid, "k": key},
                ).fetchall()  # fmt: skip
                if rows:
                    found.setdefault(key, {})[run_uuid] = (
                        [int(s) for s, _ in rows], [float(v) for _, v in rows]
                    )  # fmt: skip
    return found


def test_rewritten_reads_answer_what_plain_queries_answer(sql_store: Any) -> None:
    made = _fill(sql_store)
    maker = sql_store.ManagedSessionMaker
    with sql_store.engine.connect() as connection:
        expected_parents = {
            row[0]: row[1]
            for row in connection.execute(text(
                "SELECT r.run_uuid, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "AND t.key = 'synergos.run' WHERE EXISTS (SELECT 1 FROM tags o WHERE "
                "o.run_uuid = r.run_uuid AND o.key = 'synergos.role' AND o.value = 'federation')"
            ))
        }  # fmt: skip
    experiments = {e.experiment_id for e in reads.synergos_experiments(maker)}
    listed = reads.federation_runs(maker, sorted(experiments))
    assert {r.run_uuid: r.synergos_id for r in listed} == expected_parents
    for key, resolved in made.items():
        row = next(r for r in listed if r.run_uuid == resolved.run_id)
        assert row.participants == len(resolved.participants)
        found = reads.find_federation_run(maker, resolved.experiment_id, row.synergos_id)
        assert found is not None and found.run_uuid == resolved.run_id
        children = reads.participant_runs(maker, resolved.run_id)
        assert {c.synergos_id: c.run_uuid for c in children} == resolved.participants
        owners = [resolved.run_id, *resolved.participants.values()]
        series = reads.metric_series(maker, owners, ["train/loss", "evaluate/acc"])
        assert series == _plain_series(sql_store, owners, ["train/loss", "evaluate/acc"]), key
        points = reads.all_points(maker, resolved.run_id, ["train/loss"])
        assert [(p.step, p.value) for p in points["train/loss"]] == list(
            zip(*_plain_series(sql_store, [resolved.run_id], ["train/loss"])["train/loss"][
                resolved.run_id], strict=True)
        )  # fmt: skip
        assert len(reads.metric_points(maker, resolved.run_id)) == 6
    assert reads.participant_counts(maker, [made["002"].run_id]) == {made["002"].run_id: 3}


def test_the_trials_found_from_their_tags_are_those_each_experiment_holds(
    sql_store: Any,
) -> None:
    """Several experiments at once (trials found from their tags) give, per experiment, what
    reading that experiment alone gives (run by run)."""
    _fill(sql_store)
    maker = sql_store.ManagedSessionMaker
    experiments = [e.experiment_id for e in reads.synergos_experiments(maker)]
    expected = {e: stored.trial_rows(maker, e) for e in experiments}
    assert len([e for e, trials in expected.items() if trials]) == 2
    assert stored.trial_rows_of(maker, experiments) == expected


#: An experiment as MLflow may hold it: (collaboration, project tag or None, name made of
#: three parts or not, deleted).
_EXPERIMENTS = st.lists(
    st.tuples(
        st.sampled_from("abc"), st.sampled_from([None, "p", "q"]), st.booleans(), st.booleans()
    ),  # fmt: skip
    max_size=12,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=25,
          deadline=None)  # fmt: skip
@given(experiments=_EXPERIMENTS)
def test_the_collaborations_level_counted_by_the_database_is_the_one_read_experiment_by_experiment(
    sql_store: Any, experiments: list[tuple[str, str | None, bool, bool]]
) -> None:
    """The tree's first level, counted in SQL, lists the collaborations and their project and
    experiment counts that listing every experiment gives (a project tag missing, so the
    name gives it or nothing does; deleted experiments left out); so does each
    collaboration's own list of experiments."""
    from mlflow.entities import ExperimentTag

    token = uuid.uuid4().hex[:8]
    for i, (collaboration, project, three_parts, deleted) in enumerate(experiments):
        name = f"{token}{collaboration}/from-name-{i % 2}/e{i}" if three_parts else f"{token}{i}"
        tags = [ExperimentTag("synergos.collaboration", token + collaboration)]
        if project is not None:
            tags.append(ExperimentTag("synergos.project", project))
        experiment_id = sql_store.create_experiment(name, None, tags)
        if deleted:
            sql_store.delete_experiment(experiment_id)
    backend = Backend(sql_store.ManagedSessionMaker, None)
    counted = tree_part(backend, TreeQuery(depth="collaborations"))["collaborations"]
    listed = tree_part(backend, TreeQuery(depth="collaborations"), readable=lambda _e: True)
    mine = [c for c in counted if c["id"].startswith(token)]
    assert mine == [c for c in listed["collaborations"] if c["id"].startswith(token)]
    assert sum(c["experiment_count"] for c in mine) == sum(not d for *_, d in experiments)
    for collaboration in "abc":
        one = tree_part(backend, TreeQuery(token + collaboration, depth="collaborations"))
        assert one["collaborations"] == [c for c in mine if c["id"] == token + collaboration]
        every = reads.synergos_experiments(sql_store.ManagedSessionMaker)
        chosen = reads.synergos_experiments(sql_store.ManagedSessionMaker, token + collaboration)
        # In no particular order, as the database gives them.
        assert sorted(chosen, key=_by_id) == sorted(
            (e for e in every if e.collaboration == token + collaboration), key=_by_id
        )


def _by_id(experiment: reads.ExperimentRow) -> int:
    return int(experiment.experiment_id)


def _items(tree: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (c["id"], p["id"], e["id"], r["id"], str(r["participant_count"]), r["mlflow_run_id"])
        for c in tree for p in c["projects"] for e in p["experiments"] for r in e["runs"]
    ]  # fmt: skip


def test_the_tree_paged_levelled_and_searched_holds_the_whole_trees_items(
    sql_store: Any,
) -> None:
    _fill(sql_store)
    backend = Backend(sql_store.ManagedSessionMaker, None)
    whole = collaboration_tree(backend)
    everything = _items(whole)
    assert len(everything) == 24

    paged: list[tuple[str, ...]] = []
    top = tree_part(backend, TreeQuery(depth="collaborations"))["collaborations"]
    assert [c["id"] for c in top] == [c["id"] for c in whole]
    assert [c["experiment_count"] for c in top] == [2, 2, 2]
    for collaboration in top:
        projects = tree_part(backend, TreeQuery(collaboration["id"], depth="projects"))
        [project] = projects["collaborations"][0]["projects"]
        assert project["experiment_count"] == 2
        level = tree_part(backend, TreeQuery(collaboration["id"], project["id"],
                                             depth="experiments"))  # fmt: skip
        for experiment in level["collaborations"][0]["projects"][0]["experiments"]:
            assert experiment["run_count"] == 4
            offset: int | None = 0
            while offset is not None:
                page = tree_part(
                    backend,
                    TreeQuery(
                        collaboration["id"], project["id"], experiment["id"], limit=3, offset=offset
                    ),
                )
                [entry] = page["collaborations"][0]["projects"][0]["experiments"]  # fmt: skip
                assert len(entry["runs"]) <= 3
                paged += _items(page["collaborations"])
                offset = entry.get("next_offset")
    assert paged == everything

    searched = tree_part(backend, TreeQuery(search="RUN-1"))
    assert not searched["truncated"]
    assert _items(searched["collaborations"]) == [i for i in everything if "run-1" in i[3]]
    by_experiment = tree_part(backend, TreeQuery(search="exp_1", limit=5))
    assert by_experiment["truncated"]
    assert _items(by_experiment["collaborations"]) == [i for i in everything
                                                       if i[2] == "exp_1"][:5]  # fmt: skip
    odd = tree_part(backend, TreeQuery(search="100%_\\"))
    assert odd["collaborations"] == [] and not odd["truncated"]


@pytest.mark.parametrize("bad", [TreeQuery(depth="runs "), TreeQuery(limit=0),
                                 TreeQuery(offset=-1)])  # fmt: skip
def test_a_bad_tree_query_is_refused_naming_the_parameter(sql_store: Any, bad: TreeQuery) -> None:
    from synergos_mlops.errors import SynergosError

    upgrade_ours(sql_store.engine)
    with pytest.raises(SynergosError, match="depth|limit|offset"):
        tree_part(Backend(sql_store.ManagedSessionMaker, None), bad)


def test_the_tree_route_pages_levels_and_searches_over_http(shared_server: Any) -> None:
    import uuid

    import requests

    api = f"{shared_server.url}/api/synergos/v1"
    collaboration = f"paged {uuid.uuid4().hex[:8]}"
    for r in range(3):
        body = {"collaboration": collaboration, "project": "p", "experiment": "e",
                "run": f"run {r}", "participants": ["a", "b"]}  # fmt: skip
        requests.post(f"{api}/runs/resolve", json=body, timeout=60).raise_for_status()

    def get(**params: Any) -> Any:
        response = requests.get(f"{api}/collaborations", params=params, timeout=60)
        return response.status_code, response.json()

    status, whole = get()
    assert status == 200
    [mine] = [c for c in whole["collaborations"] if c["id"] == collaboration]
    runs = mine["projects"][0]["experiments"][0]["runs"]
    assert [r["id"] for r in runs] == ["run 0", "run 1", "run 2"]

    _, level = get(collaboration=collaboration, depth="experiments")
    [experiment] = level["collaborations"][0]["projects"][0]["experiments"]
    assert experiment["run_count"] == 3 and "runs" not in experiment
    _, first = get(collaboration=collaboration, project="p", experiment="e", limit=2)
    _, rest = get(collaboration=collaboration, project="p", experiment="e", limit=2, offset=2)
    pages = [first["collaborations"][0]["projects"][0]["experiments"][0],
             rest["collaborations"][0]["projects"][0]["experiments"][0]]  # fmt: skip
    assert pages[0]["next_offset"] == 2 and "next_offset" not in pages[1]
    assert pages[0]["runs"] + pages[1]["runs"] == runs
    _, found = get(search=collaboration.upper())
    assert found["collaborations"] == [mine] and found["truncated"] is False

    for bad in ({"depth": "everything"}, {"limit": 0}, {"offset": -1}):
        status, error = get(**bad)
        assert status == 400 and error["error"]["code"] == "BAD_REQUEST", bad


def test_the_studies_list_asks_the_same_queries_however_many_experiments_hold_studies(
    sql_store: Any,
) -> None:
    """The list once cost a round trip per studied experiment. Now it asks the same number
    of queries for one studied experiment as for six, and every experiment's trials are what
    reading that experiment alone finds."""
    from mlflow.entities import RunStatus, RunTag
    from sqlalchemy import event

    from synergos_mlops.views.studies import list_studies

    made = _fill(sql_store)
    maker = sql_store.ManagedSessionMaker
    backend = Backend(maker, None)
    experiments = reads.synergos_experiments(maker)
    statements: list[str] = []
    bound: list[tuple[str, Any]] = []

    def count(*args: Any) -> None:
        statements.append(args[2])
        bound.append((args[2], args[3]))

    def listed() -> tuple[list[dict[str, Any]], int]:
        statements.clear()
        event.listen(sql_store.engine, "before_cursor_execute", count)
        try:
            return list_studies(backend), len(statements)
        finally:
            event.remove(sql_store.engine, "before_cursor_execute", count)

    few, asked_few = listed()
    assert [(s["collaboration"], s["experiment"], s["study"]) for s in few] == [
        ("collab 0", "exp_0", "s"), ("collab 2", "exp_1", "optim"),
    ]  # fmt: skip
    # Only the studied experiments are read: the others' ids are never asked for.
    asked = [{str(p) for p in (params.values() if isinstance(params, dict) else params)}
             for sql, params in bound
             if "FROM experiments" in sql and "experiment_tags" in sql]  # fmt: skip
    pairs = {(s["collaboration"], s["experiment"]) for s in few}
    studied = {e.experiment_id for e in experiments if (e.collaboration, e.experiment) in pairs}
    assert len(asked) == 1 and studied <= asked[0]
    assert not asked[0] & ({e.experiment_id for e in experiments} - studied)
    for key, resolved in made.items():  # a study in every experiment, some runs failed
        if key.endswith("1"):
            sql_store.set_tag(resolved.run_id, RunTag("synergos.study", f"s{key[:2]}"))
            sql_store.set_tag(resolved.run_id, RunTag("synergos.trial", "1"))
            sql_store.update_run_info(resolved.run_id, RunStatus.FAILED, 2000, None)
    many, asked_many = listed()
    assert asked_many == asked_few
    assert len({(s["collaboration"], s["experiment"]) for s in many}) == 6
    by_experiment = {(e.collaboration, e.experiment): e.experiment_id for e in experiments}
    for entry in many:
        trials = [t for t in stored.trial_rows(maker, by_experiment[entry["collaboration"],
                                                                    entry["experiment"]])
                  if t.study == entry["study"]]  # fmt: skip
        assert entry["trial_count"] == len(trials) > 0
        states = {s: n for s, n in entry["counts"].items() if n}
        assert states == {t.run.status: 1 for t in trials}


def test_runs_asked_for_by_id_are_read_in_chunks_that_lose_none(
    sql_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids are sent a chunk at a time (SQLite's variable limit): with chunks of two, the
    trials found are those found in one chunk."""
    _fill(sql_store)
    maker = sql_store.ManagedSessionMaker
    experiments = [e.experiment_id for e in reads.synergos_experiments(maker)]
    whole = stored.trial_rows_of(maker, experiments)
    ids = reads.federation_runs(maker, experiments)
    monkeypatch.setattr(reads, "ID_CHUNK", 2)
    assert stored.trial_rows_of(maker, experiments) == whole
    named = reads.federation_runs_named(maker, [r.run_uuid for r in ids])
    assert sorted(r.run_uuid for r in named) == sorted(r.run_uuid for r in ids)
    assert len(ids) > 2 * 2


def test_a_loaded_store_that_was_never_analyzed_gets_its_statistics_at_the_next_start(
    sql_store: Any,
) -> None:
    """A store restored or bulk-loaded into a new PostgreSQL database has no planner
    statistics; ``upgrade_ours`` (every ``serve`` start) gathers them for MLflow's tables
    that hold rows, once. SQLite is left alone."""
    from synergos_mlops.storage.schema import STATISTICS_TABLES, gather_missing_statistics

    _fill(sql_store)  # through MLflow's store: rows, and no ANALYZE of ours yet
    if sql_store.engine.dialect.name == "sqlite":
        assert gather_missing_statistics(sql_store.engine) == []
        return
    done = set(gather_missing_statistics(sql_store.engine))
    with sql_store.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT relname, last_analyze, last_autoanalyze FROM pg_stat_user_tables "
            "WHERE relname = ANY(:tables)"), {"tables": list(STATISTICS_TABLES)},
        ).fetchall()  # fmt: skip
    analyzed = {name for name, mine, auto in rows if mine or auto}
    assert {"runs", "tags", "metrics", "latest_metrics"} <= analyzed
    assert done <= analyzed
    # Autovacuum may come first to the big tables, never to one of a few rows (its threshold
    # is 50 changed rows).
    assert "experiment_tags" in done
    assert gather_missing_statistics(sql_store.engine) == []


def _shown(setting: str, uri: str, env: dict[str, str]) -> str:
    """A PostgreSQL setting as a new process with this environment's connection sees it."""
    import subprocess
    import sys

    script = (
        "import sys, psycopg\n"
        "with psycopg.connect(sys.argv[1]) as c:\n"
        f"    print(c.execute('SHOW {setting}').fetchone()[0])\n"
    )
    shown = subprocess.run([sys.executable, "-c", script, uri], env=env, text=True,
                           capture_output=True, timeout=120, check=True)  # fmt: skip
    return shown.stdout.strip()


def test_the_workers_leave_plans_to_postgresql_and_the_run_id_search_sends_its_text(
    tmp_path: Any, postgres_uri: str
) -> None:
    """``serve``'s workers plan as stock MLflow does (psycopg prepares a statement after five
    runs, ``plan_cache_mode`` is PostgreSQL's ``auto``: forcing a plan per call cost MLflow's
    own ``log_batch`` a fifth of its time). The run-id search, whose plan depends on the text
    searched (a generic plan reads every id), carries that text in the SQL itself, so a
    prepared search is planned for it; and ten searches in one session find the same as one."""
    from pathlib import Path

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import event

    from synergos_mlops.server.database import worker_options
    from synergos_mlops.server.serve import ServeConfig, prepare
    from synergos_mlops.storage.runs import resolve_run

    _, env = prepare(ServeConfig(store=Path(tmp_path) / "store", port=0), echo=lambda _: None)
    assert _shown("plan_cache_mode", postgres_uri, env) == "auto"
    assert worker_options("-c work_mem=64MB") == "-c work_mem=64MB"

    store = SqlAlchemyStore(postgres_uri, str(tmp_path / "artifacts"))
    ids = ExperimentIds("c", "p", "e")
    for run in ("run-3", "run-30", "other"):
        resolve_run(store, ids, run, ["a"])
    experiments = [e.experiment_id for e in reads.synergos_experiments(store.ManagedSessionMaker)]
    sent: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if "LIKE" in statement:
            sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        found = [
            sorted(r.synergos_id for r in reads.federation_runs_matching(
                store.ManagedSessionMaker, searched, experiments))
            for searched in ["UN-3"] * 10 + ["n-30", "100%"]
        ]  # fmt: skip
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
        store.engine.dispose()
    assert found == [["run-3", "run-30"]] * 10 + [["run-30"], []]
    searched_for = ["UN-3"] * 10 + ["n-30", "100\\%"]
    for (statement, parameters), searched in zip(sent, searched_for, strict=True):
        assert f"'%{searched}%'" in statement.replace("%%", "%")
        assert all(f"%{searched}%" != value for value in dict(parameters or {}).values())


def test_serve_plans_for_pages_in_memory_unless_the_database_says_otherwise(
    tmp_path: Any, postgres_uri: str
) -> None:
    """On a PostgreSQL store whose ``random_page_cost`` no one set, ``serve``'s workers plan
    with 1.1 (pages on SSD or in memory: trials read by id are probed, not found by reading
    every run); a cost the database's operator set is kept, and a SQLite store is left alone."""
    from pathlib import Path

    from sqlalchemy import create_engine, text

    from synergos_mlops.server.database import page_cost_is_default
    from synergos_mlops.server.serve import ServeConfig, prepare

    def served_cost() -> str:
        config = ServeConfig(store=Path(tmp_path) / "store", port=0,
                             backend_store_uri=postgres_uri,
                             artifacts_destination=str(Path(tmp_path) / "artifacts"))  # fmt: skip
        _, env = prepare(config, echo=lambda _: None)
        return _shown("random_page_cost", postgres_uri, env)

    assert page_cost_is_default(postgres_uri)
    assert served_cost() == "1.1"
    engine = create_engine(postgres_uri, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            name = connection.execute(text("SELECT current_database()")).scalar()
            connection.execute(text(f'ALTER DATABASE "{name}" SET random_page_cost = 2'))
    finally:
        engine.dispose()
    assert not page_cost_is_default(postgres_uri)
    assert served_cost() == "2"
    assert not page_cost_is_default(f"sqlite:///{tmp_path / 'other.db'}")
