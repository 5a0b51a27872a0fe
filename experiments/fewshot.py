r"""Few-shot miniImageNet, CIFAR-FS and FC100 with ABML or MAML, the ABML paper's Table 2:
``python -m experiments.fewshot --config=experiments/configs/fewshot.py:NAME --flags``.

    python -m experiments.fewshot --config=experiments/configs/fewshot.py:miniimagenet_5w1s \
        --config.data_dir=/data/miniimagenet
    python -m experiments.fewshot --config=experiments/configs/fewshot.py:cifarfs_10w1s,maml \
        --config.data_dir=/data/cifar100

The data are read from the files you have (``metabayes.data.fewshot``; a missing data set's
error lists the accepted layouts). Training, evaluation and the workdir's outputs are those of
``experiments.omniglot`` (``experiments.classification``).
"""
import os

from absl import flags
from ml_collections import config_flags

from experiments.classification import run_experiment
from experiments.cli import run

if __name__ == "__main__":  # flags exist only when run as a program, so modules import freely
    _CONFIG = config_flags.DEFINE_config_file(
        "config", os.path.join(os.path.dirname(__file__), "configs", "fewshot.py")
        + ":miniimagenet_5w1s",
        "Config file and name: experiments/configs/fewshot.py:NAME[,maml], NAME one of "
        "{miniimagenet,cifarfs,fc100}_{5w1s,5w5s}, cifarfs_10w1s, cifarfs_10w5s.")
    _WORKDIR = flags.DEFINE_string("workdir", "runs/fewshot", "Outputs and checkpoints go here.")
    run(lambda argv: run_experiment(_CONFIG.value, _WORKDIR.value), _CONFIG)
