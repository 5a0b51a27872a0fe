"""Use a trained few-shot classification workdir on your own tasks.

    from metabayes.training.predictor import load_predictor
    predictor = load_predictor("runs/omniglot")
    probs = predictor.predict(support_images, support_labels, query_images)   # [Q, ways]

Images are shaped like the run's: [N, H, W, C] floats, normalised as the run's data set's
(``input_shape(config.dataset)``: Omniglot [28, 28, 1] with strokes 1 and background 0;
miniImageNet [84, 84, 3], CIFAR-FS and FC100 [32, 32, 3], per-channel standardised:
``metabayes.data.fewshot``).
"""
import json
import os
from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metabayes.algorithms import MetaLearner, MetaParams
from metabayes.data.fewshot import DATASETS
from metabayes.data.omniglot_decode import SIZE
from metabayes.training.checkpointing import Checkpointer
from metabayes.training.config import make_evaluator, make_learner
from metabayes.layers import CONVOLUTIONS
from metabayes.likelihoods import Categorical
from metabayes.models import Conv4

OMNIGLOT_SHAPE = (SIZE, SIZE, 1)


def input_shape(dataset: str) -> Tuple[int, int, int]:
    """[H, W, C] of a data set's images ("omniglot" or one of ``metabayes.data.fewshot``'s)."""
    if dataset == "omniglot":
        return OMNIGLOT_SHAPE
    if dataset not in DATASETS:
        raise ValueError(f"`dataset` must be one of {['omniglot', *DATASETS]}; got {dataset!r}")
    return DATASETS[dataset].input_shape


def classifier_learner(config: ml_collections.ConfigDict) -> MetaLearner:
    """The Conv4 classifier meta-learner of a few-shot classification config
    (``experiments/configs``)."""
    conv = config.get("conv", "im2col")   # workdirs from before the conv option have none
    if conv not in CONVOLUTIONS:
        raise ValueError(f"`conv` must be one of {CONVOLUTIONS}, got {conv!r}")
    model = Conv4(num_classes=config.ways, filters=config.filters, conv=conv)
    return make_learner(config, model, Categorical())


class Predictor(NamedTuple):
    """A trained meta-learner: ``predict`` adapts to a support set and returns probabilities."""

    learner: MetaLearner
    params: MetaParams
    config: ml_collections.ConfigDict
    input_shape: Tuple[int, ...] = OMNIGLOT_SHAPE

    def predict(self, support_images, support_labels, query_images, key: Optional[jax.Array] = None,
                num_samples: Optional[int] = None) -> np.ndarray:
        """Posterior-predictive class probabilities [Q, ways] for query images [Q, H, W, C],
        after adapting on support images [N·K, H, W, C] with labels [N·K] in 0..ways-1
        ([H, W, C] = ``input_shape``).

        Batch norm follows the run's ``eval_batch_norm`` (else ``batch_norm``). The default,
        "transductive" (as MAML), normalises the Q query images by their own statistics: each
        prediction depends on the other queries passed with it, so pass a task's queries
        together, as in meta-training, and not one image at a time. "support" normalises them
        with the support set's statistics: every query is then scored on its own.
        """
        support_images, query_images = (np.asarray(a, np.float32)
                                        for a in (support_images, query_images))
        support_labels = np.asarray(support_labels)
        shape = ", ".join(map(str, self.input_shape))
        for name, images in (("support_images", support_images), ("query_images", query_images)):
            if images.shape[1:] != self.input_shape:
                raise ValueError(f"{name} must be shaped [N, {shape}], got {images.shape}")
        if support_labels.shape != support_images.shape[:1]:
            raise ValueError(f"support_labels {support_labels.shape} must be shaped "
                             f"[{support_images.shape[0]}] like support_images")
        if support_labels.min() < 0 or support_labels.max() >= self.config.ways:
            raise ValueError(f"support_labels must lie in 0..{self.config.ways - 1} (the model "
                             f"was meta-trained for {self.config.ways} ways)")
        evaluator = make_evaluator(self.config, self.learner)
        key = jax.random.PRNGKey(0) if key is None else key
        probs = evaluator.predict(self.params, (support_images, jnp.asarray(support_labels)),
                                  query_images, key, num_samples or self.config.eval_samples)
        return np.asarray(probs)


def load_predictor(workdir: str) -> Predictor:
    """The latest checkpoint of an ``experiments.omniglot`` or ``experiments.fewshot`` workdir,
    ready to ``predict``."""
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{config_path} not found: is {workdir} an experiments.omniglot "
                                "or experiments.fewshot workdir?")
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    learner = classifier_learner(config)
    shape = input_shape(config.get("dataset", "omniglot"))   # older workdirs: Omniglot
    template = learner.init(jax.random.PRNGKey(0),
                            jnp.zeros((config.ways * config.shots, *shape)))
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    restored = checkpointer.restore(template)
    checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
    return Predictor(learner, restored[0].params, config, shape)
