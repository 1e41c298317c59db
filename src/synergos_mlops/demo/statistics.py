"""Synergos' per-class statistics of a classifier, computed one-vs-rest.

For every class ``c`` the labels become "is ``c``" / "is not ``c``" and the usual binary
statistics follow. A statistic that is undefined for a class (a rate whose denominator is
zero, or an area under a curve when the data hold no positive or no negative example of that
class, as happens on a participant's non-IID shard) is NaN, never a made-up number.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["class_statistics", "cross_entropy"]


def cross_entropy(y: NDArray[np.int64], proba: NDArray[np.float64]) -> float:
    """Mean negative log-likelihood of the true labels (class index = label)."""
    picked = proba[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def _curve(
    positive: NDArray[np.bool_], score: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """True and false positive counts at each distinct score threshold, highest first."""
    order = np.argsort(-score, kind="mergesort")
    ranked, hits = score[order], positive[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(hits, dtype=np.float64)[last_of_each]
    fps = (last_of_each + 1) - tps
    return tps, fps


def _roc_auc(positive: NDArray[np.bool_], score: NDArray[np.float64]) -> float:
    """Area under the ROC curve (ties count one half), NaN when positives or negatives are
    missing. Agrees with ``sklearn.metrics.roc_auc_score``, without its per-call checks."""
    n_pos = float(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    tps, fps = _curve(positive, score)
    tpr, fpr = np.r_[0.0, tps / n_pos], np.r_[0.0, fps / n_neg]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _average_precision(positive: NDArray[np.bool_], score: NDArray[np.float64]) -> float:
    """Area under the precision-recall curve as average precision, NaN without positives.
    Agrees with ``sklearn.metrics.average_precision_score``."""
    n_pos = float(positive.sum())
    if not n_pos:
        return float("nan")
    tps, fps = _curve(positive, score)
    precision, recall = tps / (tps + fps), tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def class_statistics(
    y_true: NDArray[np.int64], proba: NDArray[np.float64], n_classes: int
) -> dict[str, list[float]]:
    """Synergos' per-class statistics, one value per class (class index = label)."""
    y_pred = np.argmax(proba, axis=1)
    names = (
        "accuracy", "roc_auc_score", "pr_auc_score", "f_score",
        "TPRs", "TNRs", "PPVs", "NPVs", "FPRs", "FNRs", "FDRs",
        "TPs", "TNs", "FPs", "FNs",
    )  # fmt: skip
    result: dict[str, list[float]] = {name: [] for name in names}
    total = len(y_true)
    for label in range(n_classes):
        positive = y_true == label
        predicted = y_pred == label
        tp = float(np.sum(positive & predicted))
        tn = float(np.sum(~positive & ~predicted))
        fp = float(np.sum(~positive & predicted))
        fn = float(np.sum(positive & ~predicted))
        values = {
            "accuracy": _ratio(tp + tn, total),
            "roc_auc_score": _roc_auc(positive, proba[:, label]),
            "pr_auc_score": _average_precision(positive, proba[:, label]),
            "f_score": _ratio(2 * tp, 2 * tp + fp + fn),
            "TPRs": _ratio(tp, tp + fn),
            "TNRs": _ratio(tn, tn + fp),
            "PPVs": _ratio(tp, tp + fp),
            "NPVs": _ratio(tn, tn + fn),
            "FPRs": _ratio(fp, fp + tn),
            "FNRs": _ratio(fn, fn + tp),
            "FDRs": _ratio(fp, fp + tp),
            "TPs": tp,
            "TNs": tn,
            "FPs": fp,
            "FNs": fn,
        }
        for name in names:
            result[name].append(values[name])
    return result
