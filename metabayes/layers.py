"""Flax layers whose params are φ, with the Monte-Carlo estimators of MATH.md §3.

Applied with ``{"params": φ}`` a layer is an ordinary deterministic layer. Applied with
``{"params": mean, "posterior_std": σ}`` it integrates over φ ~ N(mean, σ²) itself, by the
estimator named by the PRNG stream it is given:

- ``rngs={"local_reparam": key}``: the local reparameterisation trick (Kingma et al., 2015) in
  dense layers, pre-activations ~ N(x μ + b_μ, x² σ² + σ_b²) sampled per example; conv layers
  use Flipout instead, since their weights are shared across positions (the paper's pairing).
- ``rngs={"flipout": key}``: Flipout (Wen et al., 2018) in every layer: one shared ΔW ~ N(0, σ²)
  decorrelated per example by random signs, x μ + ((x ⊙ s_in) ΔW) ⊙ s_out.

Both are unbiased for every per-example term. Batch norm's scale and shift are sampled once
per forward pass. Convolutions are 3×3 SAME, in one of ``CONVOLUTIONS``:
- ``direct``: ``metabayes.conv3x3.conv``, ``lax.conv_general_dilated`` forward with derivatives
  of every order written as convolutions in XLA:CPU's canonical layout (the fastest there);
- ``im2col``: nine shifted slices concatenated and one matmul;
- ``xla``: ``lax.conv_general_dilated`` with JAX's own derivatives, the form accelerators'
  convolution kernels (cuDNN, TPU) expect; on XLA:CPU its second order is 10× slower (its
  weight gradients inside loops are not in the canonical layout: ``metabayes.conv3x3``);
- ``auto`` (the default): ``xla`` on GPU and TPU, ``direct`` on CPU.
"""
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from metabayes import conv3x3

ESTIMATORS = ("weights", "local_reparam", "flipout")
LAYER_ESTIMATORS = ESTIMATORS[1:]
CONVOLUTIONS = ("auto", "direct", "im2col", "xla")


def _rademacher(key: jax.Array, shape, dtype) -> jax.Array:
    return jax.random.rademacher(key, shape, dtype=dtype)


def _linear(module: nn.Module, x: jax.Array, kernel: jax.Array, bias: jax.Array,
            *, shared_weights: bool, product: Callable = jnp.matmul) -> jax.Array:
    """product(x [B, ..., I], kernel) [B, ..., O] + bias [O] with the layer estimator in use;
    ``product`` is linear in each argument (a matmul by default, or a convolution).

    ``shared_weights`` marks a conv (the same kernel at every position), where the local
    reparameterisation trick would drop correlations, so Flipout is used instead.
    """
    kernel_std = module.get_variable("posterior_std", "kernel")
    if kernel_std is None:
        return product(x, kernel) + bias
    kernel_std = kernel_std.reshape(kernel.shape)
    bias_std = module.get_variable("posterior_std", "bias")
    mean = product(x, kernel) + bias
    if module.has_rng("local_reparam") and not shared_weights:
        variance = product(x * x, kernel_std * kernel_std) + bias_std * bias_std
        noise = jax.random.normal(module.make_rng("local_reparam"), mean.shape, mean.dtype)
        return mean + jnp.sqrt(variance + jnp.finfo(mean.dtype).tiny) * noise
    stream = next((s for s in LAYER_ESTIMATORS if module.has_rng(s)), None)
    if stream is None:
        raise ValueError("params came with 'posterior_std' but no PRNG stream named one of "
                         f"{LAYER_ESTIMATORS}; pass rngs={{estimator: key}}")
    key_w, key_b, key_in, key_out = jax.random.split(module.make_rng(stream), 4)
    delta_kernel = kernel_std * jax.random.normal(key_w, kernel.shape, kernel.dtype)
    delta_bias = bias_std * jax.random.normal(key_b, bias.shape, bias.dtype)
    sign_shape = (x.shape[0],) + (1,) * (x.ndim - 2)
    sign_in = _rademacher(key_in, sign_shape + x.shape[-1:], x.dtype)
    sign_out = _rademacher(key_out, sign_shape + mean.shape[-1:], x.dtype)
    return mean + (product(x * sign_in, delta_kernel) + delta_bias) * sign_out


