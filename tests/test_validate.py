"""The call-site checks of keys agree with MLflow's own rule, whether or not they load MLflow."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import _validate_metric_name, _validate_param_name

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.validate import check_metric_key, check_param_key

#: Keys of the alphabet judged without MLflow, and a few characters around it.
KEYS = st.text(alphabet="abcXYZ019_-. /:\\ü\t", min_size=0, max_size=12) | st.sampled_from(
    [".", "..", "/a", "a/", "a//b", "./a", "a/./b", "a/../b", "x" * 250, "x" * 251, " "]
)


def _mlflow_accepts(check: object, key: str) -> bool:
    try:
        check(key)  # type: ignore[operator]
    except MlflowException:
        return False
    return 0 < len(key) <= 250 and key.isprintable()


def _ours_accept(check: object, key: str) -> bool:
    try:
        check(key)  # type: ignore[operator]
    except InvalidValueError:
        return False
    return True


@given(KEYS)
def test_a_metric_key_is_accepted_exactly_when_mlflow_accepts_it(key: str) -> None:
    assert _ours_accept(check_metric_key, key) == _mlflow_accepts(_validate_metric_name, key)


@given(KEYS)
def test_a_hyperparameter_name_is_accepted_exactly_when_mlflow_accepts_it(key: str) -> None:
    ours = _ours_accept(check_param_key, key)
    assert ours == (_mlflow_accepts(_validate_param_name, key))


def test_plain_keys_are_checked_without_loading_mlflow() -> None:
    """An orchestrator that only logs never imports MLflow for its keys."""
    keys = ["train/loss", "evaluate/accuracy", "learning_rate", "a b-c.d"]
    code = (
        "import sys\n"
        "from synergos_mlops.validate import check_metric_key, check_param_key\n"
        f"for key in {keys!r}:\n"
        "    check_metric_key(key), check_param_key(key)\n"
        "print('mlflow' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
