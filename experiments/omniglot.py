r"""Few-shot Omniglot with ABML or MAML: ``python -m experiments.omniglot --flags``.

    python -m experiments.omniglot                                   # cpu_demo, shipped data
    python -m experiments.omniglot --config=experiments/configs/omniglot.py:5w1s,maml \
        --config.data_dir=/data/omniglot --config.split=vinyals

Every hyperparameter is a flag (``--config.KEY=VALUE``). The workdir receives config.json,
checkpoints/ (resumed automatically), metrics.jsonl (training, validation, the posterior scales
σ_θ and σ_λ per parameter, and the final evaluation), tb/ (TensorBoard), eval.json,
reliability.png, entropy_cdf.png and, for ABML, posterior_scales.png. The training and
evaluation are ``experiments.classification``'s, shared with ``experiments.fewshot``.
"""
import os

from absl import flags
from ml_collections import config_flags

from experiments.classification import run_experiment
from experiments.cli import run

if __name__ == "__main__":  # flags exist only when run as a program, so modules import freely
    _CONFIG = config_flags.DEFINE_config_file(
        "config", os.path.join(os.path.dirname(__file__), "configs", "omniglot.py") + ":cpu_demo",
        "Config file and name: experiments/configs/omniglot.py:{cpu_demo,5w1s,5w5s,20w1s,20w5s}.")
    _WORKDIR = flags.DEFINE_string("workdir", "runs/omniglot", "Outputs and checkpoints go here.")
    run(lambda argv: run_experiment(_CONFIG.value, _WORKDIR.value), _CONFIG)
