"""``ProfileSteps`` (issue 19): Adam steps on the hidden layers through the exact head. The
profile objective's gradient against the envelope theorem and finite differences, the steps
against the objective they descend, and the agent and experiment that use them."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metabayes.bandit.agents import HandOver, MetaAgent
from metabayes.bandit.exact_head import HEAD, ExactHead
from metabayes.bandit.history import first_size_at_least
from metabayes.bandit.profile_steps import ProfileSteps, local_map_objective
from metabayes.bandit.wheel import INPUT_DIM
from experiments import wheel_bandit
from test_exact_head import (KL_WEIGHT, MODEL, NOISE_STD, assert_trees_close,
                             first_readaptation, problem)
from test_wheel_bandit_experiment import tiny_config


def hidden_of(mean):
    return {name: layer for name, layer in mean.items() if name != HEAD}


def with_hidden(local, hidden):
    return local.replace(mean={**local.mean, **hidden})


def test_profile_gradient_is_the_partial_at_the_solved_head(x64):
    """Envelope theorem: the head solves min over the head of ℓ, so the gradient the steps take
    (``profile_gradient``: ∂ℓ/∂μ_h with the head held at its solve) == ∇ℓ* in the hidden
    layers through the solve; and both == central differences of ℓ* along a random direction.
    Fails if ``local_map_objective`` is not the objective ``ExactHead`` minimises (e.g. without
    β on the prior's term)."""
    prior, local, support, _ = problem(seed=4)
    steps = ProfileSteps(ExactHead(NOISE_STD, KL_WEIGHT), steps=1, learning_rate=1e-3)
    hidden = hidden_of(local.mean)
    profile = lambda h: steps.profile_objective(MODEL, prior, local, h, support)
    through = jax.grad(profile)(hidden)
    partial = steps.profile_gradient(MODEL, prior, local, hidden, support)
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree_util.tree_leaves(through))
    assert scale > 1e-2
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-9 * scale),
                           through, partial)
    direction = jax.tree_util.tree_map(
        lambda leaf: jax.random.normal(jax.random.PRNGKey(leaf.size), leaf.shape, leaf.dtype),
        hidden)
    shifted = lambda t: profile(jax.tree_util.tree_map(lambda h, d: h + t * d, hidden, direction))
    eps = 1e-5
    numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(through),
                                                   jax.tree_util.tree_leaves(direction)))
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-6)


def test_map_objective_is_the_weighted_regression_written_out(x64):
    """ℓ per pull against the pulls one by one: Σ w (y − f_arm(x))² / 2s² + β Σ (μ − μ_θ)² /
    2σ_θ², over Σ w."""
    prior, local, support, (contexts, arms, weights, rewards) = problem(seed=2)
    predictions = np.asarray(MODEL.apply({"params": local.mean}, jnp.asarray(contexts),
                                         method="arm_rewards"))[np.arange(len(arms)), arms]
    fit = np.sum(weights * (rewards - predictions) ** 2) / (2 * NOISE_STD ** 2)
    penalty = sum(np.sum((np.asarray(m) - np.asarray(m0)) ** 2 / np.exp(2 * np.asarray(s)))
                  for m, m0, s in zip(*map(jax.tree_util.tree_leaves,
                                           (local.mean, prior.mean, prior.log_sigma)))) / 2
    expected = (fit + KL_WEIGHT * penalty) / weights.sum()
    np.testing.assert_allclose(local_map_objective(MODEL, prior, local.mean, support, KL_WEIGHT,
                                                   NOISE_STD), expected, rtol=1e-12)


