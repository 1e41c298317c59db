"""The demo's federated training: real data, real learning, no tracker involved."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from synergos_mlops.demo.data import MAX_PARTICIPANTS, load_federated_data
from synergos_mlops.demo.statistics import class_statistics
from synergos_mlops.demo.training import (
    SoftmaxModel,
    TrainingConfig,
    aggregate,
    federated_rounds,
    local_train,
)
from synergos_mlops.errors import InvalidValueError
from synergos_mlops.federation import CLASS_STATISTICS


def _train(**overrides: object):
    config = TrainingConfig(**overrides)  # type: ignore[arg-type]
    data = load_federated_data(config.participants, seed=config.seed, alpha=config.alpha)
    return config, data, list(federated_rounds(config, data))


def test_global_model_beats_majority_baseline_on_held_out_data() -> None:
    _, data, rounds = _train()
    majority = np.bincount(np.concatenate([s.y_train for s in data.shards])).argmax()
    baseline = float(np.mean(data.y_test == majority))
    accuracy = float(np.mean(rounds[-1].model.predict(data.x_test) == data.y_test))
    assert baseline < 0.15
    assert accuracy > baseline + 0.6
    assert accuracy == pytest.approx(rounds[-1].evaluate_accuracy)


def test_every_round_evaluates_the_new_global_model_on_each_participants_own_data() -> None:
    _, data, rounds = _train(rounds=3, epochs=1)
    for result in rounds:
        for local, shard in zip(result.participants, data.shards, strict=True):
            proba = result.model.predict_proba(shard.x_evaluate)
            predicted = result.model.predict(shard.x_evaluate)
            assert local.evaluate_accuracy == pytest.approx(np.mean(predicted == shard.y_evaluate))
            expected = class_statistics(shard.y_evaluate, proba, data.n_classes)
            np.testing.assert_equal(local.statistics, expected)  # NaN where undefined


def test_global_loss_falls_over_rounds() -> None:
    _, _, rounds = _train()
    assert rounds[-1].evaluate_loss < rounds[0].evaluate_loss * 0.6
    assert rounds[-1].train_loss < rounds[0].train_loss


def test_fedprox_and_fedavg_follow_different_trajectories() -> None:
    _, _, fedavg = _train(algorithm="fedavg")
    _, _, fedprox = _train(algorithm="fedprox", mu=0.1)
    avg_curve = [r.evaluate_loss for r in fedavg]
    prox_curve = [r.evaluate_loss for r in fedprox]
    assert not np.allclose(avg_curve, prox_curve, rtol=1e-3)
    assert not np.allclose(fedavg[-1].model.coef, fedprox[-1].model.coef, rtol=1e-3)


def test_fedprox_keeps_local_weights_closer_to_the_global_ones() -> None:
    data = load_federated_data(3, seed=0)
    start = SoftmaxModel.zeros(data.n_features, data.classes)
    shard = data.shards[0]

    def drift(config: TrainingConfig) -> float:
        local, _ = local_train(shard, start, config, np.random.default_rng(0))
        return float(np.linalg.norm(local.coef - start.coef))

    assert drift(TrainingConfig(algorithm="fedprox", mu=1.0)) < drift(
        TrainingConfig(algorithm="fedavg")
    )


def test_fedavg_ignores_mu() -> None:
    _, _, first = _train(algorithm="fedavg", mu=0.1)
    _, _, second = _train(algorithm="fedavg", mu=5.0)
    assert np.array_equal(first[-1].model.coef, second[-1].model.coef)


def test_same_seed_gives_the_same_cycle_and_another_seed_does_not() -> None:
    _, _, first = _train(rounds=2, seed=7)
    _, _, again = _train(rounds=2, seed=7)
    _, _, other = _train(rounds=2, seed=8)
    assert np.array_equal(first[-1].model.coef, again[-1].model.coef)
    assert not np.array_equal(first[-1].model.coef, other[-1].model.coef)


def test_shards_are_non_iid_disjoint_and_apart_from_the_test_set() -> None:
    data = load_federated_data(4, seed=0)
    rows = {tuple(row) for row in data.x_test}
    seen: set[tuple[float, ...]] = set()
    mixes = []
    for shard in data.shards:
        assert shard.samples > 0 and len(shard.y_evaluate) > 0
        mine = {tuple(row) for row in np.vstack([shard.x_train, shard.x_evaluate])}
        # digits holds a few duplicate images, so compare by index-free counts instead of sets
        assert len(mine & rows) <= 5
        assert len(mine & seen) <= 5
        seen |= mine
        counts = np.asarray(shard.class_counts(data.n_classes), dtype=float)
        mixes.append(counts / counts.sum())
    # Label skew: some participant's class mix is far from another's.
    spread = max(np.abs(a - b).sum() for a in mixes for b in mixes)
    assert spread > 0.5
    assert sorted(np.unique(data.y_test)) == list(range(10))


def test_aggregation_weights_participants_by_sample_count() -> None:
    classes = np.arange(2)
    one = SoftmaxModel(np.ones((2, 3)), np.ones(2), classes)
    three = SoftmaxModel(np.full((2, 3), 3.0), np.full(2, 3.0), classes)
    mean = aggregate([one, three], [30, 10])
    assert np.allclose(mean.coef, 1.5)
    assert np.allclose(mean.intercept, 1.5)


def test_sklearn_estimator_predicts_exactly_as_the_federated_model() -> None:
    _, data, rounds = _train(rounds=3)
    model = rounds[-1].model
    estimator = model.to_sklearn()
    assert np.array_equal(estimator.predict(data.x_test), model.predict(data.x_test))
    assert np.allclose(estimator.predict_proba(data.x_test), model.predict_proba(data.x_test))
    restored = SoftmaxModel.from_bytes(model.to_bytes())
    assert np.array_equal(restored.coef, model.coef)
    assert np.array_equal(restored.intercept, model.intercept)
    assert np.array_equal(restored.classes, model.classes)


def test_class_statistics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=200)
    proba = rng.dirichlet(np.ones(3), size=200).round(2)  # rounding makes ties
    proba[np.arange(200), y] += 0.3  # a model that is right more often than not
    proba /= proba.sum(axis=1, keepdims=True)
    stats = class_statistics(y, proba, 3)
    assert set(stats) == CLASS_STATISTICS
    predicted = proba.argmax(axis=1)
    for label in range(3):
        tn, fp, fn, tp = confusion_matrix(y == label, predicted == label).ravel()
        assert stats["TPs"][label] == tp and stats["FNs"][label] == fn
        assert stats["TNs"][label] == tn and stats["FPs"][label] == fp
        assert stats["TPRs"][label] == pytest.approx(tp / (tp + fn))
        assert stats["FDRs"][label] == pytest.approx(fp / (fp + tp))
        assert stats["accuracy"][label] == pytest.approx((tp + tn) / 200)
        assert stats["f_score"][label] == pytest.approx(f1_score(y == label, predicted == label))
        assert stats["roc_auc_score"][label] == pytest.approx(
            roc_auc_score(y == label, proba[:, label])
        )
        assert stats["pr_auc_score"][label] == pytest.approx(
            average_precision_score(y == label, proba[:, label])
        )


def test_statistics_of_a_class_absent_from_the_data_are_nan_not_invented() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.7, 0.3, 0.0]])
    stats = class_statistics(y, proba, 3)
    assert np.isnan(stats["roc_auc_score"][2])
    assert np.isnan(stats["TPRs"][2])
    assert stats["TNs"][2] == 4
    assert stats["accuracy"][2] == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"participants": 0}, "participants must be between 1 and"),
        ({"participants": MAX_PARTICIPANTS + 1}, "participants must be between 1 and"),
        ({"rounds": 0}, "rounds must be"),
        ({"epochs": -1}, "epochs must be"),
        ({"algorithm": "fedsgd"}, "algorithm must be one of fedavg, fedprox"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"mu": -1.0}, "mu must be"),
        ({"mu": float("nan")}, "mu must be"),
    ],
)
def test_config_refuses_bad_values_with_one_sentence(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidValueError, match=message):
        TrainingConfig(**overrides)  # type: ignore[arg-type]
