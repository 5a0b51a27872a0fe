"""The rows that ``benchmarks.step_time`` times, by suite: a learner, how to draw its random
meta-batch, M, and the PyTorch peer's arguments for the same configuration."""
import contextlib
from typing import Callable, ContextManager, NamedTuple, Tuple
from unittest import mock

import jax
import jax.numpy as jnp
import optax

import metabayes as mb
from metabayes import conv3x3
from metabayes.noise import NOISE_VARIABLE
from metabayes.tasks import Task
from metabayes.xla_flags import CONVOLUTIONS_OUTSIDE_YNNPACK

FUSED_NOISE = ((NOISE_VARIABLE, "fused"),)   # a row's env: ε's erf⁻¹ fused into its readers
CONVOLUTIONS_IN_YNNPACK = (("XLA_FLAGS", f"--{CONVOLUTIONS_OUTSIDE_YNNPACK[0]}=+individual_"
                            "convolution"),)   # XLA:CPU's default before metabayes.xla_flags


class Row(NamedTuple):
    name: str
    learner: mb.MetaLearner
    make_batch: object       # (key, meta_batch) -> Task
    meta_batch: int
    peer_args: Tuple[str, ...]   # ``python -m benchmarks.peers`` arguments of the same
    #                              configuration, beyond ``peer_command``'s; () for none
    env: Tuple[Tuple[str, str], ...] = ()   # environment of the row's process (XLA / JAX flags)
    traced_under: Callable[[], ContextManager] = contextlib.nullcontext   # the context its step
    #                              is traced in: an earlier formulation for a variant row


def shifted_products(x, dy):
    """∂w [3, 3, C, F] of a 3×3 convolution as nine [C, B·H·W] × [B·H·W, F] matmuls of x's
    shifted slices, x [B, H, W, C], dy [B, H, W, F]: ``metabayes.conv3x3``'s weight gradient
    before 2026-12-06. Each product is computed as its transpose where F < 9C, so that XLA:CPU
    copies dy once rather than the nine slices (its matmul takes the contracted axis last)."""
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    shifts = [padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)]
    if dy.shape[-1] < 9 * x.shape[-1]:
        products = [jnp.einsum("bhwf,bhwc->fc", dy, shifted).T for shifted in shifts]
    else:
        products = [jnp.einsum("bhwc,bhwf->cf", shifted, dy) for shifted in shifts]
    return jnp.stack(products).reshape(3, 3, *products[0].shape)


def weight_gradient_as_shifted_matmuls():
    """The context of a row whose conv weight gradients are ``shifted_products`` instead of one
    convolution each."""
    return mock.patch.object(conv3x3, "_lax_weight_gradient", shifted_products)


def omniglot_batch(key, meta_batch, ways=5, shots=1, query=15, shape=(28, 28, 1)):
    """Random images and labels shaped like an Omniglot meta-batch [M, N·K, 28, 28, 1] (or
    another image ``shape``)."""
    keys = jax.random.split(key, 2)
    labels = lambda n: jnp.tile(jnp.arange(ways), (meta_batch, n))
    images = lambda k, n: jax.random.uniform(k, (meta_batch, ways * n, *shape))
    return Task((images(keys[0], shots), labels(shots)), (images(keys[1], query), labels(query)))


def miniimagenet_batch(key, meta_batch):
    """Random images and labels shaped like a miniImageNet 5-way 1-shot meta-batch, Q = 15:
    support [M, 5, 84, 84, 3], query [M, 75, 84, 84, 3]."""
    return omniglot_batch(key, meta_batch, shape=(84, 84, 3))


def sinusoid_batch(key, meta_batch):
    from metabayes.data.sinusoid import SinusoidTasks
    return SinusoidTasks().sample(key, meta_batch)[0]


def wheel_bandit_batch(key, meta_batch):
    """Meta-training episodes of ``experiments.wheel_bandit``'s default config: supports
    [M, 5 · 102, 2] (reservoirs of play-like histories), queries [M, 50, 2]."""
    from experiments.configs.wheel_bandit import get_config
    from metabayes.bandit.episodes import sample_episodes
    c = get_config()
    return sample_episodes(key, meta_batch, per_arm=c.per_arm, num_query=c.query,
                           max_pulls=c.max_pulls, pool=c.pool)[0]


def wheel_bandit_learner(algorithm):
    """The learner that ``experiments.wheel_bandit`` meta-trains by default (MLP 100-100,
    K = 5, second order, per-point inner steps; ABML with Meta-SGD)."""
    from experiments.configs.wheel_bandit import get_config
    from experiments.wheel_bandit import bandit_learner
    return bandit_learner(get_config(), algorithm)


