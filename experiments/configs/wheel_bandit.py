"""Wheel-bandit config (Ravi & Beatson, ICLR 2019, §5.3 and Table 1): ``--config.KEY=VALUE``.

Meta-training: M = 64 wheel problems per meta-batch, δ ~ U(0, 1), an MLP context -> 5 expected
rewards with a Gaussian likelihood on the pulled arm. Each support set looks like an agent's at
play (``metabayes.bandit.episodes.sample_episodes``): a history of T pulls, T log-uniform in
[1, ``max_pulls``], mixing random arms (rate ε ~ U(0, 1)) and the optimal arm's greedy pulls,
held as the agent holds it, an ``ArmReservoir`` of ``per_arm`` pulls per arm weighted to stand
for all T; 50 query pulls of random arms.

Evaluation: for each δ in ``deltas``, ``trials`` online runs of ``n`` pulls, vmapped; ABML acts by
Thompson sampling, MAML greedily, both re-adapting from θ (or from the last λ with
``warm_start``; K = ``eval_inner_steps`` steps at ``eval_inner_lr``) on their reservoir of
``play_per_arm`` pulls per arm after pull t whenever
``readapt_now(t, readapt_every, readapt_growth)``. A re-adaptation after t pulls runs on the
first of ``smallest_support`` · 4^k (16, 64, 256, 1,024) or ``play_per_arm`` slots per arm
that holds t pulls (``MetaAgent``; the slots left out are empty, so the function is the same:
tested), not on the whole reservoir, filled or not. On the validation problems at n = 2,000
(10 trials) the regrets were equal to two decimals in all 10 cells, and play took ABML 1.07
against 2.97 s and MAML 0.49 against 1.72 s per 1,000 pulls of one run (``whole reservoir``
in ``benchmarks.wheel_bandit_choices``).

Play-time settings are chosen on validation problems (``benchmarks.wheel_bandit_choices``,
``experiments.wheel_bandit.validation_key``), never on Table 1's:
- ``play_per_arm`` = 2,048 reservoir slots per arm at play, against meta-training's 102. A
  reservoir is an unbiased estimate of the whole history's likelihood whatever its size; a
  larger one is a less noisy one. On the validation problems (n = 20,000, 3 trials,
  δ = 0.5 / 0.7 / 0.9 / 0.95 / 0.99; the 3,000-step models; K = 10), ABML gave
  1.90 / 2.46 / 5.34 / 7.34 / 23.18 with 102 slots, 1.28 / 1.80 / 3.85 / 6.23 / 22.47 with 512
  and 1.16 / 1.66 / 3.67 / 6.05 / 22.55 with 2,048; MAML 1.46 → 0.81 → 0.59 at δ = 0.5. It
  costs 7× the play time of 102 slots (ABML 0.98 against 0.13 s per 1,000 pulls of one run at
  n = 20,000): each re-adaptation takes K steps on all 5 · ``play_per_arm`` slots.
- ``eval_inner_steps`` = 5 at play, at the same step size: on the validation problems with
  2,048 slots per arm (n = 20,000, 3 trials, δ = 0.5 / 0.99), K = 5 / 10 / 20 gave ABML
  1.11 / 20.56, 1.16 / 20.97 and 1.17 / 20.81, MAML 0.58 / 20.23, 0.59 / 20.56 and
  0.57 / 20.70: no worse than 10 or 20, at half the play time of 10 (ABML 0.49 against 0.93 s
  per 1,000 pulls). That was measured on models of the default's 3,000 meta-training steps. The
  longer-trained models of Table 1 do better with more steps (mean over the five δ, a GPU ABML
  at 12,000 steps: 2.71 at K = 5, 1.81 at K = 80), so the table plays all three at K = 20: ABML
  (12,000 CPU steps, exact head) 1.56, against 1.67 at K = 5 and 1.72 for the GPU ABML it played
  until 2026-12-06 (16,000 steps, K = 80, the K steps' head). docs/wheel_bandit.md has each.
- ``meta_sgd`` per algorithm (a meta-training setting, chosen on the same validation
  problems): ABML learns a step scale per weight for its inner loop (part of ψ; Li et al.,
  2017); MAML keeps Finn et al.'s single step size. Meta-training logged a query
  MSE of ~72-75 at 3,000 steps, against ~85-100 with one step size. On the validation problems
  (n = 20,000, 3 trials, the five δ, Fisher rule at play): ABML 0.46 / 0.85 / 2.50 / 5.24 /
  20.30 against 0.65 / 0.96 / 3.11 / 5.53 / 22.21 with one step size (MAML 0.58 / 0.94 / 2.63 /
  5.10 / 21.80). MAML stays Finn et al.'s as the table's baseline, though with Meta-SGD it
  regrets less than ABML at δ = 0.5, 0.95 and 0.99 (0.39 / 1.13 / 2.69 / 4.35 / 15.60;
  docs/wheel_bandit.md, "MAML with ABML's Meta-SGD"). A run recorded before this was per
  algorithm is played with its one value for both.
- ``eval_local_variance`` = "fisher": at play, ABML's σ_λ⁻² moves towards F/β + σ_θ⁻², F the
  Fisher of the reservoir's weighted likelihood, i.e. of the whole history
  (``metabayes.fisher_variance``), so Thompson sampling's posterior narrows as pulls
  accumulate. Meta-training keeps the paper's rule (``local_variance="gradient"``), under which
  σ_λ takes the inner steps. With ``per_point_step`` those steps are the same for 1,000 pulls
  as for 80,000 (tested), so the agent kept sampling at about the prior's width however long
  its history. On the validation problems (n = 20,000, 3 trials, the five δ; the 3,000-step
  models): ABML 0.65 / 0.96 / 3.11 / 5.53 / 22.21 against 1.11 / 1.52 / 3.34 / 5.76 / 22.30
  with the gradient rule (MAML, a point mass: 0.58 / 0.94 / 2.63 / 5.10 / 21.80 either way),
  at 0.53 against 0.36 s of play per 1,000 pulls of one run (one more forward and backward
  pass per inner step, for F; ``benchmarks.wheel_bandit_choices``, ``gradient variance``).
- ``eval_head`` = "exact", ``eval_head_kl_weight`` = 1: at play, after the K inner steps, ABML's
  head is set to its exact posterior given the adapted mean network's features
  (``metabayes.bandit.exact_head``): per arm, the Bayesian linear regression of the
  reservoir's weighted rewards with the model's noise s and the prior p(φ | θ), i.e. the local
  objective's closed-form optimum at β = 1 rather than at meta-training's tempered 0.1. On
  the validation problems (n = 20,000, 3 trials, the five δ, K = 5; an ABML model meta-trained
  for 3,000 steps on 2026-12-06), with the mean over δ in brackets: the K steps' head
  (``eval_head="inner_steps"``, the default before) 0.47 / 0.90 / 2.56 / 4.17 / 13.30 (4.28);
  the exact head at β = 1 0.87 / 0.98 / 2.11 / 2.97 / 7.90 (2.97), at β = 0.1 / 0.3 / 3 / 10
  (3.79 / 3.27 / 3.08 / 3.39). At K = 20: 2.82 against 3.39. Lower at δ ≥ 0.9, higher at
  δ = 0.5 (0.87 against 0.47); at 12,000 steps level at δ = 0.5 and 1.67 against 2.80
  (docs/wheel_bandit.md). MAML's head is always the K steps'.
  ``eval_head_anchor`` = 0: κ > 0 anchors the head to the K steps' where an arm was seldom
  pulled (``metabayes.bandit.exact_head``). κ = 0.01 / 0.03 / 0.1 gave 0.69 / 0.92 / 2.02 /
  3.46 / 8.65 (3.15), 0.64 / 0.93 / 1.97 / 3.63 / 9.22 (3.28), 0.52 / 0.98 / 2.03 / 3.50 /
  10.33 (3.47): δ = 0.5 falls and δ ≥ 0.95 rises, as with a larger β. On Table 1's model
  (n = 80,000, the first validation trial's last 40,000 pulls, K = 20) likewise: δ = 0.5 0.30
  → 0.30 / 0.26, δ = 0.95 1.21 → 1.65 / 1.88 at κ = 0.01 / 0.1. Off.
  ``eval_head_task_prior`` = 0: κ_T > 0 gives the head a prior in function space from
  ``task_prior_tasks`` meta-training episodes' adapted networks (``metabayes.bandit.
  exact_head``). On a 3,000-step model (validation, n = 20,000, 3 trials, K = 5) κ_T = 0.03 /
  0.1 gave 0.51 / 1.00 / 2.13 / 3.56 / 10.67 (3.57) and 0.47 / 0.96 / 2.16 / 3.59 / 11.77
  (3.79) against 0.69 / 1.00 / 2.32 / 3.67 / 10.69 (3.67), at 1.4× the play time; at
  n = 80,000 (the last 40,000 pulls of one validation trial) 0.71 → 0.73 at δ = 0.5 and
  2.60 → 2.96 at δ = 0.95, the near-axis mistakes unchanged. Off; not played on Table 1's
  12,000-step model (docs/wheel_bandit.md).
  ``eval_body_steps`` = 0, ``eval_body_lr`` = 1e-3: B > 0 Adam steps on the hidden layers
  through the exact head after the inner steps (``metabayes.bandit.profile_steps``); with
  ``warm_start`` and ``eval_inner_steps`` = 0 (the variant ``body steps=B``) the network keeps
  training on the history from the last re-adaptation's. Their σ_λ is not refit, so play them
  greedy. On the 3,000-step model above (validation, n = 20,000, 3 trials, greedy) B = 20 gave
  0.55 / 0.71 / 1.04 / 1.48 / 7.06 (2.17) against 0.62 / 0.96 / 2.29 / 3.45 / 10.01 (3.47) at
  7.3× the play time (4.69 s per 1,000 pulls, the gradient through the head's solve; with the
  head held, the envelope theorem's gradient since 2026-12-08: 0.58 / 0.70 / 1.04 / 1.54 /
  7.27 (2.23) at 2.01 s); at n = 80,000 (last 40,000 pulls of one validation trial, through
  the solve) 0.77 → 0.25 at δ = 0.5, 2.68 → 0.55 at 0.95, 8.29 → 1.88 at 0.99. On a 12,000-step
  model (Xeon, 2026-12-08; validation, n = 20,000, 3 trials) 0.59 / 0.31 / 0.53 / 0.94 / 4.21
  (1.32) against K = 20's 0.23 / 0.32 / 0.79 / 1.45 / 4.55 (1.47), at the same play time, so
  Table 1 plays them (2026-12-08): at n = 80,000 0.23 / 0.25 / 0.45 / 0.61 / 2.75 against
  K = 20's 0.26 / 0.30 / 0.67 / 1.40 / 3.80 (greedy), at n = 2,000 0.54 / 0.61 / 0.93 / 1.60 /
  6.22 against 0.23 / 0.46 / 1.04 / 1.83 / 6.38: the early pulls cost more. Off by default:
  the hidden layers become a point estimate trained on the history, not the paper's amortised
  q(φ; λ(S)) (docs/wheel_bandit.md).
  ``eval_body_from`` = 0: T0 > 0 hands over at pull T0 (``metabayes.bandit.agents.HandOver``):
  up to it ABML re-adapts as without body steps (``eval_inner_steps`` from θ, or from the last
  λ with ``warm_start``), after it by B body steps from the last λ with no inner steps. Meant
  for the early pulls, where the body steps cost more than K steps from θ (above). On the
  12,000-step model (validation, n = 20,000, 3 trials, greedy, K = 20, B = 20) T0 = 2,000 gave
  0.23 / 0.32 / 0.65 / 1.08 / 4.26 (1.309) against the body steps' from the first pull 1.316
  and T0 = 5,000's 0.33 / 0.35 / 0.69 / 1.23 / 4.36 (1.391): the lowest mean, by a little.
  On Table 1's problems at n = 80,000: 0.24 / 0.24 / 0.54 / 0.73 / 2.83, higher than the body
  steps from the first pull in four columns (fewer re-adaptations train the network); at
  n = 2,000 K = 20's row to the last digit. Off by default, as the body steps are.
- ``policy.abml`` = "thompson", the paper's: ABML acts on a sample of q(φ; λ). "greedy" acts on
  its mean, as MAML acts. On Table 1's ABML (12,000 CPU steps, K = 20, exact head) greedy had
  the lower mean on the validation problems (n = 20,000, 3 trials): 0.27 / 0.32 / 0.83 / 1.27 /
  4.76 (1.49) against 0.28 / 0.32 / 0.81 / 1.28 / 5.09 (1.56), lower at δ = 0.99 in each trial
  and level at the other δ; at n = 2,000, δ = 0.99 (20 trials) 6.51 against 7.56, lower in each
  trial, most of it in pulls 50-506. So Table 1 plays that model both ways; the default stays
  the paper's, and the 3,000-step models were not played greedy.
- ``head`` = None ("inner_steps"): in meta-training, ABML's head is the K inner steps'. "exact"
  meta-trains through the solve (at ``kl_weight``). With it (and ``outer_kl="per_point"``,
  3,000 steps) ABML gave 1.43 / 2.14 / 5.35 / 7.16 / 15.62 on the same problems at meta-
  training's β: higher in every column (docs/wheel_bandit.md, "Built, measured, off:
  meta-training through the exact head").
- ``outer_kl`` = None: the outer loss's local KL is summed, as in the paper. "per_point" scales
  it by |Q| / (T + |Q|) (``metabayes.per_point_kl``; MATH.md §3), so that the outer loss is
  |Q| × the task's ELBO per point. Built for ``head="exact"``, whose KL on histories of up to
  80,000 pulls outweighed the 50 query pulls when summed: the query MSE stayed at 170-200 up
  to 1,100 steps, against 94 at 1,000 for the default run. With it, the query MSE was 112 at
  3,000 steps (82 for the default run). Off, with the exact head.

The other choices were measured on Table 1's own problems, before the validation key existed
(normalised regret at δ = 0.5 / 0.99, ABML, n = 2,000 and 5 trials unless said; default
2.93 / 22.06 at 0.35 s per 1,000 pulls of one run; BENCHMARKS.md; the models of 1,000
meta-training steps, before ``steps`` became 3,000, with 102 slots per arm at play).
``memory``, ``step_reference``, ``readapt_growth`` and ``warm_start`` were played again on the
validation problems on 2026-12-06/07 at today's defaults (the 3,000-step models; mean regret
over the five δ, ABML / MAML, n = 20,000, 3 trials; docs/wheel_bandit.md): 2.97 / 3.58 by
default; each stands (numbers below):
- ``memory="reservoir"`` conditions on the whole history at a fixed cost (5 · ``play_per_arm``
  slots); ``"window"`` keeps the last 5 · ``play_per_arm`` pulls. Measured (with 102 per arm):
  no difference, at the same cost (window 2.40 / 23.02; at n = 20,000, 3 trials: reservoir
  2.48 / 22.90, window 2.47 / 23.51; on the validation problems 3.04 / 3.53, level for both).
  Kept because it conditions on the whole history, which the issue asks for, and because a
  larger reservoir then helped (``play_per_arm``).
- ``step_reference``: the inner step is taken on (reference / T) × the summed objective once
  the history has T > reference pulls (``metabayes.per_point_step``), so the weighted
  likelihood of 80,000 pulls is as stable to adapt on as that of 512; None sums. Kept: summed
  steps at play give 6.54 / 29.00 (on the validation problems 51.70 / 70.02).
- ``readapt_growth``: re-adapt after every pull while t < 2 / growth, then at intervals that
  double with t (~ 1 / (growth ln 2) re-adaptations per doubling), so n = 80,000 costs 211
  adaptations, not 80,000. Kept: re-adapting after every pull gave ABML 2.47 / 21.92 at 13.6×
  the play time and MAML nothing (2.52 / 22.09 against 2.18 / 22.09); on the validation
  problems (n = 2,000) ABML 3.67 against 3.67, MAML 3.90 against 4.07, at 36× the play time.
- ``outer_data="query"`` for ABML too, unlike the paper's support ∪ query: a reservoir slot
  stands for up to max_pulls / per_arm pulls, so the support's weighted likelihood in the outer
  loss would weight each task by its history's length (losses of 10⁶ for T = 80,000 against 10²
  for T = 50; measured on the first meta-steps). The outer loss is the fit to fresh pulls of
  every arm, which is what the agent needs.
- The likelihood's ``noise_std`` is the model's, not the environment's 0.01: with rewards up to
  50, 0.01 would make inner SGD unstable at any useful step size.
- ``eval_inner_lr`` = inner_lr / 4, with ``eval_inner_steps`` = 10 when this was measured (2.5×
  the inner loop's total movement): the play-like episodes did not make the patch unneeded.
  Adapting at play as in meta-training (K = 5 at inner_lr) gave 15.29 / 30.04 (ABML) and
  11.34 / 22.88 (MAML, against 2.18 / 22.09). With it, ABML's regret per pull at δ = 0.5 rose
  from ~1 before pull 300 to ~5 after: on the agent's own histories (mostly reward-50 pulls of
  the right arm) five steps at the training step size overshoot. Rechecked on the validation
  problems with 2,048 slots per arm and K = 5 (n = 20,000, δ = 0.5 / 0.99): ABML 1.11 / 20.56 at
  a quarter of the training step, 1.57 / 21.14 at half of it, 6.73 / 28.62 at the whole.
- ``steps`` = 3,000 meta-training steps, because the outer loss was still falling at 1,000
  (query MSE ~120; ~85 at 3,000). Table 1 (with 102 slots and K = 10 at play) improved in all
  20 cells of ABML and MAML (n = 80,000, δ = 0.5: ABML 2.45 → 2.05, MAML 2.33 → 1.59;
  δ = 0.99: 25.00 → 23.47 and 24.33 → 23.09). Longer runs take hours on 2 CPU cores (~1.2 s
  a step, 0.88 s for ABML since its weight noise is stored once; 11-15 ms on an H200). Table
  1's MAMLs were trained on a GPU, its ABML on the CPU, each length chosen on the validation
  problems (lowest mean regret over the five δ, n = 20,000, 3 trials, K = 5): MAML 28,000
  (2.49, its last), MAML with Meta-SGD 8,000 (2.24), ABML 12,000 (1.67, of 3,000-12,000). A
  workdir trained further plays its checkpoint at ``steps`` (tested; docs/wheel_bandit.md).
- ``inner_optimizer`` = SGD. Models meta-trained with an inner Adam (``inner_lr`` = 0.01, no
  ``per_point_step``) use the history: K = 5 steps take MAML's query MSE on meta-training's
  episodes from θ's 105.2 to 69.8, where SGD's take it from 89.8 to 84.0 (docs/wheel_bandit.md,
  ``benchmarks.wheel_bandit_adaptation``). But on the validation problems (n = 20,000,
  3 trials) ABML played
  worse at every step size tried, and MAML better only at δ ≥ 0.9 (15.13 against 21.80 at
  0.99; docs/wheel_bandit.md, "Tried and not kept: an inner Adam").
- ``warm_start`` (re-adapt from the last λ, not θ) is off: at n = 20,000 (3 trials) ABML gave
  3.40 / 40.97 against 2.48 / 22.90, MAML 2.82 / 58.70 against 2.54 / 22.50 (on the validation
  problems ABML 4.62, higher at every δ; MAML 3.61, level).

NeuralLinear follows Riquelme et al.'s reference code (``metabayes.bandit.neural_linear``).
"""
import ml_collections

