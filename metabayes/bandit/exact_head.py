"""The arm-reward head of an adapted q(φ; λ) set to its exact optimum (issue 19).

``ArmRewardMLP``'s outputs are linear in its head v = (kernel [H, 5], bias [5]): arm a predicts
f_a(x) = h(x)ᵀ v_a + b_a on the last hidden layer h. With the Gaussian likelihood N(y; f, s²) and
the hidden layers held at their means, the local objective of the inner loop

    ℓ(λ, θ) = −E_q(φ;λ)[log p(S | φ)] + β KL(q(φ; λ) || p(φ | θ))

is, in the head's factor q(v) = Π N(m, σ²), a Bayesian linear regression per arm with the prior
N(μ_θ, σ_θ²) tempered by β. Its minimiser over (m, σ) is

    P_a = Σ_r w_ra z_r z_rᵀ / (β s²) + diag(σ_θ⁻²),    z = [h(x), 1],
    m_a = P_a⁻¹ (Σ_r w_ra y_r z_r / (β s²) + σ_θ⁻² μ_θ),     σ_a⁻² = diag(P_a),

(w_ra: the weight of slot r on arm a, the square of its scaled one-hot; ``metabayes.bandit.
history``): the exact posterior mean, and the mean-field variance, which is what the Fisher
rule (``metabayes.fisher_variance``) moves σ_λ towards for these weights. ``ExactHead`` replaces
the head's factor of λ by it after the K inner steps; the hidden layers keep their λ. Using the
mean network's features h(x; μ_λ) is the approximation: the exact coordinate step would average
over the hidden layers' q.

An agent's history is on-policy: arm a is pulled where it looked best, so the regression fits
f_a where a was pulled and extrapolates it where a was not, e.g. a quadrant's arm across the
quadrant's axis into its neighbour's. With ``anchor_share`` = κ > 0 the head is anchored there
to the K inner steps' head v_K: every arm gets κ · (pulls so far) pseudo-pulls at the history's
contexts, with targets its K steps' prediction z_rᵀ v_K,a, i.e.

    G = κ Σ_r w_r z_r z_rᵀ / (β s²),   w_r = Σ_a w_ra,
    P_a += G,   m_a = P_a⁻¹ (... + G v_K,a),

a Gaussian prior on v_a centred at v_K,a whose covariance follows the contexts' own features
(a g-prior). Where arm a was pulled for more than a share κ of the contexts, its data decide;
where less, v_K's function stays. κ = 0 is the exact optimum above; κ → ∞ gives back v_K
(tested). v_K has seen the same history (K short steps from θ), so the anchor counts it a
second time, weakly.

With ``task_prior_share`` = κ_T > 0 the head gets a prior in function space from the
meta-training tasks instead (``task_networks``: the mean networks q(φ; λ(S_j)) of M episodes
S_j, adapted from θ as in meta-training). At each history context x_r the tasks' predictions
of arm a have mean m_ra and variance v_ra across j; every slot adds κ_T w_r pseudo-pulls of
every arm, with targets m_ra and the variance of a new task's reward there, v_ra + s²:

    P_a += κ_T Σ_r w_r z_r z_rᵀ / (v_ra + s²),
    m_a = P_a⁻¹ (... + κ_T Σ_r w_r m_ra z_r / (v_ra + s²))

(untempered: a prior, as p(φ | θ) is). Where the tasks agree (v ≪ s²: an arm's reward away
from the contexts where δ decides it), each pull also counts as κ_T pulls of the tasks'
prediction, meant to hold an arm's regression down where the agent never pulls it; where they
disagree (v ≫ s²: where δ moves the disc) it barely counts, and the history decides. Measured
in docs/wheel_bandit.md: it helps at 20,000 pulls, not at 80,000 (off by default).
"""
import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from metabayes.bandit.wheel import CONTEXT_DIM
from metabayes.posterior import MeanFieldGaussian, PyTree

HEAD = "head"   # ``ArmRewardMLP``'s name of its output layer


