"""ε ~ N(0, I) for the reparameterised weights φ = μ + σ ⊙ ε, computed once per draw on CPU.

``jax.random.normal`` turns random bits into normals with an erf⁻¹ polynomial: elementwise
arithmetic that XLA:CPU's fusion pass copies into every fusion that reads ε rather than storing
ε once. A second-order ABML step reads each draw's weight noise in hundreds of fusions (the
forward pass at φ, ∂/∂log σ = ∂/∂φ ⊙ σ ⊙ ε, and their derivatives), each of which recomputed the
polynomial for the weights it reads: 21% of the ABML Conv4 step and 27% of the wheel bandit's
ABML meta-step on 2 CPU cores (BENCHMARKS.md, "Issue 20, seventh pass").
``jax.lax.optimization_barrier`` does not stop this: XLA:CPU removes barriers before it fuses. A
while loop does: its result is a buffer. So on CPU ε is drawn in the body of a loop that runs
once, with a trip count XLA cannot fold (it depends on the key), and the values are exactly
``jax.random.normal``'s (tested). Other platforms draw ε directly: on a GPU a while loop's
condition is read by the host.

``METABAYES_NOISE`` (an environment variable, read when a function is traced) overrides the
platform's choice: "fused" draws ε directly on CPU too (``benchmarks.step_time``'s variant row
of the old form), "stored" draws it in the loop on every platform (``benchmarks.flops`` counts
every variant's flops in that form, where ε is counted once per draw).
"""
import os

import jax
import jax.numpy as jnp

NOISE_VARIABLE = "METABAYES_NOISE"
NOISE_FORMS = ("fused", "stored")


def standard_normal(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``, stored once on CPU (module docstring)."""
    form = os.environ.get(NOISE_VARIABLE) or ("stored" if jax.default_backend() == "cpu"
                                              else "fused")
    if form not in NOISE_FORMS:
        raise ValueError(f"the environment variable `{NOISE_VARIABLE}` must be one of "
                         f"{NOISE_FORMS} or unset, got {form!r}")
    if form == "fused":
        return jax.random.normal(key, shape, dtype)
    return _normal_in_loop(key, shape, dtype)


def _normal_in_loop(key: jax.Array, shape, dtype) -> jax.Array:
    """The normal drawn in a while loop of one trip: x ≠ x + 1 for every uint32 x (it wraps),
    but XLA does not fold it, so the loop and its stored result stay."""
    words = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) \
        else key
    first = words.reshape(-1)[0]
    trips = (first != first + 1).astype(jnp.int32)
    _, noise = jax.lax.while_loop(lambda carry: carry[0] < trips,
                                  lambda carry: (carry[0] + 1, jax.random.normal(key, shape, dtype)),
                                  (jnp.zeros((), jnp.int32), jnp.zeros(shape, dtype)))
    return noise
