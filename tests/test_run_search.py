"""The tree's search box through the trigram index of the runs' ids (``storage.run_search``):
the index is created beside MLflow's schema, kept by MLflow's own writes, filled again where
a rebuild of ``tags`` lost its triggers, and finds what reading every id finds (SQLite and
PostgreSQL). How fast is ``make bench``'s business (benchmarks/scale_bench.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from synergos_mlops.federation import ExperimentIds
from synergos_mlops.storage import reads
from synergos_mlops.storage.run_search import SEARCH_OBJECTS, TRIGRAM_INDEX
from synergos_mlops.storage.runs import resolve_run
from synergos_mlops.storage.schema import upgrade_ours
from synergos_mlops.views.federated_runs import Backend, TreeQuery, tree_part

#: Letters of both cases, digits, LIKE's and FTS5's special characters, and some text whose
#: case SQLite's lower() does not fold.
ALPHABET = "aAbBrRuUnN019-_%\\\"' .Éé"


def _found(store: Any, search: str) -> set[str]:
    backend = Backend(store.ManagedSessionMaker, None)
    answer = tree_part(backend, TreeQuery(search=search))
    return {
        run["id"]
        for collaboration in answer["collaborations"]
        for project in collaboration["projects"]
        for experiment in project["experiments"]
        for run in experiment.get("runs", [])
    }


def _ids(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    ids = {"run-1", "RUN-12", "optim_run_1", "100%_\\", 'quote"d', "Étude 3", "étude 4"}
    while len(ids) < count:
        ids.add("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 9))).strip() or "x")
    return sorted(ids)


def _experiment_ids(store: Any) -> list[str]:
    return [e.experiment_id for e in reads.synergos_experiments(store.ManagedSessionMaker)]


def test_the_index_is_created_beside_mlflows_schema_and_used(sql_store: Any) -> None:
    upgrade_ours(sql_store.engine)
    ids = ExperimentIds("c", "p", "e")
    resolve_run(sql_store, ids, "run-3", ["a", "b"])
    with sql_store.engine.connect() as connection:
        if sql_store.engine.dialect.name == "sqlite":
            names = {n for (n,) in connection.execute(text("SELECT name FROM sqlite_master"))}
            assert set(SEARCH_OBJECTS) <= names
            plan = " ".join(str(row[-1]) for row in connection.execute(text(
                "EXPLAIN QUERY PLAN SELECT run_uuid FROM synergos_run_search "
                "WHERE synergos_run_search MATCH '\"un-\"'"
            )))  # fmt: skip
            assert "VIRTUAL TABLE" in plan
        else:  # which index serves a query is the planner's choice, made by the table's size
            definition = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                {"name": TRIGRAM_INDEX},
            ).scalar_one()
            assert "gin_trgm_ops" in definition and "synergos.run" in definition
            # Without GIN's pending list, which every search would read whole until VACUUM.
            assert "fastupdate=off" in definition
    # The federation run, not its participants (which carry the same id).
    [found] = reads.federation_runs_matching(
        sql_store.ManagedSessionMaker, "UN-3", _experiment_ids(sql_store)
    )
    assert found.synergos_id == "run-3"


def test_searching_finds_each_id_that_holds_the_text_and_none_that_does_not(
    sql_store: Any,
) -> None:
    upgrade_ours(sql_store.engine)
    ids = _ids(seed=7, count=40)  # in experiments named without a letter of ALPHABET
    for position, run in enumerate(ids):
        resolve_run(sql_store, ExperimentIds("c", "p", "xyz"[position % 3]), run, ["a"])

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(st.one_of(
        st.text(ALPHABET, min_size=1, max_size=6),
        st.sampled_from(ids).flatmap(lambda i: st.tuples(
            st.just(i), st.integers(0, len(i)), st.integers(0, len(i))
        )).map(lambda t: t[0][min(t[1], t[2]):max(t[1], t[2])] or t[0]),
    ))  # fmt: skip
    def check(search: str) -> None:
        found = _found(sql_store, search)
        # Every id holding the text as it was typed is found; any case may be found too,
        # nothing that does not hold it in some case.
        assert {i for i in ids if search in i} <= found, search
        assert found <= {i for i in ids if search.casefold() in i.casefold()}, search
        if search.isascii():  # ASCII: any case, on both databases, index or no index
            assert found == {i for i in ids if search.lower() in i.lower()}, search

    check()


def test_mlflows_own_writes_keep_the_index(sql_store: Any) -> None:
    from mlflow.entities import RunTag

    upgrade_ours(sql_store.engine)
    resolved = resolve_run(sql_store, ExperimentIds("c", "p", "e"), "alpha-1", ["a"])
    assert _found(sql_store, "pha-") == {"alpha-1"}
    sql_store.set_tag(resolved.run_id, RunTag("synergos.run", "omega-2"))  # an update
    assert _found(sql_store, "pha-") == set()
    assert _found(sql_store, "mega") == {"omega-2"}
    sql_store.delete_tag(resolved.run_id, "synergos.run")  # listed by its name, found no more
    assert _found(sql_store, "mega") == set()
    resolve_run(sql_store, ExperimentIds("c", "p", "e"), "gamma-3", [])  # an insert
    assert _found(sql_store, "AMMA") == {"gamma-3"}


def test_a_store_whose_triggers_were_lost_is_filled_again_at_the_next_start(
    sql_store: Any,
) -> None:
    """A later MLflow migration that rebuilds ``tags`` (SQLite's batch mode copies the table)
    drops the triggers: runs written after it are found once ``serve`` starts again."""
    upgrade_ours(sql_store.engine)
    resolve_run(sql_store, ExperimentIds("c", "p", "e"), "before-1", [])
    with sql_store.engine.begin() as connection:
        if sql_store.engine.dialect.name == "sqlite":
            for trigger in SEARCH_OBJECTS[1:]:
                connection.execute(text(f"DROP TRIGGER {trigger}"))
        else:
            connection.execute(text(f"DROP INDEX {TRIGRAM_INDEX}"))
    resolve_run(sql_store, ExperimentIds("c", "p", "e"), "after-2", [])
    upgrade_ours(sql_store.engine)
    assert _found(sql_store, "fter") == {"after-2"}
    assert _found(sql_store, "-") == {"before-1", "after-2"}
    assert _found(sql_store, "efore") == {"before-1"}


@pytest.mark.parametrize("sql_store", ["postgresql"], indirect=True)  # SQLite has no such list
def test_an_index_an_earlier_release_made_drops_its_pending_list_at_the_next_start(
    sql_store: Any,
) -> None:
    """The index as the previous release made it (GIN's default ``fastupdate=on``) holds the
    runs written since in its pending list; the next start turns the list off and merges it,
    and the search finds the same runs."""
    upgrade_ours(sql_store.engine)
    with sql_store.engine.begin() as connection:
        connection.execute(text(f"ALTER INDEX {TRIGRAM_INDEX} SET (fastupdate = on)"))
    for n in range(5):
        resolve_run(sql_store, ExperimentIds("c", "p", "e"), f"pending-{n}", [])

    def pending() -> int:
        with sql_store.engine.connect() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
            return int(connection.execute(text(
                "SELECT n_pending_tuples FROM gin_metapage_info(get_raw_page(:name, 0))"
            ), {"name": TRIGRAM_INDEX}).scalar_one())  # fmt: skip

    assert pending() > 0
    upgrade_ours(sql_store.engine)
    assert pending() == 0
    with sql_store.engine.connect() as connection:
        definition = connection.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
            {"name": TRIGRAM_INDEX},
        ).scalar_one()
    assert "fastupdate=off" in definition
    assert _found(sql_store, "ending-") == {f"pending-{n}" for n in range(5)}


def test_any_text_searches_without_an_error_and_finds_only_what_holds_it(sql_store: Any) -> None:
    """Whatever a user types (control characters, NUL, which PostgreSQL refuses in text,
    FTS5's syntax): an answer, never an error. No id holds a text that is not printable."""
    upgrade_ours(sql_store.engine)
    ids = ["run-1", 'say "hi"', "a*b", "x OR y", "NEAR(a b)"]
    for run in ids:
        resolve_run(sql_store, ExperimentIds("c", "p", "z"), run, [])

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(["\x00un", "run\x00", "\t", '"', "*", "OR y", "NEAR(", "a*b"]),
        )
    )
    def check(search: str) -> None:
        found = _found(sql_store, search)
        if any(search.casefold() in level for level in ("c", "p", "z")):
            assert found == set(ids), search  # the experiment's ids hold it: all its runs
            return
        assert found <= {i for i in ids if search.casefold() in i.casefold()}, search
        assert {i for i in ids if search in i} <= found, search

    check()


def test_an_odd_search_over_http_is_answered_not_failed(shared_server: Any) -> None:
    import requests

    for search in ["\x00run", "run\t", '"', "a*b", "NEAR(", "%_\\"]:
        response = requests.get(
            f"{shared_server.url}/api/synergos/v1/collaborations",
            params={"search": search}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 200, (search, response.text)
        assert "collaborations" in response.json()
