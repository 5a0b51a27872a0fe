"""Evaluation metrics over test tasks (MATH.md §5).

Classification metrics are pure numpy (float64 internally); inputs may be jax or numpy arrays.
``probs`` are predictive probabilities (not logits) with the classes on the last axis, ``labels``
integer class indices with the same leading shape. Functions that take ``[..., C]`` pool all
examples of all tasks (flatten the leading axes); per-task quantities take ``[T, N, C]``.
"""
import math
from typing import Any, Dict, Optional, Tuple

import numpy as np
from scipy import special, stats

PROB_FLOOR = 1e-12  # probabilities are clipped here before the log in ``nll``
_SUM_TOLERANCE = 1e-3  # |Σ_c p_c − 1| allowed (float32 averages of softmaxes)


def mean_ci95(values) -> Dict[str, float]:
    """Mean over tasks and the half-width 1.96·sd/√N of its 95% interval."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else np.nan
    return {"mean": float(values.mean()), "ci95": float(half_width)}


# ---------------------------------------------------------------------------------------------
# Validation.

def _as_probs(probs, min_ndim: int = 1) -> np.ndarray:
    """probs [..., C] as float64, checked finite, non-negative and summing to 1 on the last axis."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim < min_ndim or probs.shape[-1] < 1:
        raise ValueError(f"probs must have at least {min_ndim} dimension(s) with classes on the "
                         f"last axis; got shape {probs.shape}")
    if probs.size == 0:
        raise ValueError(f"probs is empty (shape {probs.shape})")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contains non-finite values")
    if probs.min() < -_SUM_TOLERANCE or np.max(np.abs(probs.sum(-1) - 1.0)) > _SUM_TOLERANCE:
        raise ValueError("probs must be probabilities (non-negative, summing to 1 over the last "
                         "axis), not logits")
    return probs