def test_steps_descend_the_profile_and_end_at_the_solved_head(x64):
    """B Adam steps lower ℓ*; λ's head is then the exact head on the moved hidden layers, its
    σ_λ of the hidden layers as it came in."""
    prior, local, support, _ = problem(seed=6)
    head = ExactHead(NOISE_STD, KL_WEIGHT)
    stepped = ProfileSteps(head, steps=50, learning_rate=1e-2)(MODEL, prior, local, support)
    objective = lambda q: local_map_objective(MODEL, prior, q.mean, support, KL_WEIGHT, NOISE_STD)
    assert objective(stepped) < 0.9 * objective(head(MODEL, prior, local, support))
    assert_trees_close(stepped, head(MODEL, prior, with_hidden(local, hidden_of(stepped.mean)),
                                     support))
    jax.tree_util.tree_map(np.testing.assert_array_equal, hidden_of(stepped.log_sigma),
                           hidden_of(local.log_sigma))


def test_abml_agent_keeps_training_its_network_through_the_head():
    """With ``eval_body_steps`` ABML's play learner refits by ``ProfileSteps`` around its exact
    head; a re-adaptation from the last λ (``warm_start``, K = 0) is those steps on the memory,
    so the network keeps moving between re-adaptations instead of restarting from θ."""
    config = tiny_config(eval_head="exact", eval_body_steps=3, eval_body_lr=1e-2,
                         warm_start=True, eval_inner_steps=0, readapt_every=1,
                         algorithms=("abml",))
    learner = wheel_bandit.bandit_learner(config, "abml")
    play = wheel_bandit.play_learner(config, "abml", learner)
    assert play.refit == ProfileSteps(ExactHead(config.noise_std, config.eval_head_kl_weight),
                                      3, 1e-2)
    params = learner.init_params(jax.random.PRNGKey(0), jnp.zeros((8, INPUT_DIM)))
    agent, init = wheel_bandit.make_agents(config, {"abml": (play, params)})["ABML"]
    updated, inner_steps, support = first_readaptation(agent, init(jax.random.PRNGKey(1)), params)
    assert_trees_close(updated.posterior,
                       play.refit(play.model, params.q_theta.mean, inner_steps, support))
    context, arm, reward, key = jnp.array([-0.6, 0.2]), jnp.array(2), jnp.array(1.0), \
        jax.random.PRNGKey(3)
    again = agent.update(updated, 2, context, arm, reward, key)
    record_key, adapt_key = jax.random.split(key)
    memory = agent.memory.record(updated.memory, context, arm, reward, record_key)
    sizes = agent.memory.support_sizes()
    support = agent.memory.support(memory, sizes[int(first_size_at_least(sizes, 2))])
    from_last = dataclasses.replace(play, refit=None).adapt(
        params, params.q_theta.mean, support, adapt_key, updated.posterior)
    assert_trees_close(again.posterior,
                       play.refit(play.model, params.q_theta.mean, from_last, support))


def test_hand_over_re_adapts_as_its_first_agent_up_to_its_pull_then_by_body_steps():
    """With ``eval_body_from`` = 2 ABML's agent is a ``HandOver``: after pulls 1 and 2 it
    re-adapts as without body steps (K inner steps from θ, exact head), after pull 3 by the body
    steps alone from the last λ (K = 0, warm); the two differ at every pull, so a swapped or
    shifted switch fails. MAML, without body steps, stays a plain agent."""
    config = tiny_config(eval_head="exact", eval_inner_steps=2, eval_body_steps=3,
                         eval_body_lr=1e-2, eval_body_from=2, readapt_every=1)
    learners = {}
    for algorithm in ("abml", "maml"):
        learner = wheel_bandit.bandit_learner(config, algorithm)
        learners[algorithm] = (wheel_bandit.play_learner(config, algorithm, learner),
                               learner.init_params(jax.random.PRNGKey(0),
                                                   jnp.zeros((8, INPUT_DIM))))
    agents = wheel_bandit.make_agents(config, learners)
    assert isinstance(agents["MAML"][0], MetaAgent)
    agent, init = agents["ABML"]
    head = ExactHead(config.noise_std, config.eval_head_kl_weight)
    assert (agent.at, agent.first.learner.inner_steps, agent.first.learner.refit,
            agent.first.warm_start) == (2, 2, head, False)
    assert (agent.then.learner.inner_steps, agent.then.learner.refit, agent.then.warm_start) == (
        0, ProfileSteps(head, 3, 1e-2), True)
    state = init(jax.random.PRNGKey(1))
    contexts = jnp.array([[0.3, -0.4], [-0.6, 0.2], [0.1, 0.8]])
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    for step, (context, key) in enumerate(zip(contexts, keys), start=1):
        pull = (jnp.array(step), context, jnp.array(step % 5), jnp.array(float(step)), key)
        expected, other = ((agent.first, agent.then) if step <= 2 else
                           (agent.then, agent.first))
        want, unwanted = expected.update(state, *pull), other.update(state, *pull)
        state = jax.jit(agent.update)(state, *pull)
        assert_trees_close(state.posterior, want.posterior)
        gaps = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                      hidden_of(state.posterior.mean),
                                      hidden_of(unwanted.posterior.mean))
        assert max(jax.tree_util.tree_leaves(gaps)) > 1e-3


