"""``ExactHead`` (issue 19): the head of an adapted q(φ; λ) at the closed-form optimum of the
local objective, against Bayesian linear regression on the pulls written out one by one, and
against the library's own objective."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metabayes as mb
from metabayes.bandit.episodes import ArmRewardMLP, sample_episodes
from metabayes.bandit.exact_head import ExactHead, task_networks
from metabayes.bandit.history import weighted_support
from metabayes.bandit.wheel import INPUT_DIM, NUM_ARMS, sample_contexts
from metabayes.likelihoods import Gaussian
from experiments import wheel_bandit
from helpers import perturb, random_posterior
from test_wheel_bandit_experiment import tiny_config
from test_meta_gradient import check_directions

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


def head_column(head: dict, arm: int) -> np.ndarray:
    """Arm ``arm``'s weights [H + 1] (kernel column, then bias) of a head {kernel, bias}."""
    return np.append(head["kernel"][:, arm], head["bias"][arm])


def networks(seeds) -> dict:
    """MODEL's params for each seed, stacked: [len(seeds), ...]."""
    inits = [MODEL.init(jax.random.PRNGKey(seed), jnp.zeros((1, INPUT_DIM)))["params"]
             for seed in seeds]
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *inits)


@pytest.mark.parametrize("anchor_share,task_prior_share", [(0.0, 0.0), (0.4, 0.0), (0.0, 0.7),
                                                           (0.4, 0.7)])
def test_head_is_the_tempered_bayesian_linear_posterior(x64, anchor_share, task_prior_share):
    """Each arm's head is N(m, diag(P)⁻¹) of the regression on the mean network's features,
    every pull written out w times, noise variance β s² and prior N(μ_θ, σ_θ²); the hidden
    layers keep λ. With an anchor κ, every slot also stands for κ w pseudo-pulls of every
    arm whose targets are the K steps' head's predictions. With the tasks' prior κ_T, every
    slot adds κ_T w observations of every arm's reward with the tasks' mean prediction m and
    variance v + s² (v across the task networks), untempered."""
    prior, local, support, (contexts, arms, weights, rewards) = problem()
    tasks = networks([7, 8, 9])
    refit = ExactHead(NOISE_STD, KL_WEIGHT, anchor_share, task_prior_share)(
        MODEL, prior, local, support, tasks)
    task_predictions = np.stack([np.asarray(MODEL.apply(
        {"params": jax.tree_util.tree_map(lambda leaf: leaf[j], tasks)}, jnp.asarray(contexts),
        method="arm_rewards")) for j in range(3)])                         # [3, R, A]
    features = np.asarray(MODEL.apply({"params": local.mean}, jnp.asarray(contexts),
                                      method="features"))
    design = np.concatenate([features, np.ones((len(contexts), 1))], axis=1)
    for arm in range(NUM_ARMS):
        rows = np.repeat(np.flatnonzero(arms == arm), weights[arms == arm].astype(int))
        z, y = design[rows], rewards[rows]
        pseudo_weights = anchor_share * weights                     # every slot, every arm
        pseudo_targets = design @ head_column(local.mean["head"], arm)
        prior_mean = head_column(prior.mean["head"], arm)
        prior_var = np.exp(2 * head_column(prior.log_sigma["head"], arm))
        noise_var = KL_WEIGHT * NOISE_STD ** 2
        task_precision = task_prior_share * weights / (
            task_predictions[:, :, arm].var(axis=0) + NOISE_STD ** 2)       # [R]
        task_targets = task_predictions[:, :, arm].mean(axis=0)
        precision = (z.T @ z + design.T @ (pseudo_weights[:, None] * design)) / noise_var \
            + design.T @ (task_precision[:, None] * design) + np.diag(1 / prior_var)
        mean = np.linalg.solve(precision, (z.T @ y + design.T @ (pseudo_weights * pseudo_targets))
                               / noise_var + design.T @ (task_precision * task_targets)
                               + prior_mean / prior_var)
        np.testing.assert_allclose(refit.mean["head"]["kernel"][:, arm], mean[:-1], rtol=1e-9)
        np.testing.assert_allclose(refit.mean["head"]["bias"][arm], mean[-1], rtol=1e-9)
        np.testing.assert_allclose(np.exp(-2 * refit.log_sigma["head"]["kernel"][:, arm]),
                                   np.diag(precision)[:-1], rtol=1e-9)
        np.testing.assert_allclose(np.exp(-2 * refit.log_sigma["head"]["bias"][arm]),
                                   precision[-1, -1], rtol=1e-9)
    for layer in ("layers_0", "layers_1"):
        np.testing.assert_array_equal(refit.mean[layer]["kernel"], local.mean[layer]["kernel"])
        np.testing.assert_array_equal(refit.log_sigma[layer]["bias"], local.log_sigma[layer]["bias"])