from metabayes.training.config import ALGORITHMS, LEARNER_RULES, add_learner_defaults
from metabayes.config_checks import BOOLEAN, integer, number, one_of, optional, positive, sequence_of
from metabayes.bandit.agents import POLICIES
from metabayes.models import ACTIVATIONS

HEADS = ("inner_steps", "exact")   # ABML's head: the K inner steps', or ``ExactHead``'s after them


def get_config() -> ml_collections.ConfigDict:
    c = add_learner_defaults(ml_collections.ConfigDict())
    del c["algorithm"]                   # replaced by ``algorithms``: both are trained
    c.seed = 0
    c.algorithms = ("abml", "maml")      # each is meta-trained, then played (abml: Thompson, maml: greedy)
    c.steps = 3_000                      # meta-training steps: module docstring
    c.meta_batch = 64
    c.per_arm = 102                      # reservoir slots per arm: 510 support slots
    c.query = 50
    c.outer_data = "query"               # both algorithms: see the module docstring
    c.max_pulls = 80_000                 # longest history an episode stands for (T ≤ max_pulls)
    c.pool = 2_048                       # i.i.d. pulls an episode's reservoir is drawn from
    c.step_reference = ml_collections.FieldReference(512.0, field_type=float)   # None: summed
    c.hidden = (100, 100)
    c.activation = "relu"
    c.noise_std = 1.0
    c.inner_lr = 5e-5
    c.inner_steps = 5
    c.eval_inner_steps = 5               # at a quarter of the step size: module docstring
    c.eval_inner_lr = 1.25e-5
    c.eval_local_variance = "fisher"     # ABML's σ_λ at play narrows with the history: docstring
    c.head = ml_collections.config_dict.placeholder(str)        # ABML's head: docstring
    c.eval_head = ml_collections.FieldReference("exact", field_type=str)   # None: ``head``
    c.eval_head_kl_weight = ml_collections.FieldReference(1.0, field_type=float)   # None: β
    c.eval_head_anchor = 0.0             # κ: anchor to the K steps' head (exact head): docstring
    c.eval_head_task_prior = 0.0         # κ_T: the tasks' prior (exact head): docstring
    c.task_prior_tasks = 32              # M episodes whose adapted networks make that prior
    c.eval_body_steps = 0                # Adam steps on the hidden layers through the exact head
    c.eval_body_lr = 1e-3                # their step size: docstring
    c.eval_body_from = 0                 # T0 > 0: as without them up to pull T0: docstring
    c.outer_kl = ml_collections.config_dict.placeholder(str)    # None: summed; docstring
    del c["meta_sgd"]                    # per algorithm instead: module docstring
    c.meta_sgd = ml_collections.ConfigDict(dict(abml=True, maml=False))
    c.kl_weight = 0.1
    c.init_log_sigma = -3.0               # inner SGD stable: inner_lr·β/σ_θ² = 4e-3 < 2 (MATH.md §3)
    c.num_tasks = 128_000                 # N of the 1/N global KL (the README's runs were trained with it)
    c.log_every = 100
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    # Evaluation.
    c.deltas = (0.5, 0.7, 0.9, 0.95, 0.99)
    c.n = 2_000
    c.trials = 10
    c.memory = "reservoir"               # or "window": the last 5 · play_per_arm pulls
    c.play_per_arm = ml_collections.FieldReference(2048, field_type=int)   # None: per_arm
    c.smallest_support = ml_collections.FieldReference(16, field_type=int)  # None: whole memory
    c.readapt_every = 1
    c.readapt_growth = 1 / 16            # n = 2,000: 127 re-adaptations; 80,000: 211
    c.warm_start = False                 # re-adapt from the last λ instead of from θ
    # How each meta-learner acts at play: ABML by Thompson sampling from q(φ; λ) as in the
    # paper, MAML greedily (a point estimate). "greedy" ABML acts on q's mean: docstring.
    c.policy = ml_collections.ConfigDict(dict(abml="thompson", maml="greedy"))
    c.curve_points = 200                 # points of each mean regret curve kept in results.json
    c.neural_linear = ml_collections.ConfigDict(dict(   # Riquelme et al.'s hparams_nlinear
        enabled=True, hidden=(50,), init_scale=0.3, retrain_every=50, train_steps=100,
        batch_size=512, learning_rate=0.1, lr_decay=0.5, max_grad_norm=5.0, initial_pulls=2,
        prior_precision=0.25, a0=6.0, b0=6.0))
    c.force_resume = False               # resume even where the flags differ from config.json
    return c


