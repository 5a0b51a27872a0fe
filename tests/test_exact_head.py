"""``ExactHead`` (issue 19): the head of an adapted q(φ; λ) at the closed-form optimum of the
local objective, against Bayesian linear regression on the pulls written out one by one, and
against the library's own objective."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metabayes as mb
from metabayes.bandit.episodes import ArmRewardMLP
from metabayes.bandit.exact_head import ExactHead
from metabayes.bandit.history import weighted_support
from metabayes.bandit.wheel import INPUT_DIM, NUM_ARMS, sample_contexts
from metabayes.likelihoods import Gaussian
from experiments import wheel_bandit
from helpers import random_posterior
from test_bandits import tiny_config

NOISE_STD, KL_WEIGHT = 0.7, 0.3
MODEL = ArmRewardMLP(hidden=(6, 4))


def problem(seed=0, slots=40):
    """θ, λ and a support set of ``slots`` weighted slots (integer weights, some empty), with
    its slots as arrays."""
    rng = np.random.default_rng(seed)
    params = MODEL.init(jax.random.PRNGKey(seed), jnp.zeros((1, INPUT_DIM)))["params"]
    prior = random_posterior(seed, params, log_sigma_mean=-0.5)
    local = random_posterior(seed + 1, params, log_sigma_mean=-1.0)
    contexts = sample_contexts(jax.random.PRNGKey(seed + 2), slots)
    arms = rng.integers(0, NUM_ARMS, slots)
    weights = rng.integers(0, 4, slots).astype(float)          # 0: an empty slot
    rewards = rng.normal(size=slots) * 5 + 2
    support = weighted_support(contexts, jnp.asarray(arms), jnp.asarray(rewards),
                               jnp.asarray(weights))
    return prior, local, support, (np.asarray(contexts), arms, weights, rewards)


def test_head_is_the_tempered_bayesian_linear_posterior(x64):
    """Each arm's head is N(m, diag(P)⁻¹) of the regression on the mean network's features,
    every pull written out w times, noise variance β s² and prior N(μ_θ, σ_θ²); the hidden
    layers keep λ."""
    prior, local, support, (contexts, arms, weights, rewards) = problem()
    refit = ExactHead(NOISE_STD, KL_WEIGHT)(MODEL, prior, local, support)
    features = np.asarray(MODEL.apply({"params": local.mean}, jnp.asarray(contexts),
                                      method="features"))
    design = np.concatenate([features, np.ones((len(contexts), 1))], axis=1)
    for arm in range(NUM_ARMS):
        rows = np.repeat(np.flatnonzero(arms == arm), weights[arms == arm].astype(int))
        z, y = design[rows], rewards[rows]
        prior_mean = np.append(prior.mean["head"]["kernel"][:, arm], prior.mean["head"]["bias"][arm])
        prior_var = np.exp(2 * np.append(prior.log_sigma["head"]["kernel"][:, arm],
                                         prior.log_sigma["head"]["bias"][arm]))
        noise_var = KL_WEIGHT * NOISE_STD ** 2
        precision = z.T @ z / noise_var + np.diag(1 / prior_var)
        mean = np.linalg.solve(precision, z.T @ y / noise_var + prior_mean / prior_var)
        np.testing.assert_allclose(refit.mean["head"]["kernel"][:, arm], mean[:-1], rtol=1e-9)
        np.testing.assert_allclose(refit.mean["head"]["bias"][arm], mean[-1], rtol=1e-9)
        np.testing.assert_allclose(np.exp(-2 * refit.log_sigma["head"]["kernel"][:, arm]),
                                   np.diag(precision)[:-1], rtol=1e-9)
        np.testing.assert_allclose(np.exp(-2 * refit.log_sigma["head"]["bias"][arm]),
                                   precision[-1, -1], rtol=1e-9)
    for layer in ("layers_0", "layers_1"):
        np.testing.assert_array_equal(refit.mean[layer]["kernel"], local.mean[layer]["kernel"])
        np.testing.assert_array_equal(refit.log_sigma[layer]["bias"], local.log_sigma[layer]["bias"])


def test_head_mean_zeroes_the_local_objectives_gradient(x64):
    """With the hidden layers near their means (σ → 0), ∇ of ``mb.LocalObjective`` in the head's
    mean is zero at the refit: the closed form is the inner loop's own optimum."""
    prior, local, support, _ = problem(seed=3)
    objective = mb.LocalObjective(MODEL.apply, prior, support, Gaussian(NOISE_STD), KL_WEIGHT)
    point_like = lambda q: q.replace(log_sigma=jax.tree_util.tree_map(
        lambda s: jnp.full_like(s, -40.0), q.log_sigma))
    head_gradient = lambda q: jax.grad(lambda m: objective(point_like(q.replace(mean=m)),
                                                           jax.random.PRNGKey(0)))(q.mean)["head"]
    before = head_gradient(local)
    after = head_gradient(ExactHead(NOISE_STD, KL_WEIGHT)(MODEL, prior, local, support))
    for name in ("kernel", "bias"):
        assert np.max(np.abs(before[name])) > 1.0
        np.testing.assert_allclose(after[name], 0.0, atol=1e-9 * np.max(np.abs(before[name])))


def test_abml_agent_with_exact_head_refits_after_its_inner_steps():
    """``eval_head="exact"`` gives ABML's agent (not MAML's) the head of its learner's
    likelihood and β, and a re-adaptation is the K inner steps followed by the refit."""
    config = tiny_config(eval_head="exact", readapt_every=1)
    learners = {a: (wheel_bandit.bandit_learner(config, a), None) for a in config.algorithms}
    agents = wheel_bandit.make_agents(config, learners)
    abml, maml = agents["ABML"][0], agents["MAML"][0]
    assert abml.head == ExactHead(config.noise_std, config.kl_weight) and maml.head is None
    learner = learners["abml"][0]
    params = learner.init_params(jax.random.PRNGKey(0), jnp.zeros((8, INPUT_DIM)))
    state = abml.init(params)
    context, arm, reward, key = jnp.array([0.3, -0.4]), jnp.array(4), jnp.array(50.0), \
        jax.random.PRNGKey(1)
    updated = abml.update(state, 1, context, arm, reward, key)
    memory = abml.memory.record(state.memory, context, arm, reward, jax.random.split(key)[0])
    support = abml.memory.support(memory, abml.memory.support_sizes()[0])
    theta = params.q_theta.mean
    expected = abml.head(learner.model, theta, learner.adapt(params, theta, support,
                                                             jax.random.split(key)[1]), support)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                           updated.posterior, expected)


def test_exact_head_needs_a_positive_kl_weight():
    with pytest.raises(ValueError, match="kl_weight"):
        ExactHead(1.0, 0.0)
