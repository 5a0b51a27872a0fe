"""Few-shot sine regression (Finn et al., 2017): y = A sin(x − φ), A ∈ [0.1, 5], φ ∈ [0, π]."""
import math
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp

from metabayes.tasks import Task


class SinusoidTasks(NamedTuple):
    """The task distribution; ``support`` / ``query`` are points per task."""

    amplitude_range: Tuple[float, float] = (0.1, 5.0)
    phase_range: Tuple[float, float] = (0.0, math.pi)
    input_range: Tuple[float, float] = (-5.0, 5.0)
    support: int = 10
    query: int = 10

    def sample(self, key: jax.Array, meta_batch: int) -> Tuple[Task, jax.Array, jax.Array]:
        """M tasks: Task with inputs/targets [M, K, 1], and amplitudes [M], phases [M]."""
        amp_key, phase_key, x_key = jax.random.split(key, 3)
        amplitudes = jax.random.uniform(amp_key, (meta_batch,), minval=self.amplitude_range[0],
                                        maxval=self.amplitude_range[1])
        phases = jax.random.uniform(phase_key, (meta_batch,), minval=self.phase_range[0],
                                    maxval=self.phase_range[1])
        inputs = jax.random.uniform(x_key, (meta_batch, self.support + self.query, 1),
                                    minval=self.input_range[0], maxval=self.input_range[1])
        targets = sine(inputs, amplitudes[:, None, None], phases[:, None, None])
        split = lambda a: (a[:, :self.support], a[:, self.support:])
        (s_in, q_in), (s_out, q_out) = split(inputs), split(targets)
        return Task((s_in, s_out), (q_in, q_out)), amplitudes, phases

    def exact_predictive(self, support: Tuple[jax.Array, jax.Array], inputs: jax.Array,
                         noise_std: float, grid: int = 256) -> Tuple[jax.Array, jax.Array]:
        """Bayes-optimal predictive mean and sd of y at ``inputs`` [G] given one task's
        ``support`` ([K, 1], [K, 1]): the posterior over (A, φ) under this prior and Gaussian
        noise ``noise_std``, on a ``grid`` × ``grid`` midpoint grid of the prior's box."""
        midpoints = lambda low, high: low + (high - low) * (jnp.arange(grid) + 0.5) / grid
        amplitude, phase = jnp.meshgrid(midpoints(*self.amplitude_range),
                                        midpoints(*self.phase_range), indexing="ij")
        amplitude, phase = amplitude.reshape(-1, 1), phase.reshape(-1, 1)
        x, y = support[0][:, 0], support[1][:, 0]
        log_weights = -0.5 * jnp.sum((y - sine(x, amplitude, phase)) ** 2, axis=1) / noise_std ** 2
        weights = jax.nn.softmax(log_weights)[:, None]
        curves = sine(inputs, amplitude, phase)                          # [grid², G]
        mean = jnp.sum(weights * curves, axis=0)
        variance = jnp.sum(weights * (curves - mean) ** 2, axis=0) + noise_std ** 2
        return mean, jnp.sqrt(variance)


def sine(x: jax.Array, amplitude: jax.Array, phase: jax.Array) -> jax.Array:
    return amplitude * jnp.sin(x - phase)
