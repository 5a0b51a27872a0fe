"""Figures: few-shot regression tasks with their posterior predictive."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_regression_tasks(path: str, grid, true_values, support, mean, std, title: str) -> None:
    """One panel per task: support points, the true function, predictive mean ± 2 sd.

    grid [G]; true_values, mean, std [T, G]; support (inputs [T, K, 1], targets [T, K, 1]).
    """
    grid = np.asarray(grid)
    count = len(true_values)
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3.0), sharey=True, squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.fill_between(grid, mean[i] - 2 * std[i], mean[i] + 2 * std[i], color="tab:blue",
                        alpha=0.25, label="mean ± 2 sd")
        ax.plot(grid, true_values[i], color="black", lw=1.2, label="true function")
        ax.plot(grid, mean[i], color="tab:blue", lw=1.5, label="predictive mean")
        ax.scatter(np.asarray(support[0][i]).ravel(), np.asarray(support[1][i]).ravel(),
                   color="tab:red", zorder=3, s=18, label="support")
        ax.set_xlabel("x")
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
