"""Networks whose parameter pytree is exactly the φ that q(φ; λ) samples.

``model.init(key, inputs)["params"]`` is φ's structure; ``model.apply({"params": φ}, x)`` is
the network at φ (see ``metabayes.layers`` for the in-layer estimators).
"""
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax

from metabayes.layers import BatchNorm, Conv3x3, Dense, max_pool_2x2

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "softplus": nn.softplus}


def activation_by_name(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Fully connected net: x [B, I] -> [B, outputs], e.g. the sinusoid's 1-40-40-1."""

    hidden: Sequence[int] = (40, 40)
    outputs: int = 1
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation_by_name(self.activation)
        for width in self.hidden:
            x = act(Dense(width)(x))
        return Dense(self.outputs)(x)


class Conv4(nn.Module):
    """The few-shot Omniglot/miniImageNet net: 4 × [conv3x3, batch norm, act, 2×2 max-pool], linear.

    x [B, 28, 28, 1] -> logits [B, num_classes] (28 -> 14 -> 7 -> 3 -> 1, ``filters`` features);
    any [B, H, W, C], e.g. miniImageNet's [B, 84, 84, 3] (84 -> 42 -> 21 -> 10 -> 5: 25 · filters).
    ``statistics_rows``: batch norm's statistics from the first n rows only (``BatchNorm``).
    """

    num_classes: int
    filters: int = 64
    blocks: int = 4
    activation: str = "relu"
    conv: str = "auto"       # metabayes.layers.CONVOLUTIONS: "auto" is "direct" on CPU, "xla" on GPU / TPU

    @nn.compact
    def __call__(self, x: jax.Array, statistics_rows: Optional[int] = None) -> jax.Array:
        act = activation_by_name(self.activation)
        for _ in range(self.blocks):
            conv = Conv3x3(self.filters, implementation=self.conv)(x)
            x = max_pool_2x2(act(BatchNorm()(conv, statistics_rows)))
        return Dense(self.num_classes)(x.reshape(x.shape[0], -1))
