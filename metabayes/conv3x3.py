"""3×3 SAME convolution, stride 1, whose derivatives of every order are fast on XLA:CPU.

    y = conv(x, w):   x [B, H, W, C], w [3, 3, C, F] (HWIO) -> y [B, H, W, F]

The forward pass is ``lax.conv_general_dilated``, which XLA:CPU runs 2-4× faster than the
im2col matmul at Conv4's sizes. Its built-in derivatives are what make it slow in a meta-step:
XLA:CPU runs a convolution in its fast (Eigen) kernel only in the canonical layout, NHWC input
and HWIO kernel, and it rewrites other layouts into that one only in the program's top level
(``ConvCanonicalization`` visits the entry computation). JAX's weight gradient has another
layout, so inside a loop (the inner loop's ``scan``, the ``lax.map`` over tasks) it became a
naive loop nest: a 5-image one took 8.7 ms instead of under 1 ms. Here both derivatives are
written out, each in terms of the two functions below, always in the canonical layout, so that
differentiating them (MAML's second order, or any order) only ever produces these same two
kinds of operation:

    ∂x = conv(∂y, flip(w))                 flip(w)[i, j, f, c] = w[2 − i, 2 − j, c, f]
    ∂w = weight_gradient(x, ∂y)            ∂w[i, j] = Σ_{b,h,w} pad(x)[b, h + i, w + j]ᵀ ∂y[b, h, w]

and the weight gradient's own derivatives, for a cotangent G [3, 3, C, F]:

    ∂x = conv(∂y, flip(G)),   ∂(∂y) = conv(x, G).

The weight gradient is itself one convolution: of the images xᵀ [C, H, W, B] (C as the batch,
B as the channels), padded by one, with the kernel ∂yᵀ [H, W, B, F], whose window is the whole
image; its output [C, 3, 3, F] is ∂w's transpose.
"""
import jax
import jax.numpy as jnp

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def flip(kernel: jax.Array) -> jax.Array:
    """[3, 3, C, F] -> [3, 3, F, C], spatially reversed: the kernel of the input gradient."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def lax_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv_general_dilated``, 3×3 SAME, with JAX's own derivatives and batching."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=DIMENSIONS)


_lax_conv = jax.custom_batching.custom_vmap(lax_conv)


@_lax_conv.def_vmap
def _lax_conv_batched(axis_size, in_batched, x, kernel):
    """Under vmap: a batch of inputs against one kernel folds into the image axis; a batch of
    kernels (one per task or per sample of φ) runs one convolution per kernel in a loop, not as
    a grouped convolution, which XLA:CPU runs several times slower."""
    if not in_batched[1]:   # one kernel
        batch = x.shape[:2]
        folded = _lax_conv(x.reshape(-1, *x.shape[2:]), kernel)
        return folded.reshape(*batch, *folded.shape[1:]), True
    return _one_per_element(_lax_conv, axis_size, in_batched, x, kernel)


def _one_per_element(function, axis_size, in_batched, *args):
    """``function`` applied to each element of the batched ``args`` (the others broadcast) in a
    ``lax.map``: the batching rule of a ``custom_vmap``."""
    args = [a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))
            for a, batched in zip(args, in_batched)]
    return jax.lax.map(lambda elements: function(*elements), args), True


def lax_weight_gradient(x: jax.Array, dy: jax.Array) -> jax.Array:
    """∂⟨dy, conv(x, w)⟩/∂w as one convolution in XLA:CPU's canonical layout:
    x [B, H, W, C], dy [B, H, W, F] -> [3, 3, C, F]."""
    images = x.transpose(3, 1, 2, 0)    # [C, H, W, B]
    kernel = dy.transpose(1, 2, 0, 3)   # [H, W, B, F]
    transposed = jax.lax.conv_general_dilated(images, kernel, (1, 1), ((1, 1), (1, 1)),
                                              dimension_numbers=DIMENSIONS)   # [C, 3, 3, F]
    return transposed.transpose(1, 2, 0, 3)


_lax_weight_gradient = jax.custom_batching.custom_vmap(lax_weight_gradient)


@_lax_weight_gradient.def_vmap
def _lax_weight_gradient_batched(axis_size, in_batched, x, dy):
    """Under vmap: one weight gradient per batch element, in a loop (a batched kernel ∂yᵀ would
    make it a grouped convolution)."""
    return _one_per_element(_lax_weight_gradient, axis_size, in_batched, x, dy)


@jax.custom_vjp
def conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3×3 SAME convolution: x [B, H, W, C], kernel [3, 3, C, F] -> [B, H, W, F]."""
    return _lax_conv(x, kernel)


@jax.custom_vjp
def weight_gradient(x: jax.Array, dy: jax.Array) -> jax.Array:
    """∂⟨dy, conv(x, w)⟩/∂w: x [B, H, W, C], dy [B, H, W, F] -> [3, 3, C, F]."""
    return _lax_weight_gradient(x, dy)


# Each forward rule calls the custom function itself, not its body, so that an outer derivative
# of the primal output (reverse over reverse) also goes through these rules.
conv.defvjp(lambda x, kernel: (conv(x, kernel), (x, kernel)),
            lambda saved, dy: (conv(dy, flip(saved[1])), weight_gradient(saved[0], dy)))
weight_gradient.defvjp(lambda x, dy: (weight_gradient(x, dy), (x, dy)),
                       lambda saved, g: (conv(saved[1], flip(g)), conv(saved[0], g)))