def test_a_large_anchor_gives_back_the_inner_steps_head(x64):
    """κ → ∞: the pseudo-pulls outweigh the data and the prior, and the head is v_K."""
    prior, local, support, _ = problem(seed=5)
    unanchored = ExactHead(NOISE_STD, KL_WEIGHT)(MODEL, prior, local, support)
    anchored = ExactHead(NOISE_STD, KL_WEIGHT, 1e9)(MODEL, prior, local, support)
    for name in ("kernel", "bias"):
        assert np.max(np.abs(unanchored.mean["head"][name] - local.mean["head"][name])) > 0.1
        np.testing.assert_allclose(anchored.mean["head"][name], local.mean["head"][name],
                                   atol=1e-6)


def test_tasks_that_agree_with_the_inner_steps_give_back_their_head(x64):
    """κ_T → ∞ with task networks that all equal λ's mean network (v = 0): the tasks' prior
    outweighs the data and p(φ | θ), and the head is v_K; without the networks it is refused."""
    prior, local, support, _ = problem(seed=5)   # as above: every feature is live on it
    agreeing = jax.tree_util.tree_map(lambda leaf: jnp.stack([leaf, leaf]), local.mean)
    head = ExactHead(NOISE_STD, KL_WEIGHT, task_prior_share=1e9)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(head(MODEL, prior, local, support, agreeing).mean["head"][name],
                                   local.mean["head"][name], atol=1e-6)
    with pytest.raises(ValueError, match="task_networks"):
        head(MODEL, prior, local, support)


def test_task_networks_are_each_episodes_adapted_mean_network(x64):
    """``task_networks`` (vmapped over the M episodes) == the learner's ``adapt`` on each
    episode in turn, with the j-th of M split keys."""
    config = tiny_config(algorithms=("abml",))
    learner = wheel_bandit.bandit_learner(config, "abml")
    supports = sample_episodes(jax.random.PRNGKey(2), num_problems=3, per_arm=config.per_arm,
                               num_query=config.query, max_pulls=500, pool=config.pool)[0].support
    params = perturb(learner.init_params(jax.random.PRNGKey(4), supports[0][0]), 0.1, 5)
    key = jax.random.PRNGKey(8)
    stacked = task_networks(learner, params, supports, key)
    for j, task_key in enumerate(jax.random.split(key, 3)):
        one = learner.adapt(params, params.q_theta.mean,
                            jax.tree_util.tree_map(lambda leaf: leaf[j], supports), task_key).mean
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a[j], b, rtol=1e-9),
                               stacked, one)


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


@pytest.mark.parametrize("head,eval_head,head_kl_weight,anchor,refits", [
    (None, "exact", None, 0.0, True), ("exact", None, None, 0.0, True),
    ("exact", "inner_steps", None, 0.0, False), (None, "exact", 1.0, 0.0, True),
    ("exact", None, 1.0, 0.0, True), (None, "exact", 1.0, 0.2, True)])
def test_abml_agent_refits_its_head_after_its_inner_steps(head, eval_head, head_kl_weight,
                                                          anchor, refits):
    """ABML's agent (not MAML's) plays with the head ``eval_head`` says, or (None) the one it
    was meta-trained with (``head``), and a re-adaptation is then the K inner steps followed by
    the refit with its learner's likelihood, solved at β = ``eval_head_kl_weight`` (None: the
    learner's β) and anchored by ``eval_head_anchor``."""
    config = tiny_config(head=head, eval_head=eval_head, eval_head_kl_weight=head_kl_weight,
                         eval_head_anchor=anchor, readapt_every=1)
    learners = {a: (wheel_bandit.play_learner(config, a, wheel_bandit.bandit_learner(config, a)),
                    None) for a in config.algorithms}
    agents = wheel_bandit.make_agents(config, learners)
    abml, maml = agents["ABML"][0], agents["MAML"][0]
    exact = ExactHead(config.noise_std, head_kl_weight or config.kl_weight, anchor)
    assert config.kl_weight != 1.0   # so that a β left at the learner's shows
    assert abml.learner.refit == (exact if refits else None) and maml.learner.refit is None
    params = abml.learner.init_params(jax.random.PRNGKey(0), jnp.zeros((8, INPUT_DIM)))
    updated, inner_steps, support = first_readaptation(abml, abml.init(params), params)
    theta = params.q_theta.mean
    expected = exact(abml.learner.model, theta, inner_steps, support) if refits else inner_steps
    assert_trees_close(updated.posterior, expected)


