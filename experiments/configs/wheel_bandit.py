"""Wheel-bandit config (Ravi & Beatson, ICLR 2019, §5.3 and Table 1): ``--config.KEY=VALUE``.

Meta-training: M = 64 wheel problems per meta-batch, δ ~ U(0, 1), 512 support + 50 query pulls of
uniformly random arms, an MLP context -> 5 expected rewards with a Gaussian likelihood on the
pulled arm. Evaluation: for each δ in ``deltas``, ``trials`` online runs of ``n`` pulls; ABML
acts by Thompson sampling, MAML greedily, both re-adapting from θ on their last ``max_history``
pulls after every ``readapt_every``-th pull (``eval_inner_steps`` inner steps each time).

The likelihood's ``noise_std`` is the model's, not the environment's 0.01: with rewards up to
50 summed over 512 pulls, 0.01 would make inner SGD unstable at any useful step size. At
noise 1 the summed likelihood's curvature in the last layer is ~10³-10⁴, so inner_lr = 1e-4 is
stable for meta-training both ABML and MAML (not tuned further). 1,000 meta-steps at M = 64
took 2,284 s for ABML and 1,547 s for MAML on 2 CPU cores shared with other jobs.

At play time the inner loop runs at ``eval_inner_lr`` = inner_lr / 4 for ``eval_inner_steps`` = 10
steps (2.5× the meta-training steps' total movement). Meta-training histories are 512 pulls of
uniformly random arms (~13% of them rewarding 50); an agent's own history is not: playing well at
δ = 0.5, ~75% of its pulls reward 50, the summed likelihood's curvature is several times larger,
and SGD at the training step size diverges. Measured on the ABML model meta-trained for 1,000
steps (adapting on a history of the optimal arms' pulls at δ = 0.5, greedy regret per pull on
fresh contexts, Uniform ≈ 30): 5 steps at 1e-4 gave 0.93 at 150 pulls, 8.6 at 300 and 17.4 at
512 (predicted rewards up to 184); 10 steps at 2.5e-5 gave 0.49, 0.44 and 0.39. Random-arm
histories adapt well at either setting.

Cost of the re-adaptation schedule (2 shared CPU cores, 100-100 MLP, K = 5, 512 history slots,
one trial of n = 2,000 after compilation): ABML 27 s at ``readapt_every=1``, 4.9 s at 10; MAML
13 s and 1.3 s; NeuralLinear (retrain every 50) 10 s. A re-adaptation costs the same at every
step (the padded history has a fixed size), so the cost grows linearly in n / readapt_every.
With the defaults (K = 10 at play, ``readapt_every=5``), the 50 trials of the README's Table 1
(5 δ × 10 trials × 4 agents, n = 2,000) took 946 s.
"""
import ml_collections

from metabayes.training.config import ALGORITHMS, LEARNER_RULES, add_learner_defaults
from metabayes.config_checks import BOOLEAN, integer, number, one_of, optional, positive, sequence_of
from metabayes.models import ACTIVATIONS


def get_config() -> ml_collections.ConfigDict:
    c = add_learner_defaults(ml_collections.ConfigDict())
    del c["algorithm"]                   # replaced by ``algorithms``: both are trained
    c.seed = 0
    c.algorithms = ("abml", "maml")      # each is meta-trained, then played (abml: Thompson, maml: greedy)
    c.steps = 1_000                      # meta-training steps
    c.meta_batch = 64
    c.support = 512
    c.query = 50
    c.min_support = ml_collections.config_dict.placeholder(int)   # None: always 512 real pulls
    c.hidden = (100, 100)
    c.activation = "relu"
    c.noise_std = 1.0
    c.inner_lr = 1e-4
    c.inner_steps = 5
    c.eval_inner_steps = 10
    c.eval_inner_lr = 2.5e-5              # see the module docstring: on-policy histories
    c.kl_weight = 0.1
    c.init_log_sigma = -3.0               # inner SGD stable: inner_lr·β/σ_θ² = 4e-3 < 2 (MATH.md §3)
    c.num_tasks = 128_000                 # N of the 1/N global KL (2,000 steps' tasks; the README's runs)
    c.log_every = 100
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    # Evaluation.
    c.deltas = (0.5, 0.7, 0.9, 0.95, 0.99)
    c.n = 2_000
    c.trials = 10
    c.readapt_every = 5                  # re-adapt after every 5th pull (cost: module docstring)
    c.max_history = 512
    c.curve_points = 200                 # points of each mean regret curve kept in results.json
    c.neural_linear = ml_collections.ConfigDict(dict(
        enabled=True, hidden=(100, 100), retrain_every=50, train_steps=100, batch_size=512,
        learning_rate=1e-3, prior_precision=0.25, a0=6.0, b0=6.0))
    c.force_resume = False               # resume even where the flags differ from config.json
    return c


RULES = {
    **{key: rule for key, rule in LEARNER_RULES.items() if key != "algorithm"},
    "seed": integer(0), "algorithms": sequence_of(one_of(*ALGORITHMS), min_length=1),
    "steps": integer(1), "meta_batch": integer(1), "support": integer(1), "query": integer(1),
    "min_support": optional(integer(0)), "hidden": sequence_of(integer(1)),
    "activation": one_of(*ACTIVATIONS), "noise_std": positive(), "log_every": integer(1),
    "checkpoint_every": integer(1), "keep_checkpoints": integer(1),
    "deltas": sequence_of(number(0.0, 1.0), min_length=1), "n": integer(1), "trials": integer(1),
    "readapt_every": integer(1), "max_history": integer(1), "curve_points": integer(1),
    "neural_linear": {
        "enabled": BOOLEAN, "hidden": sequence_of(integer(1)), "retrain_every": integer(1),
        "train_steps": integer(1), "batch_size": integer(1), "learning_rate": positive(),
        "prior_precision": positive(), "a0": positive(), "b0": positive()},
    "force_resume": BOOLEAN,
}

# Keys that may change when a run resumes: the play settings (the meta-training checkpoints
# stay valid), an extended meta-training, logging and checkpoint cadence.
RESUMABLE_CHANGES = ("algorithms", "steps", "log_every", "checkpoint_every", "keep_checkpoints",
                     "deltas", "n", "trials", "readapt_every", "max_history", "curve_points",
                     "eval_inner_steps", "eval_inner_lr", "eval_samples", "eval_batch_norm",
                     "force_resume", *(f"neural_linear.{key}" for key in RULES["neural_linear"]))