def _sampled_param(module: nn.Module, name: str, value: jax.Array) -> jax.Array:
    """``value`` perturbed by its posterior σ once per forward pass (weights estimator)."""
    std = module.get_variable("posterior_std", name)
    if std is None:
        return value
    stream = next((s for s in LAYER_ESTIMATORS if module.has_rng(s)), None)
    if stream is None:
        raise ValueError(f"a 'posterior_std' collection needs a PRNG stream named one of "
                         f"{LAYER_ESTIMATORS} (rngs={{estimator: key}}) to sample {name!r}")
    return value + std * jax.random.normal(module.make_rng(stream), value.shape, value.dtype)


class Dense(nn.Module):
    """y = x W + b for x [B, I]; W [I, features], b [features]."""

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return _linear(self, x, kernel, bias, shared_weights=False)


def conv3x3_patches(x: jax.Array) -> jax.Array:
    """The 3×3 SAME neighbourhoods of x [B, H, W, C] on channels: [B, H, W, 9C], (dy, dx, c)."""
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return jnp.concatenate([padded[:, dy:dy + height, dx:dx + width, :]
                            for dy in range(3) for dx in range(3)], axis=-1)


def resolve_convolution(implementation: str) -> str:
    """``implementation`` with "auto" replaced by the platform's choice: "xla" where the
    default backend is a GPU or TPU (their convolution kernels), "direct" on CPU."""
    if implementation not in CONVOLUTIONS:
        raise ValueError(f"conv implementation must be one of {CONVOLUTIONS}, got "
                         f"{implementation!r}")
    if implementation != "auto":
        return implementation
    return "direct" if jax.default_backend() == "cpu" else "xla"


class Conv3x3(nn.Module):
    """3×3 SAME convolution, stride 1: x [B, H, W, C] -> [B, H, W, features]; kernel HWIO.

    ``implementation``: one of ``CONVOLUTIONS`` (module docstring). The same function in each;
    Flipout's signs are per input channel, except im2col's, per patch entry.
    """

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        implementation = resolve_convolution(self.implementation)
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if implementation == "im2col":
            return _linear(self, conv3x3_patches(x), kernel.reshape(-1, self.features), bias,
                           shared_weights=True)
        product = conv3x3.conv if implementation == "direct" else conv3x3.lax_conv
        return _linear(self, x, kernel, bias, shared_weights=True, product=product)


class BatchNorm(nn.Module):
    """Batch norm with statistics of the batch it is given; no running statistics.

    x [B, ..., C]. By default the mean and variance are those of the whole batch: transductive,
    as in MAML, so a query batch is normalised by its own statistics. ``statistics_rows=n``
    takes them from the first n rows only (e.g. a task's support set placed before its
    queries), so that no query influences another's prediction.
    """

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, statistics_rows: Optional[int] = None) -> jax.Array:
        scale = _sampled_param(self, "scale", self.param("scale", nn.initializers.ones, x.shape[-1:]))
        bias = _sampled_param(self, "bias", self.param("bias", nn.initializers.zeros, x.shape[-1:]))
        axes = tuple(range(x.ndim - 1))
        reference = x if statistics_rows is None else x[:statistics_rows]
        mean = jnp.mean(reference, axis=axes)
        variance = jnp.mean(jnp.square(reference - mean), axis=axes)
        return (x - mean) * jax.lax.rsqrt(variance + self.epsilon) * scale + bias


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max-pool, stride 2, floor (VALID): [B, H, W, C] -> [B, H//2, W//2, C]."""
    batch, height, width, channels = x.shape
    x = x[:, :height // 2 * 2, :width // 2 * 2, :]
    return jnp.max(x.reshape(batch, height // 2, 2, width // 2, 2, channels), axis=(2, 4))