def _stacked(kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """A head's kernel [H, A] and bias [A] as one array per arm [A, H + 1]."""
    return jnp.concatenate([kernel.T, bias[:, None]], axis=1)


def _split(stacked: jax.Array) -> dict:
    """``_stacked``'s inverse: [A, H + 1] -> {"kernel": [H, A], "bias": [A]}."""
    return {"kernel": stacked[:, :-1].T, "bias": stacked[:, -1]}


@dataclasses.dataclass(frozen=True)
class ExactHead:
    """λ ↦ λ with its head's factor at the minimiser of ℓ(λ, θ) given the mean network's
    features (module docstring). ``noise_std``: s of the Gaussian likelihood; ``kl_weight``: β
    (> 0); ``anchor_share``: κ (>= 0), the pseudo-pulls per pull that anchor each arm to the
    K inner steps' head where it was seldom pulled (0: none); ``task_prior_share``: κ_T (>= 0),
    the weight of the meta-training tasks' prior in function space (0: none; > 0 needs
    ``task_networks`` at the call)."""

    noise_std: float
    kl_weight: float
    anchor_share: float = 0.0
    task_prior_share: float = 0.0

    def __post_init__(self):
        if not self.kl_weight > 0:
            raise ValueError(f"ExactHead needs `kl_weight` > 0 (the prior's weight), got "
                             f"{self.kl_weight!r}")
        for name in ("anchor_share", "task_prior_share"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ExactHead needs `{name}` >= 0, got {getattr(self, name)!r}")

    def __call__(self, model, prior: MeanFieldGaussian, local: MeanFieldGaussian,
                 support, task_networks: Optional[PyTree] = None) -> MeanFieldGaussian:
        """``support``: (inputs [R, 7] with scaled one-hots, targets [R, 1]) as in
        ``metabayes.bandit.history``; ``prior`` p(φ | θ); ``local`` λ after the inner steps;
        ``task_networks``: ``task_networks``'s mean networks [M, ...], for κ_T > 0."""
        if self.task_prior_share > 0 and task_networks is None:
            raise ValueError("ExactHead with `task_prior_share` > 0 needs `task_networks`")
        inputs, targets = support
        contexts, roots = inputs[:, :CONTEXT_DIM], inputs[:, CONTEXT_DIM:]   # √w_ra [R, A]
        features = model.apply({"params": local.mean}, contexts, method="features")
        z = jnp.concatenate([features, jnp.ones_like(features[:, :1])], axis=1)   # [R, H + 1]
        scale = 1.0 / (self.kl_weight * self.noise_std ** 2)
        # Slot r stands for w_ra pulls of arm a, and with the anchor for κ w_r pseudo-pulls of
        # every arm whose targets are the K steps' predictions z_rᵀ v_K,a; with the tasks'
        # prior for κ_T w_r β s² / (v_ra + s²) more, whose targets are the tasks' mean m_ra.
        pulls = jnp.square(roots)                                          # w_ra [R, A]
        slot_pulls = jnp.sum(pulls, axis=1, keepdims=True)                 # w_r [R, 1]
        pseudo_pulls = self.anchor_share * slot_pulls                      # κ w_r [R, 1]
        weights = pulls + pseudo_pulls                                     # [R, A]
        weighted_targets = roots * targets + pseudo_pulls * (z @ _stacked(**local.mean[HEAD]).T)
        if self.task_prior_share > 0:
            predictions = jax.vmap(lambda network: model.apply(
                {"params": network}, contexts, method="arm_rewards"))(task_networks)  # [M, R, A]
            task_pulls = (self.task_prior_share * slot_pulls * self.kl_weight * self.noise_std ** 2
                          / (jnp.var(predictions, axis=0) + self.noise_std ** 2))        # [R, A]
            weights = weights + task_pulls
            weighted_targets = weighted_targets + task_pulls * jnp.mean(predictions, axis=0)
        gram = scale * jnp.einsum("ra,rd,re->ade", weights, z, z)        # [A, H + 1, H + 1]
        moment = scale * jnp.einsum("ra,rd->ad", weighted_targets, z)     # [A, H + 1]
        prior_mean = _stacked(**prior.mean[HEAD])
        prior_precision = jnp.exp(-2 * _stacked(**prior.log_sigma[HEAD]))
        diagonal = jnp.diagonal(gram, axis1=1, axis2=2) + prior_precision        # [A, H + 1]
        precision = gram + jax.vmap(jnp.diag)(prior_precision)
        # Solved with a unit diagonal (Jacobi scaling), whatever the features' scales.
        root = jax.lax.rsqrt(diagonal)
        scaled = jax.scipy.linalg.cho_solve(
            jax.scipy.linalg.cho_factor(precision * root[:, :, None] * root[:, None, :]),
            ((moment + prior_precision * prior_mean) * root)[..., None])[..., 0]
        mean, log_sigma = scaled * root, -0.5 * jnp.log(diagonal)
        return local.replace(mean={**local.mean, HEAD: _split(mean)},
                             log_sigma={**local.log_sigma, HEAD: _split(log_sigma)})


def task_networks(learner, params, supports, key: jax.Array) -> PyTree:
    """The mean networks of q(φ; λ(S_j)) for M support sets ``supports`` (inputs [M, R, 7],
    targets [M, R, 1]; e.g. ``sample_episodes``'), each adapted from θ = E_q(θ)[θ] by
    ``learner`` (meta-training's): ``ExactHead``'s prior in function space, [M, ...]."""
    theta = params.q_theta.mean
    keys = jax.random.split(key, supports[1].shape[0])
    return jax.vmap(lambda support, k: learner.adapt(params, theta, support, k).mean)(supports,
                                                                                      keys)
