"""JAX transformations change nothing (MATH.md §6.4), in float64:
vmap over tasks == a Python loop; the lax.scan inner loop == an unrolled loop; jit == no jit.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metabayes as mb
from metabayes import task_chunks
from helpers import (assert_trees_close, fast_jit, loss_and_grad, perturb, regression_batch,
                     task_slice, theta_log_hyperprior_np, tiny_batch, tiny_learner)

pytestmark = pytest.mark.usefixtures("x64")
OUTER_ADAM = optax.adam(1e-2)


def test_meta_batch_loss_vmap_equals_python_loop():
    """MetaLearner.loss (vmap over tasks) == (1/M) Σ_i task_loss(ψ, task_i, key_i) with
    key_i = split(key, M)[i], plus −log p(ψ)/N written with scipy (§2 scaling, §6.4)."""
    learner = tiny_learner("point")
    batch = tiny_batch(1)
    params = perturb(learner.init_params(jax.random.PRNGKey(3), batch.support[0][0]), 0.1, 4)
    key = jax.random.PRNGKey(5)
    (loss, metrics), _ = loss_and_grad(learner, params, batch, key)
    task_loss = fast_jit(learner.task_loss)
    num_tasks = batch.support[0].shape[0]
    per_task = [task_loss(params, task_slice(batch, i), k)
                for i, k in enumerate(jax.random.split(key, num_tasks))]
    global_term = -theta_log_hyperprior_np(params.q_theta.mean, learner.hyperprior)
    expected = np.mean([float(l) for l, _ in per_task]) + global_term / learner.num_tasks
    np.testing.assert_allclose(float(loss), expected, rtol=1e-12)
    np.testing.assert_allclose(float(metrics["global_kl"]), global_term, rtol=1e-12)
    for name in ("outer_nll", "local_kl"):
        np.testing.assert_allclose(float(metrics[name]), np.mean([float(m[name]) for _, m in per_task]),
                                   rtol=1e-12)
    assert float(metrics["local_kl"]) > 0


@pytest.mark.parametrize("chunking", [
    dict(task_chunk=2), dict(task_chunk="auto", memory_budget=1),
    dict(task_chunk=2, chunk_policy=jax.checkpoint_policies.dots_saveable)])
def test_chunked_meta_batch_equals_vmap(chunking):
    """task_chunk=2 on M = 3 tasks (lax.map over chunks, one of them short), "auto" under a
    budget that fits one task, and chunks that save their matmul outputs, give the same loss
    and meta-gradient as vmapping all three."""
    batch = regression_batch(2, num_tasks=3, num_support=3, num_query=3)
    learner = tiny_learner("point", task_chunk=None)
    params = perturb(learner.init_params(jax.random.PRNGKey(3), batch.support[0][0]), 0.1, 4)
    key = jax.random.PRNGKey(6)
    (loss, metrics), grads = loss_and_grad(learner, params, batch, key)
    chunked = tiny_learner("point", **chunking)
    (chunked_loss, chunked_metrics), chunked_grads = loss_and_grad(chunked, params, batch, key)
    np.testing.assert_allclose(float(chunked_loss), float(loss), rtol=1e-12)
    assert_trees_close(chunked_metrics, metrics)
    assert_trees_close(chunked_grads, grads)


def test_sequential_outer_draws_equal_vmapped():
    """outer_draws="sequential" (lax.map over the S outer samples, the CPU default) gives the
    same loss and meta-gradient as vmapping them, here with S = 3."""
    batch = tiny_batch(2)
    learners = [tiny_learner("point", outer_samples=3, outer_draws=draws)
                for draws in ("vmap", "sequential")]
    params = perturb(learners[0].init_params(jax.random.PRNGKey(3), batch.support[0][0]), 0.1, 4)
    key = jax.random.PRNGKey(8)
    (loss, metrics), grads = loss_and_grad(learners[0], params, batch, key)
    (seq_loss, seq_metrics), seq_grads = loss_and_grad(learners[1], params, batch, key)
    np.testing.assert_allclose(float(seq_loss), float(loss), rtol=1e-12)
    assert_trees_close(seq_metrics, metrics)
    assert_trees_close(seq_grads, grads)
    assert learners[0].sequential_outer_draws is False and learners[1].sequential_outer_draws


def test_auto_task_chunk_fits_the_memory_budget():
    """"auto" takes the largest k whose saved activations fit the budget: a task that keeps an
    [n, 64] float64 activation for its backward pass saves at least n·64·8 bytes, and k of them
    fit where k + 1 do not; a chunk as large as M, or None, vmaps all tasks (None)."""
    weights = jnp.ones((16, 64))
    per_task = lambda w: jnp.sum(jnp.tanh(jnp.ones((100, 16)) @ w))
    saved = task_chunks.residual_bytes(per_task, weights)
    assert saved >= 100 * 64 * 8
    for budget in (1, saved, 5 * saved + 1):
        k = task_chunks.choose_task_chunk("auto", budget, per_task, weights, num_tasks=32)
        assert k == max(1, budget // saved) and k * saved <= max(budget, saved) < (k + 1) * saved
    assert task_chunks.choose_task_chunk("auto", 64 * saved, per_task, weights, 32) is None
    assert task_chunks.choose_task_chunk(None, 1, per_task, weights, 32) is None
    assert task_chunks.choose_task_chunk(4, 1, per_task, weights, 32) == 4


def unrolled_adapt(apply_fn, prior, support, key, optimizer, num_steps, **objective):
    """The inner loop of §3 as a Python loop: one key per step from split(key, K), gradients by
    jax.grad of the LocalObjective, an optax update; λ⁰ = θ. (Each step is jitted: one compile.)"""
    @fast_jit
    def step(local, state, step_key):
        grads = jax.grad(mb.LocalObjective(apply_fn, prior, support, **objective))(local,
                                                                                  step_key)
        updates, state = optimizer.update(grads, state, local)
        return optax.apply_updates(local, updates), state

    local, state = prior, optimizer.init(prior)
    for step_key in jax.random.split(key, num_steps):
        local, state = step(local, state, step_key)
    return local


def test_adapt_scan_equals_unrolled_loop():
    """metabayes.adapt (lax.scan, fresh key per step) == the unrolled loop, with Adam (whose
    state must be threaded through the scan), at every ``unroll``; SGD is written out by hand
    below."""
    model = mb.MLP(hidden=())
    task = task_slice(tiny_batch(2), 0)
    params = model.init(jax.random.PRNGKey(0), task.support[0])["params"]
    prior = mb.MeanFieldGaussian.from_params(params, -1.0)
    inner = optax.adam(0.05)
    objective = dict(num_samples=3, kl_weight=0.7, likelihood=mb.Gaussian(0.5))
    key = jax.random.PRNGKey(7)
    unrolled = unrolled_adapt(model.apply, prior, task.support, key, inner, 4, **objective)
    for unroll in (1, 3, True):   # the scan's own unrolling (MetaLearner.inner_unroll) too
        scanned = fast_jit(lambda p, k: mb.adapt(
            mb.LocalObjective(model.apply, p, task.support, **objective), k, inner_optimizer=inner,
            num_steps=4, unroll=unroll))(prior, key)
        assert_trees_close(scanned, unrolled, rtol=1e-12, atol=1e-14)
    assert not np.allclose(np.asarray(scanned.mean["Dense_0"]["kernel"]),
                           np.asarray(prior.mean["Dense_0"]["kernel"]))


def test_adapt_preconditioned_sgd_by_hand():
    """scale_by_prior_variance and Meta-SGD step scales, as plain SGD written out by hand:
    μ ← μ − α s_μ σ_θ² ∂ℓ/∂μ,  log σ ← log σ − α s_σ ∂ℓ/∂log σ (§3 Stability, Meta-SGD)."""
    model = mb.MLP(hidden=())
    task = task_slice(tiny_batch(3), 1)
    params = model.init(jax.random.PRNGKey(1), task.support[0])["params"]
    prior = perturb(mb.MeanFieldGaussian.from_params(params, -1.5), 0.2, 2)
    step_scale = jax.tree_util.tree_map(lambda p: jnp.exp(0.3 * p),
                                        perturb(prior, 1.0, 3))
    lr, key = 0.1, jax.random.PRNGKey(8)
    objective = dict(num_samples=2, kl_weight=1.0, likelihood=mb.Gaussian(0.5))
    got = fast_jit(lambda p, s, k: mb.adapt(
        mb.LocalObjective(model.apply, p, task.support, **objective), k, num_steps=3,
        inner_optimizer=optax.chain(mb.scale_by_prior_variance(p), optax.sgd(lr),
                                    mb.scale_by_meta_sgd(s))))(prior, step_scale, key)
    variance = jax.tree_util.tree_map(lambda l: jnp.exp(2 * l), prior.log_sigma)

    @fast_jit
    def step(local, step_key):
        g = jax.grad(mb.LocalObjective(model.apply, prior, task.support, **objective))(local,
                                                                                      step_key)
        return mb.MeanFieldGaussian(
            jax.tree_util.tree_map(lambda m, gm, v, s: m - lr * s * v * gm,
                                   local.mean, g.mean, variance, step_scale.mean),
            jax.tree_util.tree_map(lambda l, gl, s: l - lr * s * gl,
                                   local.log_sigma, g.log_sigma, step_scale.log_sigma))

    local = prior
    for step_key in jax.random.split(key, 3):
        local = step(local, step_key)
    assert_trees_close(got, local, rtol=1e-12, atol=1e-14)


def test_train_step_jit_equals_no_jit():
    """learner.train_step (jit) == metabayes.train_step run eagerly: loss, metrics and the
    updated ψ and optimiser state, in float64 (§6.4); a linear model keeps the eager run short."""
    learner = tiny_learner("point", model=mb.MLP(hidden=()), outer_optimizer=OUTER_ADAM,
                           inner_steps=1, inner_samples=1, outer_samples=1)
    batch = tiny_batch(4)
    state = learner.init(jax.random.PRNGKey(0), batch.support[0][0])
    key = jax.random.PRNGKey(9)
    jit_state, jit_metrics = learner.train_step(state, batch, key)
    eager_state, eager_metrics = mb.train_step(learner, state, batch, key)
    assert bool(jit_metrics["finite"]) and bool(eager_metrics["finite"])
    learner.check_finite(jit_metrics, step=0)   # silent on a finite step
    assert_trees_close(jit_state, eager_state, rtol=1e-12, atol=1e-14)
    assert_trees_close(jit_metrics, eager_metrics, rtol=1e-12, atol=1e-14)
    assert int(jit_state.step) == 1
    assert not np.allclose(np.asarray(jit_state.params.q_theta.mean.mean["Dense_0"]["kernel"]),
                           np.asarray(state.params.q_theta.mean.mean["Dense_0"]["kernel"]))


def test_predict_tasks_equals_loop_over_tasks_and_samples():
    """predict_tasks (vmap over tasks, lax.map over the T samples; and with task_chunk=2, a
    short last chunk) == a Python loop over tasks and samples of the §5 predictive; a point-mass
    posterior (MAML) gives the same predictive from one network run as from T."""
    batch = regression_batch(7, num_tasks=3, num_support=3, num_query=4)
    learner = tiny_learner("point")
    params = perturb(learner.init_params(jax.random.PRNGKey(3), batch.support[0][0]), 0.1, 4)
    keys = jax.random.split(jax.random.PRNGKey(8), 3)
    num_samples = 5
    expected = []
    for i, key in enumerate(keys):
        task = task_slice(batch, i)
        adapt_key, sample_key = jax.random.split(key)
        local_posterior = fast_jit(learner.adapt)(params, params.q_theta.mean, task.support,
                                                  adapt_key)
        outputs = [mb.sample_outputs(learner.model.apply, local_posterior, task.query[0], k)
                   for k in jax.random.split(sample_key, num_samples)]
        expected.append(learner.likelihood.predictive(jnp.stack(outputs)))
    expected = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *expected)
    for chunk in (None, 2):
        got = tiny_learner("point", task_chunk=chunk).predict_tasks(
            params, batch.support, batch.query[0], keys, num_samples)
        assert_trees_close(got, expected, rtol=1e-12, atol=1e-14)
    assert float(jnp.min(expected.std)) > learner.likelihood.noise_std  # the samples differ

    maml = mb.maml(learner.model, likelihood=learner.likelihood, inner_lr=0.05, inner_steps=2)
    maml_params = maml.init_params(jax.random.PRNGKey(3), batch.support[0][0])
    one, many = (maml.predict_tasks(maml_params, batch.support, batch.query[0], keys, t)
                 for t in (1, num_samples))
    assert many.component_means.shape == (3, 1, 4, 1)   # [M, draws, N_q, 1]: one network run
    assert_trees_close(many, one, rtol=1e-12, atol=1e-14)


def test_predict_tasks_memory_does_not_grow_with_samples():
    """The compiled predictive's temporary memory for T = 16 samples is within 1.5× of T = 2's
    (samples run one after another), on a small Conv4; vmapping the samples makes it ~8×."""
    learner = mb.abml(mb.Conv4(num_classes=3, filters=4), inner_steps=1)
    support = (jnp.zeros((2, 3, 28, 28, 1)), jnp.zeros((2, 3), jnp.int32))
    query_inputs = jnp.zeros((2, 30, 28, 28, 1))
    params = learner.init_params(jax.random.PRNGKey(0), support[0][0])
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    temp = {t: learner.predict_tasks.lower(params, support, query_inputs, keys, t).compile()
            .memory_analysis().temp_size_in_bytes for t in (2, 16)}
    assert temp[16] < 1.5 * temp[2], temp
