"""Figures: few-shot regression tasks, reliability diagrams, entropy CDFs (MATH.md §5), bandit regret."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metabayes.evaluation.metrics import out_of_episode_auroc  # noqa: E402


def plot_regression_tasks(path: str, grid, true_values, support, mean, std, title: str,
                          reference=None, reference_label: str = "exact Bayes") -> None:
    """One panel per task: support points, the true function, predictive mean ± 2 sd, and
    optionally a ``reference`` (mean, sd) band ± 2 sd as dashed lines, ``reference_label``.

    grid [G]; true_values, mean, std and each of reference [T, G]; support (inputs [T, K, 1],
    targets [T, K, 1]).
    """
    grid = np.asarray(grid)
    count = len(true_values)
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3.0), sharey=True, squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.fill_between(grid, mean[i] - 2 * std[i], mean[i] + 2 * std[i], color="tab:blue",
                        alpha=0.25, label="mean ± 2 sd")
        ax.plot(grid, true_values[i], color="black", lw=1.2, label="true function")
        ax.plot(grid, mean[i], color="tab:blue", lw=1.5, label="predictive mean")
        if reference is not None:
            ref_mean, ref_std = np.asarray(reference[0][i]), np.asarray(reference[1][i])
            ax.plot(grid, ref_mean - 2 * ref_std, color="tab:orange", ls="--", lw=1.0,
                    label=f"{reference_label} ± 2 sd")
            ax.plot(grid, ref_mean + 2 * ref_std, color="tab:orange", ls="--", lw=1.0)
        ax.scatter(np.asarray(support[0][i]).ravel(), np.asarray(support[1][i]).ravel(),
                   color="tab:red", zorder=3, s=18, label="support")
        ax.set_xlabel("x")
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability_diagram(path: str, calibration_dict, title: str) -> None:
    """Accuracy per confidence bin against the diagonal, gaps shaded, ECE/MCE in the legend; PNG.

    calibration_dict: ``metrics.calibration(...)`` or ``classification_report(...)["calibration"]``
    (bin_edges [B+1]; bin_accuracy, bin_confidence, bin_count [B]; empty bins NaN or None).
    """
    edges = np.asarray(calibration_dict["bin_edges"], dtype=np.float64)
    accuracy = np.asarray(calibration_dict["bin_accuracy"], dtype=np.float64)
    confidence = np.asarray(calibration_dict["bin_confidence"], dtype=np.float64)
    count = np.asarray(calibration_dict["bin_count"], dtype=np.float64)
    if not (edges.size == accuracy.size + 1 == confidence.size + 1 == count.size + 1):
        raise ValueError(f"calibration_dict bins disagree: {edges.size} edges, {accuracy.size} "
                         f"accuracies, {confidence.size} confidences, {count.size} counts")
    left, width = edges[:-1], np.diff(edges)
    nonempty = count > 0
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(4.6, 5.6), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1.2, label="perfect calibration")
    ax.bar(left[nonempty], accuracy[nonempty], width=width[nonempty], align="edge",
           color="tab:blue", edgecolor="black", lw=0.8, label="accuracy")
    gap_low = np.minimum(accuracy, confidence)[nonempty]
    gap_height = np.abs(confidence - accuracy)[nonempty]
    ax.bar(left[nonempty], gap_height, bottom=gap_low, width=width[nonempty], align="edge",
           color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//", lw=0.8,
           label="gap to mean confidence")
    ax.plot([], [], " ", label=f"ECE = {float(calibration_dict['ece']):.4f}")
    ax.plot([], [], " ", label=f"MCE = {float(calibration_dict['mce']):.4f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax_count.bar(left, count, width=width, align="edge", color="tab:gray", edgecolor="black",
                 lw=0.6)
    ax_count.set_xlabel("confidence (max predictive probability)")
    ax_count.set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_entropy_cdf(path: str, entropies, title: str) -> None:
    """Empirical CDF of predictive entropy: in-episode solid, out-of-episode dashed, a colour per method.

    entropies: {method name: (entropy_in [...], entropy_out [...])}; the legend gives each
    method's out-of-episode AUROC. A curve further right means higher entropy. Writes a PNG.
    """
    if not entropies:
        raise ValueError("entropies is empty: give {method: (entropy_in, entropy_out)}")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for i, (name, (entropy_in, entropy_out)) in enumerate(entropies.items()):
        entropy_in = np.asarray(entropy_in, dtype=np.float64).reshape(-1)
        entropy_out = np.asarray(entropy_out, dtype=np.float64).reshape(-1)
        colour = colours[i % len(colours)]
        score = out_of_episode_auroc(entropy_in, entropy_out)
        ax.ecdf(entropy_in, color=colour, ls="-", lw=1.6, label=f"{name} in-episode")
        ax.ecdf(entropy_out, color=colour, ls="--", lw=1.6,
                label=f"{name} out-of-episode (AUROC {score:.3f})")
    ax.set_xlabel("predictive entropy (nats)")
    ax.set_ylabel("empirical CDF")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_regret(path: str, deltas, trials: int, steps, curves) -> None:
    """One panel per δ: mean cumulative regret vs steps for every agent, log-log axes.
    ``curves``: {agent: {str(δ): regret at each of ``steps``}}, as results.json keeps them."""
    fig, axes = plt.subplots(1, len(deltas), figsize=(3.4 * len(deltas), 3.2), squeeze=False)
    for delta, ax in zip(deltas, axes[0]):
        for name, per_delta in curves.items():
            ax.plot(steps, per_delta[str(delta)], label=name, lw=1.4)
        ax.set(xscale="log", yscale="log", title=f"δ = {delta}", xlabel="step")
    axes[0][0].set_ylabel("cumulative regret")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Wheel bandit: mean cumulative regret over {trials} trial(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_posterior_scales(path: str, rows, title: str) -> None:
    """σ_θ (solid) and the adapted σ_λ (dashed) per kernel against the meta-training step, from
    ``rows``: dicts with "step" and ``posterior_scales``' keys (the paper's Figure 5)."""
    rows = sorted(rows, key=lambda row: row["step"])
    steps = [row["step"] for row in rows]
    names = sorted(k[len("sigma_theta/"):] for k in rows[0] if k.startswith("sigma_theta/")
                   and k.endswith("kernel"))
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for index, name in enumerate(names):
        color = plt.cm.viridis(index / max(len(names) - 1, 1))
        ax.plot(steps, [row[f"sigma_theta/{name}"] for row in rows], color=color, marker="o",
                ms=3, label=f"{name.split('/')[0]} σ_θ")
        ax.plot(steps, [row[f"sigma_lambda/{name}"] for row in rows], color=color, ls="--",
                marker="x", ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("mean σ (dashed: adapted σ_λ)")
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
