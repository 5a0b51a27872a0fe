"""Evaluation metrics over test tasks (MATH.md §5)."""
from typing import Dict

import numpy as np


def mean_ci95(values) -> Dict[str, float]:
    """Mean over tasks and the half-width 1.96·sd/√N of its 95% interval."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else np.nan
    return {"mean": float(values.mean()), "ci95": float(half_width)}