def _as_probs_labels(probs, labels, ndim: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Validated (probs [..., C] float64, labels [...] int64); ``ndim`` fixes probs' rank."""
    probs = _as_probs(probs)
    labels = np.asarray(labels)
    if ndim is not None and probs.ndim != ndim:
        raise ValueError(f"probs must have {ndim} dimensions, got shape {probs.shape}")
    if probs.shape[:-1] != labels.shape:
        raise ValueError(f"probs shape {probs.shape} and labels shape {labels.shape} disagree: "
                         f"labels must have probs' leading shape {probs.shape[:-1]}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
            raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    num_classes = probs.shape[-1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got range "
                         f"[{labels.min()}, {labels.max()}]")
    return probs, labels


def _true_class_prob(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """p_{y} for each example: probs [..., C], labels [...] -> [...]."""
    return np.take_along_axis(probs, labels[..., None], axis=-1)[..., 0]


# ---------------------------------------------------------------------------------------------
# Accuracy, NLL, Brier.

def accuracy_per_task(probs, labels) -> np.ndarray:
    """Per-task fraction with argmax (first on ties) == label: probs [T, N, C], labels [T, N] -> [T]."""
    probs, labels = _as_probs_labels(probs, labels, ndim=3)
    return np.mean(np.argmax(probs, axis=-1) == labels, axis=-1).astype(np.float64)


def nll(probs, labels) -> float:
    """Mean −log p_label over all examples (p clipped at 1e-12): probs [..., C], labels [...] -> float."""
    probs, labels = _as_probs_labels(probs, labels)
    return float(-np.mean(np.log(np.clip(_true_class_prob(probs, labels), PROB_FLOOR, None))))


def brier(probs, labels) -> float:
    """Multi-class Brier, mean of Σ_c (p_c − onehot_c)² (range [0, 2]): probs [..., C], labels [...].

    Convention: summed over classes, not divided by C (Brier 1950; uniform gives 1 − 1/C).
    """
    probs, labels = _as_probs_labels(probs, labels)
    onehot = np.eye(probs.shape[-1], dtype=np.float64)[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=-1)))


# ---------------------------------------------------------------------------------------------
# Calibration.

def _bin_index(confidence, num_bins: int) -> Tuple[np.ndarray, np.ndarray]:
    """Bin of each confidence in [b/B, (b+1)/B), last bin closed; 0 -> 0, 1 -> B−1: [M] -> ([M], edges [B+1])."""
    edges = np.arange(num_bins + 1, dtype=np.float64) / num_bins  # k/B correctly rounded
    index = np.searchsorted(edges, np.asarray(confidence, dtype=np.float64), side="right") - 1
    return np.clip(index, 0, num_bins - 1), edges


def calibration(probs, labels, num_bins: int = 10) -> Dict[str, Any]:
    """ECE, MCE, per-bin stats over equal-width max-probability bins: probs [..., C], labels [...].

    All examples of all tasks are pooled. Bin b is [b/B, (b+1)/B) with edges ``arange(B+1)/B``;
    the last bin is closed, so confidence 1.0 falls in bin B−1 and 0 in bin 0. Accuracy counts
    argmax == label (first index on ties). ECE = Σ_b (n_b/N)|acc_b − conf_b|; MCE = max over
    non-empty bins of |acc_b − conf_b|. Returns ``ece``, ``mce`` (floats) and ``bin_edges`` [B+1],
    ``bin_confidence``, ``bin_accuracy`` [B] (NaN in empty bins), ``bin_count`` [B] (int).
    """
    if isinstance(num_bins, bool) or int(num_bins) != num_bins or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got num_bins={num_bins!r}")
    num_bins = int(num_bins)
    probs, labels = _as_probs_labels(probs, labels)
    probs = probs.reshape(-1, probs.shape[-1])
    labels = labels.reshape(-1)
    confidence = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
    index, edges = _bin_index(confidence, num_bins)
    count = np.bincount(index, minlength=num_bins)
    nonempty = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_confidence = np.bincount(index, weights=confidence, minlength=num_bins) / count
        bin_accuracy = np.bincount(index, weights=correct, minlength=num_bins) / count
    bin_confidence[~nonempty] = np.nan
    bin_accuracy[~nonempty] = np.nan
    gap = np.abs(bin_accuracy[nonempty] - bin_confidence[nonempty])
    return {
        "ece": float(np.sum(count[nonempty] / labels.size * gap)),
        "mce": float(gap.max()),
        "bin_confidence": bin_confidence,
        "bin_accuracy": bin_accuracy,
        "bin_count": count.astype(np.int64),
        "bin_edges": edges,
    }


# ---------------------------------------------------------------------------------------------
# Entropy and out-of-episode detection.

def predictive_entropy(probs) -> np.ndarray:
    """Entropy −Σ_c p_c log p_c in nats (0·log 0 = 0): probs [..., C] -> [...]."""
    return np.sum(special.entr(_as_probs(probs)), axis=-1)


def auroc(scores_positive, scores_negative) -> float:
    """P(positive score > negative score), ties count 1/2 (= U / (P·Q)): [P], [Q] -> float."""
    positive = np.asarray(scores_positive, dtype=np.float64).reshape(-1)
    negative = np.asarray(scores_negative, dtype=np.float64).reshape(-1)
    if positive.size == 0 or negative.size == 0:
        raise ValueError(f"auroc needs at least one positive and one negative score; got "
                         f"{positive.size} positive(s) and {negative.size} negative(s)")
    if not (np.all(np.isfinite(positive)) and np.all(np.isfinite(negative))):
        raise ValueError("auroc scores contain non-finite values")
    ranks = stats.rankdata(np.concatenate([positive, negative]), method="average")
    u_statistic = ranks[:positive.size].sum() - positive.size * (positive.size + 1) / 2.0
    return float(u_statistic / (positive.size * negative.size))


def out_of_episode_auroc(entropy_in, entropy_out) -> float:
    """AUROC of entropy for out-of-episode (positive) vs in-episode query points: [...], [...] -> float."""
    return auroc(entropy_out, entropy_in)


# ---------------------------------------------------------------------------------------------
# Report.

def _jsonable(value):
    """Python floats/ints/lists (non-finite floats -> None) from numpy scalars, arrays and dicts."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def classification_report(probs, labels, num_bins: int = 10) -> Dict[str, Any]:
    """Accuracy mean ± ci95 over tasks, NLL, Brier, ECE/MCE + bins as JSON: probs [T, N, C], labels [T, N].

    NaN (the ci95 of a single task, empty bins' confidence/accuracy) becomes None. Keys:
    ``num_tasks``, ``num_examples``, ``accuracy`` {mean, ci95}, ``nll``, ``brier``, ``ece``,
    ``mce``, ``calibration`` (the full ``calibration`` dict, plottable by
    ``plotting.plot_reliability_diagram``).
    """
    probs, labels = _as_probs_labels(probs, labels, ndim=3)
    calib = calibration(probs, labels, num_bins)
    return _jsonable({
        "num_tasks": labels.shape[0],
        "num_examples": labels.size,
        "accuracy": mean_ci95(accuracy_per_task(probs, labels)),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "ece": calib["ece"],
        "mce": calib["mce"],
        "calibration": calib,
    })
