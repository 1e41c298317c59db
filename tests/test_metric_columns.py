"""FederatedRun.log_metric_columns: a round's values of many participants in one call, as
columns; stored point for point as log_metrics would store them, and refused whole, naming
the bad point, as log_metrics would refuse it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.tracking import FederatedTracker

PARTICIPANTS = [None, "w1", "w2"]
MAX_FLOAT = sys.float_info.max
KEYS = ["train/loss", "train/acc", "evaluate/loss"]

points = st.lists(
    st.tuples(
        st.sampled_from(PARTICIPANTS),
        st.sampled_from(KEYS),
        st.one_of(st.floats(allow_nan=False, width=64), st.integers(-(2**52), 2**52)),
    ),
    max_size=30,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=10)
@given(columns=points)
@example(columns=[(None, "train/loss", float("inf")), ("w1", "train/acc", float("-inf"))])
def test_columns_are_stored_as_log_metrics_stores_them(
    tmp_path_factory: pytest.TempPathFactory, columns: list[tuple[str | None, str, float]]
) -> None:
    store = tmp_path_factory.mktemp("store")
    with FederatedTracker(store) as tracker, tracker.run("c", "p", "e", "r") as run:
        run.log_metric_columns(
            [p for p, _, _ in columns], [k for _, k, _ in columns], [v for _, _, v in columns],
            step=3, timestamp=1000,
        )  # fmt: skip
        run.flush()
        expected: dict[tuple[str | None, str], float] = {}
        for participant, key, value in columns:
            # The last one of a step wins; ±inf is kept as MLflow keeps it, ±max float.
            expected[participant, key] = float(np.clip(float(value), -MAX_FLOAT, MAX_FLOAT))
        client = MlflowClient(run.tracking_uri)
        for (participant, key), value in expected.items():
            run_id = run.run_id if participant is None else run.participant_run_id(participant)
            history = client.get_metric_history(run_id, key)
            assert [(m.step, m.value) for m in history] == [(3, value)]


def test_a_value_that_is_no_number_refuses_the_call_naming_it_and_logs_nothing(
    tmp_path: Path,
) -> None:
    with FederatedTracker(tmp_path / "store") as tracker, tracker.run("c", "p", "e", "r") as run:
        with pytest.raises(InvalidValueError, match="'train/acc' has a non-numeric value 'x'"):
            run.log_metric_columns(["w1", "w1"], ["train/loss", "train/acc"], [0.5, "x"], step=1)
        with pytest.raises(InvalidValueError, match="'train/acc' has a non-numeric value True"):
            run.log_metric_columns(["w1", "w1"], ["train/loss", "train/acc"], [0.5, True], step=1)
        with pytest.raises(InvalidValueError, match="differ in length"):
            run.log_metric_columns(["w1"], ["train/loss", "train/acc"], [0.5, 0.6], step=1)
        with pytest.raises(InvalidValueError, match="top@5"):
            run.log_metric_columns(["w1"], ["top@5"], [0.5], step=1)
        run.log_metric_columns(["w1"], ["train/loss"], [np.float32(0.25)], step=2)
        run.flush()
        history = MlflowClient(run.tracking_uri).get_metric_history(
            run.participant_run_id("w1"), "train/loss"
        )
        assert [(m.step, m.value) for m in history] == [(2, 0.25)]
