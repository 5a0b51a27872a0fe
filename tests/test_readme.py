"""The README's library examples run as written: "Composing the ELBO yourself" and "Your own
inner-loop variant" (the second continues the first's namespace), and the variant does what it
says: σ_λ moves by its own rule, not by gradient steps."""
import pathlib
import re

import jax
import numpy as np

README = pathlib.Path(__file__).parent.parent / "README.md"


def python_block(heading: str) -> str:
    """The first ```python block after the line ``### heading``."""
    text = README.read_text()
    section = text[text.index(f"### {heading}\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_examples_run_and_the_variant_moves_sigma_by_its_own_rule():
    namespace = {}
    exec(python_block("Composing the ELBO yourself"), namespace)
    assert np.isfinite(float(namespace["loss"]))
    exec(python_block("Your own inner-loop variant"), namespace)
    metrics, learner, state, tasks = (namespace[k] for k in ("metrics", "learner", "state", "tasks"))
    assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss"]))
    # The rule's precision update: σ_λ⁻² = ½ σ_θ⁻² + ½ (g²/β + σ_θ⁻²) ≥ σ_θ⁻² after one step, and
    # strictly larger where the support's gradient is non-zero; a gradient step would also move it.
    theta = state.params.q_theta.mean
    support = jax.tree_util.tree_map(lambda a: a[0], tasks.support)
    local = learner.adapt(state.params, theta, support, jax.random.PRNGKey(5))
    ratio = np.concatenate([np.ravel(np.exp(l - t)) for l, t in zip(
        jax.tree_util.tree_leaves(local.log_sigma), jax.tree_util.tree_leaves(theta.log_sigma))])
    assert np.all(ratio <= 1 + 1e-6) and np.mean(ratio < 0.999) > 0.5
