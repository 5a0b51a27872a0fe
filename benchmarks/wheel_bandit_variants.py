"""The play-time variants of the wheel-bandit agents that the benchmarks play (issue 19): each
is a name and the settings it changes in a finished run's config, whose play settings are
otherwise the defaults (``experiments.wheel_bandit.finished_run_config``):

- ``default``: the defaults (since 2026-12-06 ABML's head at its exact posterior, β = 1; the
  results recorded before that date played the K inner steps' head, now ``inner steps' head``);
- ``window``: condition on the last 5 · play_per_arm pulls instead of the whole history's
  reservoir;
- ``summed steps``: inner steps on the summed objective (no ``per_point_step``) at play;
- ``every pull``: re-adapt after every pull (``readapt_growth=0``) instead of the thinning
  schedule;
- ``training step``: adapt at play as in meta-training, at the training step size instead of
  the default's (K = 5 either way); ``half training step``, ``quarter training step``: at half
  or a quarter of it (of the run's ``inner_lr``);
- ``10 steps`` to ``160 steps``: K = 10, 20, 40, 80 or 160 at play, at the default step
  size;
- ``training reservoir``, ``reservoir 512``, ``reservoir 8192``: reservoirs of meta-training's
  ``per_arm`` or of 512 or 8,192 pulls per arm at play instead of the default
  ``play_per_arm``; ``whole reservoir``: every re-adaptation on all its slots, filled or not,
  instead of the smallest of the ``support_sizes`` that holds the pulls so far (the same
  function, at its full cost);
- ``warm start``: each re-adaptation starts from the last λ instead of θ (``MetaAgent``);
  ``warm training step``: the same, with K = 5 at the training step size;
- ``gradient variance``: σ_λ at play by meta-training's rule (σ_λ takes the inner steps)
  instead of the default ``eval_local_variance="fisher"`` (σ_λ⁻² → F/β + σ_θ⁻², F the
  weighted history's, which narrows Thompson sampling's posterior as the history grows);
  MAML, a point mass, is unchanged;
- ``exact head``: ABML's head at the closed-form optimum of the local objective (at the
  learner's β) after the K inner steps (``eval_head="exact"``, ``metabayes.bandit.exact_head``),
  the hidden layers as adapted; ``exact head greedy``: the same, acting on q's mean (as
  ``greedy`` below); ``exact head 20 steps``: the same after K = 20; ``exact head beta=B``:
  solved at β = B instead (``eval_head_kl_weight``; the default's B = 1 makes it the head's
  exact Bayesian posterior given the features); ``exact head anchor=A``: the default's head
  anchored to the K steps' head by A pseudo-pulls per pull where an arm was seldom pulled
  (``eval_head_anchor``); ``task prior=T``: the default's head with the meta-training tasks'
  prior in function space, weighted T (``eval_head_task_prior``); ``inner steps' head``: the
  head as the K inner steps leave it (``eval_head="inner_steps"``);
- ``body steps=B``: no inner steps; each re-adaptation takes B Adam steps on the hidden layers
  through the exact head from the last λ's (``warm_start``, ``eval_body_steps``;
  ``metabayes.bandit.profile_steps``), i.e. keeps training the network on the history;
  ``body steps=20 after T`` (T = 2000, 5000): K = 20 from θ up to pull T, then 20 body steps
  from the last λ (``eval_body_from``, ``metabayes.bandit.agents.HandOver``);
- ``greedy``: ABML acts on the mean of q(φ; λ) instead of a sample of it (Thompson sampling, the
  paper's and the default), as MAML acts: what the sampling costs or gains.

Variants compose: ``20 steps+greedy`` applies ``20 steps``, then ``greedy``. Two that set the
same key are refused rather than one silently overriding the other.
"""
import ml_collections
from absl import flags

from experiments.configs.wheel_bandit import HEADS

PLAY_HEAD = flags.DEFINE_enum(
    "eval_head", None, list(HEADS), "ABML's head at play in every variant that does not set its "
    "own; unset: the config's default (\"exact\" since 2026-12-06). \"inner_steps\" replays "
    "the results recorded before that date, whose default it was.")


