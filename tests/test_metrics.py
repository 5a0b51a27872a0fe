"""Classification metrics and their figures (MATH.md §5) on tiny hand-computed arrays."""
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from metabayes.evaluation import metrics, plotting


def _two_bin_example():
    """4 examples, 3 classes; with 2 bins: bin 0 conf (.4, .45) acc 1/2, bin 1 conf (.9, .7) acc 1/2."""
    probs = np.array([[[0.9, 0.05, 0.05],    # conf .90, label 0: right
                       [0.1, 0.7, 0.2],      # conf .70, label 2: wrong
                       [0.4, 0.3, 0.3],      # conf .40, label 0: right
                       [0.2, 0.45, 0.35]]])  # conf .45, label 0: wrong
    labels = np.array([[0, 2, 0, 0]])
    return probs, labels


# ---------------------------------------------------------------------------------------------
# Calibration.

def test_perfectly_calibrated_predictions_have_zero_ece_and_mce():
    # Task 0: confidence 0.8, 4 of 5 right; task 1: confidence 0.6, 3 of 5 right; pooled.
    probs = np.array([[[0.8, 0.2]] * 5, [[0.6, 0.4]] * 5])
    labels = np.array([[0, 0, 0, 0, 1], [0, 0, 0, 1, 1]])
    calib = metrics.calibration(probs, labels, num_bins=10)
    assert calib["ece"] == pytest.approx(0.0, abs=1e-12)
    assert calib["mce"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_array_equal(calib["bin_count"], [0, 0, 0, 0, 0, 0, 5, 0, 5, 0])
    np.testing.assert_allclose(calib["bin_accuracy"][[6, 8]], [0.6, 0.8], atol=1e-12)
    np.testing.assert_allclose(calib["bin_confidence"][[6, 8]], [0.6, 0.8], atol=1e-12)
    assert np.all(np.isnan(np.delete(calib["bin_accuracy"], [6, 8])))
    # jax float32 inputs: the same up to float32 rounding of 0.8 and 0.6.
    calib32 = metrics.calibration(jnp.asarray(probs), jnp.asarray(labels), num_bins=10)
    assert calib32["ece"] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_array_equal(calib32["bin_count"], calib["bin_count"])


def test_confident_and_always_wrong_gives_ece_and_mce_one():
    probs = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    labels = np.array([[1, 2, 0]])
    calib = metrics.calibration(probs, labels, num_bins=10)
    assert calib["ece"] == pytest.approx(1.0)
    assert calib["mce"] == pytest.approx(1.0)
    assert calib["bin_count"][-1] == 3 and calib["bin_count"].sum() == 3


def test_two_bin_hand_computed_example():
    probs, labels = _two_bin_example()
    calib = metrics.calibration(probs, labels, num_bins=2)
    np.testing.assert_array_equal(calib["bin_count"], [2, 2])
    np.testing.assert_allclose(calib["bin_edges"], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(calib["bin_confidence"], [0.425, 0.8], atol=1e-12)
    np.testing.assert_allclose(calib["bin_accuracy"], [0.5, 0.5], atol=1e-12)
    # ECE = (2/4)|0.5 − 0.425| + (2/4)|0.5 − 0.8| = 0.0375 + 0.15; MCE = 0.3.
    assert calib["ece"] == pytest.approx(0.1875, abs=1e-12)
    assert calib["mce"] == pytest.approx(0.3, abs=1e-12)


def test_bin_placement_of_zero_one_and_exact_boundaries():
    # Bins are [b/B, (b+1)/B), the last closed: 0 -> first bin, 1 -> last, k/B -> bin k.
    confidence = [0.0, np.nextafter(0.3, 0.0), 0.3, 0.7, 0.95, np.nextafter(1.0, 0.0), 1.0]
    index, edges = metrics._bin_index(np.array(confidence), 10)
    np.testing.assert_array_equal(index, [0, 2, 3, 7, 9, 9, 9])
    assert edges[0] == 0.0 and edges[-1] == 1.0 and edges.size == 11
    # The same through calibration(): confidences 0.25, 0.5, 0.75, 1.0 with 4 bins.
    probs = np.array([[[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0],
                       [0.75, 0.25, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]])
    calib = metrics.calibration(probs, np.zeros((1, 4), int), num_bins=4)
    np.testing.assert_array_equal(calib["bin_count"], [0, 1, 1, 2])
    np.testing.assert_array_equal(calib["bin_edges"], [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(calib["bin_confidence"][1:], [0.25, 0.5, 0.875])


# ---------------------------------------------------------------------------------------------
# Accuracy, NLL, Brier.

def test_accuracy_per_task():
    probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]],
                      [[0.5, 0.5], [0.5, 0.5], [0.1, 0.9], [0.1, 0.9]]])  # ties -> class 0
    labels = np.array([[0, 1, 0, 0], [1, 1, 0, 1]])
    accuracy = metrics.accuracy_per_task(probs, labels)
    assert accuracy.shape == (2,)
    np.testing.assert_allclose(accuracy, [0.75, 0.25])


def test_nll_hand_case_and_clipping():
    probs = np.array([[0.5, 0.5], [0.8, 0.2]])
    assert metrics.nll(probs, np.array([0, 1])) == pytest.approx(math.log(10.0) / 2)
    assert metrics.nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(1e-12))


