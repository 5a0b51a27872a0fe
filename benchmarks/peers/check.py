"""Correctness checks of the peers, in float64 on tiny tasks (seconds on 2 cores):

1. ``torch_maml`` and learn2learn's MAML give the same meta-loss and meta-gradient from the
   same weights and tasks (second and first order; skipped without learn2learn);
2. ``torch_abml`` with σ_θ → 0 and β = γ = 0 is MAML: its meta-gradient in μ_θ is
   ``torch_maml``'s (second and first order);
3. the second-order meta-gradients of ``torch_maml`` and ``torch_abml`` (noise seeded, KL and
   hyperprior on) match central finite differences of the meta-loss along a random direction,
   on a smooth twin of Conv4 (GELU, average pooling): with ReLU and max-pool the inner gradient
   jumps wherever a unit changes side, and so does the meta-loss.

    .venv-peer/bin/python -m benchmarks.peers.check   # PASS / FAIL lines; exit status 1 on a FAIL
"""
import functools
import importlib.util
import sys
from typing import Callable, List, Tuple

from benchmarks.peers import require_torch

require_torch()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.peers.abml import TorchABML  # noqa: E402
from benchmarks.peers.conv4 import conv4, init_params  # noqa: E402
from benchmarks.peers.data import MetaBatch, random_meta_batch  # noqa: E402
from benchmarks.peers.maml import TorchMAML  # noqa: E402

WAYS, TASKS, QUERY, HIDDEN = 5, 2, 2, 8   # 8 filters: float64 convolutions are slow
smooth_conv4 = functools.partial(conv4, activation=F.gelu, pool=lambda x: F.avg_pool2d(x, 2))


def tiny_batch(seed: int) -> MetaBatch:
    """2 tasks of 5-way 1-shot, 2 queries per class, float64 images [2, 5 or 10, 1, 28, 28]."""
    return random_meta_batch(TASKS, WAYS, 1, QUERY, torch.Generator().manual_seed(seed),
                             dtype=torch.float64)


def weights(seed: int = 0):
    torch.manual_seed(seed)
    return init_params(WAYS, hidden=HIDDEN, dtype=torch.float64)


def loss_and_grads(peer, batch: MetaBatch, noise_seed: int = 123) -> Tuple[float, List]:
    """The meta-loss and a copy of the meta-gradient, from zeroed gradients and seeded noise."""
    for p in peer.parameters():
        p.grad = None
    torch.manual_seed(noise_seed)
    loss = peer.meta_gradient(batch)[0]
    return loss, [p.grad.clone() for p in peer.parameters()]


def relative_error(grads: List, reference: List) -> float:
    """max |g − g_ref| / max |g_ref| over all tensors."""
    scale = max(r.abs().max().item() for r in reference)
    return max((g - r).abs().max().item() for g, r in zip(grads, reference, strict=True)) / scale


def check_maml_matches_learn2learn(first_order: bool) -> Tuple[bool, str]:
    from benchmarks.peers.l2l import Learn2LearnMAML
    batch, params = tiny_batch(1), weights()
    ours = TorchMAML(params, 0.4, 2, first_order)
    theirs = Learn2LearnMAML(WAYS, 0.4, 2, first_order, hidden=HIDDEN)
    theirs.model.double()
    theirs.load_conv4(params)
    loss, grads = loss_and_grads(ours, batch)
    for p in theirs.parameters():
        p.grad = None
    loss_l2l = theirs.meta_gradient(batch)[0]
    l2l_grads = theirs.conv4_grads()
    error = relative_error([l2l_grads[n] for n in ours.params], grads)
    return (abs(loss - loss_l2l) < 1e-10 and error < 1e-8,
            f"|Δloss| = {abs(loss - loss_l2l):.1e}, gradient relative error {error:.1e}")


def check_abml_without_noise_is_maml(first_order: bool) -> Tuple[bool, str]:
    batch, params = tiny_batch(2), weights()
    maml = TorchMAML(params, 0.1, 2, first_order)
    abml = TorchABML(params, 0.1, 2, first_order, kl_weight=0.0, hyper_weight=0.0,
                     log_sigma_init=-30.0)
    loss_maml, grads_maml = loss_and_grads(maml, batch)
    loss_abml, grads_abml = loss_and_grads(abml, batch)
    error = relative_error(grads_abml[:len(grads_maml)], grads_maml)
    return (abs(loss_abml - loss_maml) < 1e-9 and error < 1e-7,
            f"loss {loss_abml:.8f} vs {loss_maml:.8f}, μ-gradient relative error {error:.1e}")


def check_finite_differences(make_peer: Callable) -> Tuple[bool, str]:
    batch, peer = tiny_batch(3), make_peer(weights())
    _, grads = loss_and_grads(peer, batch)
    generator = torch.Generator().manual_seed(7)
    direction = [torch.randn(p.shape, generator=generator, dtype=p.dtype)
                 for p in peer.parameters()]
    h = 1e-5

    def loss_at(t: float) -> float:   # the meta-loss at θ + t·direction (θ restored after)
        with torch.no_grad():
            for p, d in zip(peer.parameters(), direction):
                p.add_(t * d)
        loss = loss_and_grads(peer, batch)[0]
        with torch.no_grad():
            for p, d in zip(peer.parameters(), direction):
                p.sub_(t * d)
        return loss

    numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
    analytic = sum((g * d).sum().item() for g, d in zip(grads, direction))
    error = abs(numeric - analytic) / max(abs(numeric), 1e-12)
    return error < 1e-5, (f"directional derivative {analytic:.8f}, finite differences "
                          f"{numeric:.8f}, relative error {error:.1e}")


CHECKS = [
    ("torch_abml, σ → 0, β = 0 == torch_maml [second order]",
     functools.partial(check_abml_without_noise_is_maml, False)),
    ("torch_abml, σ → 0, β = 0 == torch_maml [first order]",
     functools.partial(check_abml_without_noise_is_maml, True)),
    ("torch_maml meta-gradient == finite differences",
     functools.partial(check_finite_differences,
                       lambda w: TorchMAML(w, 0.4, 2, net=smooth_conv4))),
    ("torch_abml meta-gradient == finite differences",
     functools.partial(check_finite_differences,
                       lambda w: TorchABML(w, 0.1, 2, kl_weight=1e-3, log_sigma_init=-3.0,
                                           samples=2, net=smooth_conv4))),
]
if importlib.util.find_spec("learn2learn") is not None:
    CHECKS = [(f"torch_maml == learn2learn MAML [{order} order]",
               functools.partial(check_maml_matches_learn2learn, order == "first"))
              for order in ("second", "first")] + CHECKS


def main() -> int:
    torch.set_num_threads(2)
    if importlib.util.find_spec("learn2learn") is None:
        print("SKIP torch_maml == learn2learn MAML: learn2learn is not installed")
    failed = 0
    for name, check in CHECKS:
        ok, detail = check()
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
