"""MAML (Finn et al., 2017) as PyTorch users hand-write it: a Python loop over the tasks of a
meta-batch, fast weights from ``torch.autograd.grad(create_graph=True)``, one backward per task.

Per task i with support (xs, ys) and query (xq, yq):

    θ_0 = θ,   θ_{k+1} = θ_k − α ∇_θ_k CE(f(xs; θ_k), ys)      (k < K inner steps)
    L_i(θ) = CE(f(xq; θ_K), yq)

and the meta-loss is mean_i L_i, differentiated through the inner steps (second order) or with
each inner gradient held constant (``first_order``). CE is the mean cross-entropy over the set.
"""
from typing import Callable, List, Tuple

from benchmarks.peers import require_torch

require_torch()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.peers.conv4 import Params, conv4  # noqa: E402
from benchmarks.peers.data import MetaBatch  # noqa: E402


class TorchMAML:
    """The ``torch_maml`` peer: meta-parameters θ (a dict of leaf tensors) and the meta-gradient.

    ``params``: initial θ (copied); ``net(params, x [B, 1, 28, 28]) -> logits [B, N]``.
    """

    name = "torch_maml"

    def __init__(self, params: Params, inner_lr: float, inner_steps: int,
                 first_order: bool = False, net: Callable = conv4):
        self.params = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
        self.inner_lr, self.inner_steps = inner_lr, inner_steps
        self.first_order, self.net = first_order, net

    def parameters(self) -> List[torch.Tensor]:
        return list(self.params.values())

    def adapt(self, x: torch.Tensor, y: torch.Tensor) -> Params:
        """θ_K from θ by K SGD steps on the support set x [N·K, 1, 28, 28], y [N·K]."""
        fast = self.params
        for _ in range(self.inner_steps):
            loss = F.cross_entropy(self.net(fast, x), y)
            grads = torch.autograd.grad(loss, list(fast.values()),
                                        create_graph=not self.first_order)
            fast = {n: w - self.inner_lr * g for (n, w), g in zip(fast.items(), grads)}
        return fast

    def meta_gradient(self, batch: MetaBatch) -> Tuple[float, float]:
        """Add d(meta-loss)/dθ to each parameter's ``.grad``, task by task (each task's graph is
        freed by its backward); return (meta-loss, query NLL), the same number for MAML."""
        total = 0.0
        for i in range(batch.tasks):
            task = batch.task(i)
            loss = F.cross_entropy(self.net(self.adapt(task.support_x, task.support_y),
                                            task.query_x), task.query_y)
            (loss / batch.tasks).backward()
            total += loss.item()
        return total / batch.tasks, total / batch.tasks