def test_brier_perfect_uniform_and_hand_case():
    eye = np.eye(4)
    assert metrics.brier(eye[None], np.arange(4)[None]) == pytest.approx(0.0, abs=1e-15)
    for num_classes in (2, 5):
        uniform = np.full((2, 3, num_classes), 1.0 / num_classes)
        labels = np.zeros((2, 3), int)
        assert metrics.brier(uniform, labels) == pytest.approx(1.0 - 1.0 / num_classes)
    # (0.7 − 0)² + (0.2 − 1)² + (0.1 − 0)² = 0.49 + 0.64 + 0.01.
    assert metrics.brier(np.array([[0.7, 0.2, 0.1]]), np.array([1])) == pytest.approx(1.14)


# ---------------------------------------------------------------------------------------------
# Entropy and AUROC.

def test_predictive_entropy_uniform_and_one_hot():
    for num_classes in (2, 5):
        entropy = metrics.predictive_entropy(np.full((2, 3, num_classes), 1.0 / num_classes))
        assert entropy.shape == (2, 3)
        np.testing.assert_allclose(entropy, math.log(num_classes))
    np.testing.assert_allclose(metrics.predictive_entropy(np.eye(3)), 0.0, atol=0)
    half = metrics.predictive_entropy(jnp.array([0.5, 0.5, 0.0]))
    assert half == pytest.approx(math.log(2.0))


def test_auroc_separated_identical_and_ties():
    assert metrics.auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert metrics.auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert metrics.auroc([1.0, 1.0, 1.0], [1.0, 1.0]) == 0.5
    # Pairs (pos, neg): (1,2)=0 (1,0)=1 (2,2)=½ (2,0)=1 (3,2)=1 (3,0)=1 -> 4.5 / 6.
    assert metrics.auroc([1.0, 2.0, 3.0], [2.0, 0.0]) == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    positive, negative = rng.integers(0, 5, size=13), rng.integers(0, 5, size=9)
    pairwise = np.mean((positive[:, None] > negative) + 0.5 * (positive[:, None] == negative))
    assert metrics.auroc(positive, negative) == pytest.approx(pairwise, abs=1e-12)


def test_out_of_episode_auroc_treats_out_of_episode_as_positive():
    entropy_in, entropy_out = np.array([[0.1, 0.2]]), np.array([[1.0], [1.1]])
    assert metrics.out_of_episode_auroc(entropy_in, entropy_out) == 1.0
    assert metrics.out_of_episode_auroc(entropy_out, entropy_in) == 0.0


# ---------------------------------------------------------------------------------------------
# Report, figures, errors.

def test_classification_report_is_json_and_consistent():
    probs, labels = _two_bin_example()
    report = metrics.classification_report(probs, labels, num_bins=4)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    assert report["accuracy"]["mean"] == pytest.approx(0.5)
    assert report["accuracy"]["ci95"] is None  # one task: no interval
    assert report["nll"] == pytest.approx(metrics.nll(probs, labels))
    assert report["brier"] == pytest.approx(metrics.brier(probs, labels))
    calib = metrics.calibration(probs, labels, num_bins=4)
    # ECE = (2·|.5 − .425| + |0 − .7| + |1 − .9|) / 4; MCE = .7.
    assert report["ece"] == pytest.approx(0.2375) == calib["ece"]
    assert report["mce"] == pytest.approx(0.7)
    assert report["calibration"]["bin_count"] == [0, 2, 1, 1]  # conf .4 .45 | .7 | .9
    assert report["calibration"]["bin_accuracy"][0] is None  # empty bin
    two_tasks = metrics.classification_report(np.concatenate([probs, probs[:, ::-1]]),
                                              np.concatenate([labels, labels[:, ::-1]]))
    assert isinstance(two_tasks["accuracy"]["ci95"], float)
    from_jax = metrics.classification_report(jnp.asarray(probs), jnp.asarray(labels), num_bins=4)
    json.dumps(from_jax, allow_nan=False)
    assert from_jax["ece"] == pytest.approx(report["ece"], abs=1e-6)


def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 25, 5)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 5, size=(4, 25))
    report = metrics.classification_report(probs, labels)
    for i, calib in enumerate([metrics.calibration(probs, labels), report["calibration"]]):
        path = tmp_path / f"reliability{i}.png"
        plotting.plot_reliability_diagram(str(path), calib, "reliability")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    entropy_in = metrics.predictive_entropy(probs)
    entropies = {"ABML": (entropy_in, entropy_in + 0.3), "MAML": (entropy_in * 0.5, entropy_in)}
    path = tmp_path / "entropy.png"
    plotting.plot_entropy_cdf(str(path), entropies, "entropy CDF")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_invalid_inputs_raise():
    probs, labels = _two_bin_example()
    for num_bins in (0, -1):
        with pytest.raises(ValueError, match="num_bins"):
            metrics.calibration(probs, labels, num_bins=num_bins)
    with pytest.raises(ValueError, match="num_bins"):
        metrics.classification_report(probs, labels, num_bins=0)
    bad_labels = np.zeros((1, 3), int)
    for fn in (metrics.accuracy_per_task, metrics.nll, metrics.brier, metrics.calibration,
               metrics.classification_report):
        with pytest.raises(ValueError, match=r"\(1, 4, 3\).*\(1, 3\)"):
            fn(probs, bad_labels)
    with pytest.raises(ValueError, match="logits"):
        metrics.nll(np.log(probs), labels)
    with pytest.raises(ValueError, match="labels"):
        metrics.brier(probs, labels + 3)
    with pytest.raises(ValueError):
        metrics.auroc([], [1.0])