def first_readaptation(agent, state, params):
    """``agent``'s state after one pull that it re-adapts on (``readapt_every`` = 1), and its K
    inner steps alone on the same support set with the same key: (state, λ^K, support)."""
    context, arm, reward, key = jnp.array([0.3, -0.4]), jnp.array(4), jnp.array(50.0), \
        jax.random.PRNGKey(1)
    updated = agent.update(state, 1, context, arm, reward, key)
    memory = agent.memory.record(state.memory, context, arm, reward, jax.random.split(key)[0])
    support = agent.memory.support(memory, agent.memory.support_sizes()[0])
    inner_steps = dataclasses.replace(agent.learner, refit=None).adapt(
        params, params.q_theta.mean, support, jax.random.split(key)[1])
    return updated, inner_steps, support


def assert_trees_close(actual, expected):
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                           actual, expected)


def test_abml_agent_refits_with_its_task_networks():
    """With ``eval_head_task_prior`` > 0 ABML's agent holds ``task_prior_tasks`` adapted
    meta-training networks in its state, and a re-adaptation is the K inner steps followed by
    the exact head with them as its prior in function space (which moves the head)."""
    config = tiny_config(eval_head="exact", eval_head_task_prior=1e3, task_prior_tasks=3,
                         algorithms=("abml",), readapt_every=1)
    learner = wheel_bandit.bandit_learner(config, "abml")
    params = learner.init_params(jax.random.PRNGKey(0), jnp.zeros((8, INPUT_DIM)))
    play = wheel_bandit.play_learner(config, "abml", learner)
    agent, init = wheel_bandit.make_agents(config, {"abml": (play, params)})["ABML"]
    state = init(jax.random.PRNGKey(2))
    expected_networks = wheel_bandit.play_task_networks(config, "abml", play, params)
    assert jax.tree_util.tree_leaves(state.task_networks)[0].shape[0] == 3
    jax.tree_util.tree_map(np.testing.assert_array_equal, state.task_networks, expected_networks)
    updated, inner_steps, support = first_readaptation(agent, state, params)
    theta = params.q_theta.mean
    expected = play.refit(play.model, theta, inner_steps, support, expected_networks)
    assert_trees_close(updated.posterior, expected)
    without = dataclasses.replace(play.refit, task_prior_share=0.0)(play.model, theta,
                                                                     inner_steps, support)
    assert np.max(np.abs(without.mean["head"]["kernel"] - expected.mean["head"]["kernel"])) > 1e-3


def test_short_run_plays_with_the_task_prior(tmp_path):
    """A run with the tasks' prior on the exact head plays to finite regrets."""
    config = tiny_config(algorithms=("abml",), eval_head_task_prior=0.1, task_prior_tasks=4)
    config.neural_linear.enabled = False
    results = wheel_bandit.train_and_evaluate(config, str(tmp_path), progress=False)
    assert all(np.isfinite(results["agents"]["ABML"][str(d)]["normalised"]["mean"])
               for d in config.deltas)


def test_meta_gradient_through_the_exact_head_matches_finite_differences(x64):
    """``head="exact"`` meta-trains through the head's solve: ∇_ψ of the meta-loss (K = 1 inner
    step, then the refit, on episodes as meta-training draws them) == central differences,
    along random directions and along each leaf of ψ. The refit replaces the inner steps' head,
    so the head's Meta-SGD step scales get no gradient."""
    config = tiny_config(head="exact", activation="tanh")
    learner = wheel_bandit.bandit_learner(config, "abml")
    assert learner.refit == ExactHead(config.noise_std, config.kl_weight)
    batch = sample_episodes(jax.random.PRNGKey(3), num_problems=2, per_arm=config.per_arm,
                            num_query=config.query, max_pulls=500, pool=config.pool)[0]
    params = perturb(learner.init_params(jax.random.PRNGKey(4), batch.support[0][0]), 0.1, 5)
    check_directions(learner, params, batch, jax.random.PRNGKey(6),
                     unused=lambda path: "step_scale" in path and "'head'" in path, atol=1e-6)


def test_short_run_meta_trained_with_the_exact_head(tmp_path):
    """``head="exact"`` meta-trains ABML through the refit and plays it; the run records the
    head, and a resume with another head is refused (it is a meta-training setting)."""
    config = tiny_config(head="exact", algorithms=("abml",))
    config.neural_linear.enabled = False
    results = wheel_bandit.train_and_evaluate(config, str(tmp_path), progress=False)
    assert results["config"]["head"] == "exact"
    assert all(np.isfinite(results["agents"]["ABML"][str(d)]["normalised"]["mean"])
               for d in config.deltas)
    with pytest.raises(ValueError, match="head"):
        wheel_bandit.train_and_evaluate(tiny_config(algorithms=("abml",)), str(tmp_path),
                                        progress=False)


def test_exact_head_needs_a_positive_kl_weight():
    with pytest.raises(ValueError, match="kl_weight"):
        ExactHead(1.0, 0.0)
    with pytest.raises(ValueError, match="anchor_share"):
        ExactHead(1.0, 1.0, -0.1)
    with pytest.raises(ValueError, match="task_prior_share"):
        ExactHead(1.0, 1.0, 0.0, -0.1)
