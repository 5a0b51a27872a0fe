"""3×3 SAME convolution, stride 1, whose derivatives of every order are fast on XLA:CPU.

    y = conv(x, w):   x [B, H, W, C], w [3, 3, C, F] (HWIO) -> y [B, H, W, F]

The forward pass is ``lax.conv_general_dilated``, which XLA:CPU runs 2-4× faster than the
im2col matmul at Conv4's sizes. Its built-in derivatives are what make it slow in a meta-step:
the weight gradient is a convolution whose window is the whole image, and second-order terms
transpose that again. Here both derivatives are written out, each in terms of the two functions
below, so that differentiating them (MAML's second order, or any order) only ever produces
these same two kinds of operation:

    ∂x = conv(∂y, flip(w))                 flip(w)[i, j, f, c] = w[2 − i, 2 − j, c, f]
    ∂w = weight_gradient(x, ∂y)            ∂w[i, j] = Σ_{b,h,w} pad(x)[b, h + i, w + j]ᵀ ∂y[b, h, w]

and the weight gradient's own derivatives, for a cotangent G [3, 3, C, F]:

    ∂x = conv(∂y, flip(G)),   ∂(∂y) = conv(x, G).

The weight gradient is nine [C, B·H·W] × [B·H·W, F] matmuls of shifted slices, each computed
as its transpose where that copies less (``transposes_dy``).
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
    x_batched, kernel_batched = in_batched
    if not kernel_batched:
        batch = x.shape[:2]
        folded = _lax_conv(x.reshape(-1, *x.shape[2:]), kernel)
        return folded.reshape(*batch, *folded.shape[1:]), True
    if not x_batched:
        x = jnp.broadcast_to(x, (axis_size, *x.shape))
    return jax.lax.map(lambda pair: _lax_conv(*pair), (x, kernel)), True


def transposes_dy(channels: int, features: int) -> bool:
    """Which operand of the weight gradient's matmuls XLA:CPU copies transposed: its matmul
    (YNNPACK) takes the contracted B·H·W axis last in the left operand, so it copies either x's
    nine shifted slices [B·H·W, C] or dy [B·H·W, F] once (the nine copies of dy are one). True:
    dy, where F < 9C (every block of Conv4-64 but the first, whose C = 1)."""
    return features < 9 * channels


def _shifted_products(x: jax.Array, dy: jax.Array) -> jax.Array:
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    shifts = [padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)]
    if transposes_dy(x.shape[-1], dy.shape[-1]):
        products = [jnp.einsum("bhwf,bhwc->fc", dy, shifted).T for shifted in shifts]
    else:
        products = [jnp.einsum("bhwc,bhwf->cf", shifted, dy) for shifted in shifts]
    return jnp.stack(products).reshape(3, 3, *products[0].shape)


@jax.custom_vjp
def conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3×3 SAME convolution: x [B, H, W, C], kernel [3, 3, C, F] -> [B, H, W, F]."""
    return _lax_conv(x, kernel)


@jax.custom_vjp
def weight_gradient(x: jax.Array, dy: jax.Array) -> jax.Array:
    """∂⟨dy, conv(x, w)⟩/∂w: x [B, H, W, C], dy [B, H, W, F] -> [3, 3, C, F]."""
    return _shifted_products(x, dy)


# Each forward rule calls the custom function itself, not its body, so that an outer derivative
# of the primal output (reverse over reverse) also goes through these rules.
conv.defvjp(lambda x, kernel: (conv(x, kernel), (x, kernel)),
            lambda saved, dy: (conv(dy, flip(saved[1])), weight_gradient(saved[0], dy)))
weight_gradient.defvjp(lambda x, dy: (weight_gradient(x, dy), (x, dy)),
                       lambda saved, g: (conv(saved[1], flip(g)), conv(saved[0], g)))
