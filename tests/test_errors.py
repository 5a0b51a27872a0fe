"""Bad inputs and divergence fail loudly, with messages that name the cause (MATH.md §3 Stability)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metabayes as mb
from metabayes.tasks import check_task
from helpers import assert_trees_close, tiny_batch, tiny_learner

pytestmark = pytest.mark.usefixtures("x64")


def linear_learner(**overrides):
    options = dict(model=mb.MLP(hidden=()), inner_steps=1, inner_samples=1, outer_samples=1)
    options.update(overrides)
    return tiny_learner("point", **options)


def with_shape(batch, which, index, shape_fn):
    """The batch with one of its four arrays reshaped by shape_fn."""
    parts = [list(batch.support), list(batch.query)]
    parts[which][index] = shape_fn(parts[which][index])
    return mb.Task(tuple(parts[0]), tuple(parts[1]))


BAD_SHAPES = [
    ("support targets with an extra example", 0, 1, lambda a: jnp.concatenate([a, a[:, :1]], 1),
     r"support inputs .* and targets .* disagree"),
    ("query targets with an extra example", 1, 1, lambda a: jnp.concatenate([a, a[:, :1]], 1),
     r"query inputs .* and targets .* disagree"),
    ("query with fewer tasks", 1, 0, lambda a: a[:1], r"query inputs .* and targets .* disagree"),
    ("query inputs of another example shape", 1, 0, lambda a: jnp.concatenate([a, a], -1),
     r"differ in the shape of one example"),
    ("query targets of another target shape", 1, 1, lambda a: jnp.concatenate([a, a], -1),
     r"differ in the shape of one target"),
    ("unbatched support", 0, 0, lambda a: a[0, :, 0],
     r"support inputs and targets must be shaped \[M, N, ...\]"),
]


@pytest.mark.parametrize("name,which,index,shape_fn,message", BAD_SHAPES,
                         ids=[case[0] for case in BAD_SHAPES])
def test_shape_mismatch_raises_value_error(name, which, index, shape_fn, message):
    """MetaLearner.loss rejects inconsistent support/query shapes before tracing, naming them."""
    learner = linear_learner()
    batch = tiny_batch()
    params = learner.init_params(jax.random.PRNGKey(0), batch.support[0][0])
    with pytest.raises(ValueError, match=message):
        learner.loss(params, with_shape(batch, which, index, shape_fn), jax.random.PRNGKey(1))


def test_support_and_query_task_counts_must_agree():
    """Both sets consistent on their own but holding different numbers of tasks M."""
    batch = tiny_batch()
    short_query = mb.Task(batch.support, tuple(a[:1] for a in batch.query))
    with pytest.raises(ValueError, match="different numbers of tasks M: 2 vs 1"):
        check_task(short_query, batched=True)
    check_task(batch, batched=True)  # the consistent batch passes


@pytest.mark.parametrize("steps", [-1, 2.0])
def test_inner_steps_must_be_a_nonnegative_integer(steps):
    with pytest.raises(ValueError, match="inner_steps"):
        mb.abml(mb.MLP(hidden=()), inner_steps=steps)
    with pytest.raises(ValueError, match="inner_steps"):
        mb.adapt(mb.LocalObjective(mb.MLP(hidden=()).apply,
                                   mb.MeanFieldGaussian({"w": jnp.zeros(1)}),
                                   (jnp.zeros((2, 1)), jnp.zeros((2, 1)))),
                 jax.random.PRNGKey(0), inner_optimizer=optax.sgd(0.1), num_steps=steps)


@pytest.mark.parametrize("option,value,message", [
    ("estimator", "reinforce", "`estimator` must be one of"),
    ("theta_family", "laplace", "`theta_family` must be one of"),
    ("outer_data", "support", "`outer_data` must be one of"),
    ("inner_samples", 0, "`inner_samples` must be an integer >= 1"),
    ("outer_samples", 1.5, "`outer_samples` must be an integer >= 1"),
    ("num_tasks", 0, "`num_tasks` must be an integer >= 1"),
    ("inner_lr", 0.0, "`inner_lr` must be a positive finite number"),
    ("inner_lr", float("inf"), "`inner_lr` must be a positive finite number"),
    ("kl_weight", -0.1, "`kl_weight` must be a finite number >= 0"),
    ("hyperprior", "paper", "`hyperprior` must be a metabayes.Hyperprior or None"),
])
def test_bad_options_raise_value_error(option, value, message):
    with pytest.raises(ValueError, match=message):
        mb.abml(mb.MLP(hidden=()), **{option: value})


@pytest.mark.parametrize("options,message", [
    (dict(local_variance="laplace"), "`local_variance` must be one of"),
    (dict(local_variance="fisher", precision_damping=0.0),
     "`precision_damping` must be a finite number in"),
    (dict(local_variance="fisher", kl_weight=0.0),
     "`local_variance`='fisher' needs `kl_weight` > 0"),
])
def test_bad_local_variance_options_raise_value_error(options, message):
    with pytest.raises(ValueError, match=message):
        mb.abml(mb.MLP(hidden=()), **options)


def test_deterministic_family_needs_no_kl_and_no_hyperprior():
    with pytest.raises(ValueError, match="`kl_weight`=0 and `hyperprior`=None"):
        mb.abml(mb.MLP(hidden=()), theta_family="deterministic")
    with pytest.raises(ValueError, match="`kl_weight`=0 and `hyperprior`=None"):
        mb.abml(mb.MLP(hidden=()), theta_family="deterministic", kl_weight=0.0)


@pytest.mark.parametrize("field,value", [("s0", 0.0), ("a0", -1.0), ("b0", float("nan")),
                                          ("s0", float("inf")), ("a0", "1")])
def test_bad_hyperprior_values_raise_value_error(field, value):
    with pytest.raises(ValueError, match=f"hyperprior `{field}` must be a positive finite number"):
        mb.Hyperprior(**{field: value})


def test_bad_estimator_in_elbo_terms_and_activation():
    q = mb.MeanFieldGaussian.from_params({"w": jnp.zeros(1)}, -1.0)
    with pytest.raises(ValueError, match="`estimator` must be one of"):
        mb.expected_log_likelihood(lambda v, x, **kw: x, q, (jnp.zeros((2, 1)), jnp.zeros((2, 1))),
                                   jax.random.PRNGKey(0), estimator="reinforce")
    with pytest.raises(ValueError, match="`activation` must be one of"):
        mb.MLP(hidden=(2,), activation="swish").init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))


def test_divergent_inner_loop_is_detected_and_reported():
    """inner_lr·β/σ_θ² ≫ 2 makes inner SGD diverge: train_step reports finite=False and leaves
    the state unchanged, and check_finite raises NonFiniteLossError naming inner_lr, kl_weight
    and init_log_sigma (§3 Stability)."""
    learner = linear_learner(inner_lr=1e4, inner_steps=20, init_log_sigma=-3.0)
    batch = tiny_batch()
    state = learner.init(jax.random.PRNGKey(0), batch.support[0][0])
    new_state, metrics = learner.train_step(state, batch, jax.random.PRNGKey(1))
    assert not bool(metrics["finite"])
    assert not np.isfinite(float(metrics["loss"]))
    assert_trees_close(new_state, state, rtol=0, atol=0)
    with pytest.raises(mb.NonFiniteLossError) as info:
        learner.check_finite(metrics, step=0)
    for flag in ("`inner_lr`=10000.0", "`kl_weight`=0.8", "`init_log_sigma`=-3.0",
                 "`scale_by_prior_variance`"):
        assert flag in str(info.value)
    assert "outer_lr" not in str(info.value)   # at step 0 ψ is its initialisation


def test_a_step_made_non_finite_by_the_outer_updates_names_outer_lr():
    """A huge outer step size: step 0 is finite, and the step after it is not. The message then
    names `outer_lr` beside the inner loop's options, since ψ has moved."""
    learner = linear_learner(outer_optimizer=optax.sgd(1e200))
    batch = tiny_batch()
    state = learner.init(jax.random.PRNGKey(0), batch.support[0][0])
    state, metrics = learner.train_step(state, batch, jax.random.PRNGKey(0))
    learner.check_finite(metrics, step=0)
    _, metrics = learner.train_step(state, batch, jax.random.PRNGKey(1))
    with pytest.raises(mb.NonFiniteLossError, match="after 1 outer update of psi, the outer "
                       "step size `outer_lr` is too large"):
        learner.check_finite(metrics, step=1)