def test_body_steps_need_the_exact_head_and_name_their_flags(tmp_path):
    """Refused before any work: steps without ABML's exact head or with an anchored one (whose
    solve does not minimise ℓ, so the envelope theorem does not give the gradient), and bad
    values."""
    for overrides, message in [
            ({"eval_head": "inner_steps", "eval_body_steps": 2}, "eval_body_steps=2 needs"),
            ({"eval_body_steps": -1}, "^`eval_body_steps` must be"),
            ({"eval_body_lr": 0.0}, "^`eval_body_lr` must be"),
            ({"eval_body_from": 100}, "^--config.eval_body_from=100 hands over to body steps: "
                                      "it needs --config.eval_body_steps >= 1, got 0$"),
            ({"eval_body_from": -1}, "^`eval_body_from` must be")]:
        with pytest.raises(ValueError, match=message):
            wheel_bandit.train_and_evaluate(tiny_config(**overrides), str(tmp_path),
                                            progress=False)
        assert not os.listdir(tmp_path)
    for anchor in ({"eval_head_anchor": 0.1}, {"eval_head_task_prior": 0.1}):
        with pytest.raises(ValueError, match="eval_body_steps=2 needs the unanchored exact head"):
            wheel_bandit.train_and_evaluate(tiny_config(eval_head="exact", eval_body_steps=2,
                                                        **anchor), str(tmp_path), progress=False)
        assert not os.listdir(tmp_path)
    for anchored in (ExactHead(1.0, 1.0, anchor_share=0.1), ExactHead(1.0, 1.0, 0.0, 0.1)):
        with pytest.raises(ValueError, match="minimises ℓ"):
            ProfileSteps(anchored, 1, 1e-3)
    with pytest.raises(ValueError, match="steps"):
        ProfileSteps(ExactHead(1.0, 1.0), 0, 1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        ProfileSteps(ExactHead(1.0, 1.0), 1, 0.0)
    agent = MetaAgent(wheel_bandit.bandit_learner(tiny_config(), "abml"))
    with pytest.raises(ValueError, match="`at` >= 1"):
        HandOver(agent, agent, 0)
    with pytest.raises(ValueError, match="the same policy, memory and model"):
        HandOver(agent, dataclasses.replace(agent, policy="greedy"), 5)


@pytest.mark.parametrize("play", [{"warm_start": True}, {"eval_body_from": 6}])
def test_short_run_plays_with_body_steps(tmp_path, play):
    """A run whose ABML keeps training its network through the head (from the first pull, or
    handed over at pull 6) plays to finite regrets; MAML, whose head is the inner steps',
    plays as before."""
    config = tiny_config(eval_head="exact", eval_body_steps=2, **play)
    config.neural_linear.enabled = False
    results = wheel_bandit.train_and_evaluate(config, str(tmp_path), progress=False)
    assert all(np.isfinite(results["agents"][name][str(d)]["normalised"]["mean"])
               for name in ("ABML", "MAML") for d in config.deltas)