def rows(suite):
    """The rows of one suite."""
    conv = lambda filters=64, implementation="auto": mb.Conv4(num_classes=5, filters=filters,
                                                              conv=implementation)
    # The peers' inner lr 0.4 is for the mean cross-entropy over the N·K = 5 support images;
    # our likelihood is summed, so 0.4 / 5. β as the peers': inner_lr·β/σ_θ² ≪ 2 (MATH.md §3).
    common = dict(inner_lr=0.08, inner_steps=5, outer_optimizer=optax.adam(1e-3))
    abml = lambda samples, net=None, **kw: mb.abml(net or conv(), outer_samples=samples,
                                                   kl_weight=1e-4, init_log_sigma=-4.0, **common,
                                                   **kw)
    torch_abml = lambda samples: ("--algo", "torch_abml", "--samples", str(samples))
    if suite == "smoke":
        smoke_net = mb.Conv4(num_classes=5, filters=8, blocks=2)   # every kind of layer, fast to compile
        yield Row("abml smoke", mb.abml(smoke_net, inner_lr=1e-3, inner_steps=1), omniglot_batch, 2, ())
        return
    if suite == "variants":  # each change of issue 20 against the default, at M = 32
        before = dict(net=conv(implementation="im2col"), task_chunk=None)
        for name, learner in (("maml", lambda **kw: mb.maml(kw.pop("net", conv()), **common, **kw)),
                              ("abml S=1", lambda **kw: abml(1, **kw))):
            peer = ("--algo", "l2l_maml") if name == "maml" else torch_abml(1)
            yield Row(f"{name} M=32", learner(), omniglot_batch, 32, peer)
            yield Row(f"{name} M=32 conv=im2col", learner(net=conv(implementation="im2col")),
                      omniglot_batch, 32, ())
            yield Row(f"{name} M=32 task_chunk=None", learner(task_chunk=None), omniglot_batch,
                      32, ())
            yield Row(f"{name} M=32 before (im2col, task_chunk=None)", learner(**before),
                      omniglot_batch, 32, ())
            yield Row(f"{name} M=32 chunks save dots", learner(
                chunk_policy=jax.checkpoint_policies.dots_saveable), omniglot_batch, 32, ())
            yield Row(f"{name} M=32 weight gradient as shifted matmuls", learner(),
                      omniglot_batch, 32, (), traced_under=weight_gradient_as_shifted_matmuls)
            yield Row(f"{name} M=32 convolutions by YNNPACK", learner(), omniglot_batch, 32, (),
                      CONVOLUTIONS_IN_YNNPACK)
            yield Row(f"{name} M=32 inner loop unrolled", learner(inner_unroll=True),
                      omniglot_batch, 32, ())
        yield Row("abml S=1 M=4", abml(1), omniglot_batch, 4, torch_abml(1))   # S=5 / S=1
        yield Row("abml S=5 M=4", abml(5), omniglot_batch, 4, torch_abml(5))
        yield Row("abml S=5 M=4 conv=im2col", abml(5, net=conv(implementation="im2col")),
                  omniglot_batch, 4, ())
        yield Row("abml S=5 M=4 outer draws vmapped", abml(5, outer_draws="vmap"),
                  omniglot_batch, 4, ())
        yield Row("abml S=1 M=32 noise fused", abml(1), omniglot_batch, 32, (), FUSED_NOISE)
        yield Row("abml S=5 M=4 noise fused", abml(5), omniglot_batch, 4, (), FUSED_NOISE)
        yield Row("abml S=1 M=4 fusion emitters on", abml(1), omniglot_batch, 4, (),
                  (("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true"),))
        return
    if suite == "fewshot":   # the ABML paper's miniImageNet 5w1s: Conv4-32, K = 5, M = 4
        mini = dict(inner_lr=0.01 / 5, inner_steps=5, outer_optimizer=optax.adam(1e-3))
        yield Row("abml S=1 M=4 Conv4-32 84x84x3", mb.abml(conv(32), outer_samples=1,
                                                           kl_weight=1e-4, init_log_sigma=-4.0,
                                                           **mini), miniimagenet_batch, 4, ())
        yield Row("maml M=4 Conv4-32 84x84x3", mb.maml(conv(32), **mini), miniimagenet_batch, 4,
                  ())
        return
    if suite == "wheel_bandit":   # the meta-training step of experiments.wheel_bandit, M = 64
        yield Row("abml M=64", wheel_bandit_learner("abml"), wheel_bandit_batch, 64, ())
        yield Row("abml M=64 noise fused", wheel_bandit_learner("abml"), wheel_bandit_batch, 64,
                  (), FUSED_NOISE)
        yield Row("maml M=64", wheel_bandit_learner("maml"), wheel_bandit_batch, 64, ())
        return
    if suite == "sinusoid":
        mlp, gauss = mb.MLP(), mb.Gaussian(0.1)
        for variance in ("gradient", "fisher"):
            yield Row(f"abml {variance} M=25", mb.abml(mlp, likelihood=gauss, inner_lr=2e-5,
                                                       local_variance=variance),
                      sinusoid_batch, 25, ())
        yield Row("maml M=25", mb.maml(mlp, likelihood=gauss, inner_lr=2e-5), sinusoid_batch, 25, ())
        return
    for m in (4, 32):
        yield Row(f"abml S=1 M={m}", abml(1), omniglot_batch, m, torch_abml(1))
        yield Row(f"abml S=5 M={m}", abml(5), omniglot_batch, m, torch_abml(5))
        yield Row(f"abml FO S=1 M={m}", abml(1, first_order=True), omniglot_batch, m,
                  torch_abml(1) + ("--first_order",))
        yield Row(f"maml M={m}", mb.maml(conv(), **common), omniglot_batch, m, ("--algo", "l2l_maml"))
        yield Row(f"maml FO M={m}", mb.maml(conv(), first_order=True, **common), omniglot_batch, m,
                  ("--algo", "l2l_maml", "--first_order"))