RULES = {
    **{key: rule for key, rule in LEARNER_RULES.items() if key != "algorithm"},
    "seed": integer(0), "algorithms": sequence_of(one_of(*ALGORITHMS), min_length=1),
    "steps": integer(1), "meta_batch": integer(1), "per_arm": integer(1), "query": integer(1),
    "max_pulls": integer(1), "pool": integer(1), "step_reference": optional(positive()),
    "hidden": sequence_of(integer(1)),
    "activation": one_of(*ACTIVATIONS), "noise_std": positive(), "log_every": integer(1),
    "checkpoint_every": integer(1), "keep_checkpoints": integer(1),
    "deltas": sequence_of(number(0.0, 1.0), min_length=1), "n": integer(1), "trials": integer(1),
    "memory": one_of("reservoir", "window"), "play_per_arm": optional(integer(1)),
    "smallest_support": optional(integer(1)),
    "readapt_every": integer(1),
    "readapt_growth": number(0.0), "warm_start": BOOLEAN,
    "head": optional(one_of(*HEADS)), "eval_head": optional(one_of(*HEADS)),
    "eval_head_kl_weight": optional(positive()),
    "eval_head_anchor": number(0.0), "eval_head_task_prior": number(0.0),
    "task_prior_tasks": integer(2), "eval_body_steps": integer(0), "eval_body_lr": positive(),
    "eval_body_from": integer(0),
    "outer_kl": optional(one_of("per_point")), "curve_points": integer(1),
    "meta_sgd": {algorithm: BOOLEAN for algorithm in ALGORITHMS},
    "policy": {algorithm: one_of(*POLICIES) for algorithm in ALGORITHMS},
    "neural_linear": {
        "enabled": BOOLEAN, "hidden": sequence_of(integer(1)), "init_scale": optional(positive()),
        "retrain_every": integer(1), "train_steps": integer(1), "batch_size": integer(1),
        "learning_rate": positive(), "lr_decay": number(0.0), "max_grad_norm": positive(),
        "initial_pulls": integer(0), "prior_precision": positive(), "a0": positive(),
        "b0": positive()},
    "force_resume": BOOLEAN,
}

# Keys that may change when a run resumes: the play settings (the meta-training checkpoints
# stay valid), an extended meta-training, logging and checkpoint cadence.
RESUMABLE_CHANGES = ("algorithms", "steps", "log_every", "checkpoint_every", "keep_checkpoints",
                     "deltas", "n", "trials", "memory", "play_per_arm", "smallest_support",
                     "readapt_every",
                     "readapt_growth", "warm_start", "curve_points",
                     "eval_inner_steps", "eval_inner_lr", "eval_samples", "eval_batch_norm",
                     "eval_local_variance", "eval_head", "eval_head_kl_weight",
                     "eval_head_anchor", "eval_head_task_prior", "task_prior_tasks",
                     "eval_body_steps", "eval_body_lr", "eval_body_from",
                     *(f"policy.{algorithm}" for algorithm in ALGORITHMS),
                     "force_resume", *(f"neural_linear.{key}" for key in RULES["neural_linear"]))