def abml_greedy(config) -> ml_collections.ConfigDict:
    """The config's ``policy`` with ABML acting on q's mean."""
    return ml_collections.ConfigDict(dict(config.policy.to_dict(), abml="greedy"))


EXACT_AT_KL_WEIGHT = {"eval_head": "exact", "eval_head_kl_weight": None}   # β as meta-trained

VARIANTS = {
    "default": {},
    "window": {"memory": "window"},
    "summed steps": {"step_reference": None},
    "every pull": {"readapt_growth": 0.0},
    "training step": {"eval_inner_steps": 5, "eval_inner_lr": None},
    "half training step": {"eval_inner_lr": lambda config: config.inner_lr / 2},
    "quarter training step": {"eval_inner_lr": lambda config: config.inner_lr / 4},
    "warm start": {"warm_start": True},
    "10 steps": {"eval_inner_steps": 10},
    "20 steps": {"eval_inner_steps": 20},
    "40 steps": {"eval_inner_steps": 40},
    "80 steps": {"eval_inner_steps": 80},
    "160 steps": {"eval_inner_steps": 160},
    "training reservoir": {"play_per_arm": None},
    **{f"reservoir {slots}": {"play_per_arm": slots} for slots in (512, 8192)},
    "whole reservoir": {"smallest_support": None},
    "warm training step": {"warm_start": True, "eval_inner_steps": 5, "eval_inner_lr": None},
    "gradient variance": {"eval_local_variance": "gradient"},
    "exact head": EXACT_AT_KL_WEIGHT,
    "exact head greedy": {**EXACT_AT_KL_WEIGHT, "policy": abml_greedy},
    "exact head 20 steps": {**EXACT_AT_KL_WEIGHT, "eval_inner_steps": 20},
    **{f"exact head beta={beta:g}": {"eval_head": "exact", "eval_head_kl_weight": beta}
       for beta in (0.3, 3.0, 10.0)},
    **{f"exact head anchor={share:g}": {"eval_head": "exact", "eval_head_anchor": share}
       for share in (0.01, 0.03, 0.1, 0.3)},
    **{f"task prior={share:g}": {"eval_head": "exact", "eval_head_task_prior": share}
       for share in (0.01, 0.03, 0.1)},
    "inner steps' head": {"eval_head": "inner_steps"},
    **{f"body steps={steps}": {"eval_head": "exact", "warm_start": True, "eval_inner_steps": 0,
                               "eval_body_steps": steps} for steps in (5, 20, 60)},
    **{f"body steps=20 after {pull}": {"eval_head": "exact", "eval_inner_steps": 20,
                                       "eval_body_steps": 20, "eval_body_from": pull}
       for pull in (2000, 5000)},
    "greedy": {"policy": abml_greedy},
}

# What a variant may change, recorded beside each variant's results: the model played and every
# key some variant sets.
PLAY_SETTINGS = ("steps", "eval_head", *sorted(
    {key for settings in VARIANTS.values() for key in settings} - {"eval_head"}))


def check_variants(names, flag: str) -> None:
    """ValueError naming ``--flag`` unless every name is a variant or several joined by "+"
    that set different keys."""
    parts = {name: name.split("+") for name in names}
    if unknown := sorted({part for split in parts.values() for part in split} - set(VARIANTS)):
        raise ValueError(f"--{flag} must be among {sorted(VARIANTS)}, or several joined by '+', "
                         f"got {unknown}")
    for name, split in parts.items():
        keys = [key for part in split for key in VARIANTS[part]]
        if twice := sorted({key for key in keys if keys.count(key) > 1}):
            raise ValueError(f"--{flag}: {name!r} sets {', '.join(twice)} more than once")


def with_variant(config: ml_collections.ConfigDict, name: str,
                 eval_head=None) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``eval_head`` (None: the config's) and then the settings of
    variant ``name`` (of each of its "+"-joined parts in turn); a callable value is a function of
    the config (e.g. a step size relative to the run's ``inner_lr``)."""
    config = config.copy_and_resolve_references()
    if eval_head is not None:
        config.eval_head = eval_head
    for part in name.split("+"):
        for key, value in VARIANTS[part].items():
            config[key] = value(config) if callable(value) else value
    return config
