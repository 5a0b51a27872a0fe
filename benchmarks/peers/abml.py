"""ABML (Ravi & Beatson, ICLR 2019) as a PyTorch loop over tasks, the way ``maml.TorchMAML`` is.

Every network weight w has a mean-field Gaussian; ρ = log σ throughout.

* Global θ = (μ_θ, ρ_θ), the prior p(w | θ) = N(μ_θ, e^{2ρ_θ}), meta-learned.
* Task i: λ = (μ, ρ) starts at θ and takes K SGD steps (step α) on the local negative ELBO

      ℓ(λ) = CE(f(xs; w), ys) + β KL(q_λ ‖ p_θ),    w = μ + e^ρ ⊙ ε, ε ~ N(0, I) (one draw),

  differentiated through (second order) or not (``first_order``), giving λ_i.
* Meta-loss: mean_i [ (1/S) Σ_s CE(f(xq; w_s), yq) + β KL(q_λ_i ‖ p_θ) ] + γ (−log p(θ)),
  w_s drawn from q_λ_i; hyperprior μ_θ ~ N(0, 1), τ = e^{−2ρ_θ} ~ Gamma(a0, b0), MAP in τ:
  −log p(θ) = Σ ½ μ_θ² + 2 (a0 − 1) ρ_θ + b0 e^{−2ρ_θ} (constants dropped).

CE is the mean over the set's examples, so β plays 1/N of a per-example ELBO; γ defaults to β/M
(M tasks). The inner loop is stable while α β e^{−2ρ_θ} < 2 (the KL's curvature in μ).
"""
from typing import Callable, List, Optional, Tuple

from benchmarks.peers import require_torch

require_torch()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.peers.conv4 import Params, conv4  # noqa: E402
from benchmarks.peers.data import MetaBatch  # noqa: E402


def sample_weights(mean: Params, log_sigma: Params) -> Params:
    """w = μ + e^ρ ⊙ ε, one fresh ε per tensor in the dicts' order (reparameterised)."""
    return {n: m + torch.exp(log_sigma[n]) * torch.randn_like(m) for n, m in mean.items()}


def gaussian_kl(mean_q: Params, log_sigma_q: Params, mean_p: Params, log_sigma_p: Params
                ) -> torch.Tensor:
    """KL(N(μ_q, e^{2ρ_q}) ‖ N(μ_p, e^{2ρ_p})) summed over every weight: a scalar."""
    total = 0.0
    for n in mean_q:
        numerator = torch.exp(2 * log_sigma_q[n]) + (mean_q[n] - mean_p[n]) ** 2
        total = total + (log_sigma_p[n] - log_sigma_q[n]
                         + numerator / (2 * torch.exp(2 * log_sigma_p[n])) - 0.5).sum()
    return total


def neg_log_hyperprior(mean: Params, log_sigma: Params, a0: float, b0: float) -> torch.Tensor:
    """−log N(μ; 0, 1) − log Gamma(e^{−2ρ}; a0, b0) summed over every weight, constants dropped."""
    total = 0.0
    for n in mean:
        total = total + (0.5 * mean[n] ** 2 + 2 * (a0 - 1) * log_sigma[n]
                         + b0 * torch.exp(-2 * log_sigma[n])).sum()
    return total


class TorchABML:
    """The ``torch_abml`` peer: θ = (μ_θ, ρ_θ) as two dicts of leaf tensors, and the meta-gradient.

    ``params``: initial μ_θ (copied); ρ_θ starts at ``log_sigma_init`` everywhere. ``samples``:
    S, the outer loss's draws; ``kl_weight``: β; ``hyper_weight``: γ (None: β / M).
    """

    name = "torch_abml"

    def __init__(self, params: Params, inner_lr: float, inner_steps: int,
                 first_order: bool = False, samples: int = 1, kl_weight: float = 1e-4,
                 hyper_weight: Optional[float] = None, log_sigma_init: float = -4.0,
                 a0: float = 1.0, b0: float = 0.01, net: Callable = conv4):
        self.mean = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
        self.log_sigma = {n: torch.full_like(p, log_sigma_init).requires_grad_()
                          for n, p in params.items()}
        self.inner_lr, self.inner_steps, self.first_order = inner_lr, inner_steps, first_order
        self.samples, self.kl_weight, self.hyper_weight = samples, kl_weight, hyper_weight
        self.a0, self.b0, self.net = a0, b0, net

    def parameters(self) -> List[torch.Tensor]:
        return list(self.mean.values()) + list(self.log_sigma.values())

    def local_neg_elbo(self, mean: Params, log_sigma: Params, x: torch.Tensor, y: torch.Tensor
                       ) -> torch.Tensor:
        """ℓ(λ) on x [B, 1, 28, 28], y [B], one weight draw, KL to the prior p_θ."""
        ce = F.cross_entropy(self.net(sample_weights(mean, log_sigma), x), y)
        return ce + self.kl_weight * gaussian_kl(mean, log_sigma, self.mean, self.log_sigma)

    def adapt(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[Params, Params]:
        """λ_i = (μ, ρ) after K SGD steps on ℓ from λ = θ, on the support set x, y."""
        mean, log_sigma = self.mean, self.log_sigma
        for _ in range(self.inner_steps):
            leaves = list(mean.values()) + list(log_sigma.values())
            grads = torch.autograd.grad(self.local_neg_elbo(mean, log_sigma, x, y), leaves,
                                        create_graph=not self.first_order)
            grad_mean, grad_log_sigma = grads[:len(mean)], grads[len(mean):]
            mean = {n: w - self.inner_lr * g for (n, w), g in zip(mean.items(), grad_mean)}
            log_sigma = {n: w - self.inner_lr * g
                         for (n, w), g in zip(log_sigma.items(), grad_log_sigma)}
        return mean, log_sigma

    def task_loss(self, task: MetaBatch) -> Tuple[torch.Tensor, torch.Tensor]:
        """(outer loss, query NLL) of one task: scalars, differentiable in θ."""
        mean, log_sigma = self.adapt(task.support_x, task.support_y)
        nll = sum(F.cross_entropy(self.net(sample_weights(mean, log_sigma), task.query_x),
                                  task.query_y) for _ in range(self.samples)) / self.samples
        kl = gaussian_kl(mean, log_sigma, self.mean, self.log_sigma)
        return nll + self.kl_weight * kl, nll

    def meta_gradient(self, batch: MetaBatch) -> Tuple[float, float]:
        """Add d(meta-loss)/dθ to each parameter's ``.grad`` (one backward per task, then the
        hyperprior's); return (meta-loss, mean query NLL)."""
        total = nll_total = 0.0
        for i in range(batch.tasks):
            loss, nll = self.task_loss(batch.task(i))
            (loss / batch.tasks).backward()
            total += loss.item()
            nll_total += nll.item()
        gamma = self.kl_weight / batch.tasks if self.hyper_weight is None else self.hyper_weight
        hyper = gamma * neg_log_hyperprior(self.mean, self.log_sigma, self.a0, self.b0)
        hyper.backward()
        return total / batch.tasks + hyper.item(), nll_total / batch.tasks
