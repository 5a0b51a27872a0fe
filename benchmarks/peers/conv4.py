"""The few-shot Conv4 as a pure function of a flat parameter dict: ``logits = conv4(params, x)``.

    x [B, 1, 28, 28] -> 4 x [conv3x3 (64, padding 1) -> batch norm -> ReLU -> 2x2 max-pool]
      (28 -> 14 -> 7 -> 3 -> 1, floor pooling) -> flatten [B, 64] -> linear -> logits [B, N]

the network of ``metabayes.Conv4`` (its ``max_pool_2x2`` floors too), of Vinyals et al. (2016)
and of learn2learn's ``CNN4(max_pool=True)``. Batch norm always normalises with the statistics
of the batch it is given (no running averages), as in MAML. Every parameter is an entry of one
dict, so MAML's fast weights and ABML's sampled weights are plain dicts of tensors.
"""
from typing import Callable, Dict

from benchmarks.peers import require_torch

require_torch()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

Params = Dict[str, torch.Tensor]
BN_EPS = 1e-5


def max_pool(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool, stride 2, floor: [B, C, H, W] -> [B, C, H // 2, W // 2]."""
    return F.max_pool2d(x, 2)


def init_params(ways: int, hidden: int = 64, blocks: int = 4, channels: int = 1,
                size: int = 28, dtype: torch.dtype = None) -> Params:
    """Fresh Conv4 parameters, initialised as learn2learn initialises its CNN4, drawn from
    torch's global generator (seed it with ``torch.manual_seed``).

    Per block b: ``block{b}.conv.weight`` [hidden, in, 3, 3] Xavier-uniform, ``.conv.bias``
    [hidden] zero, ``block{b}.norm.weight`` [hidden] uniform(0, 1), ``.norm.bias`` [hidden]
    zero; then ``head.weight`` [ways, hidden·s²] Xavier-uniform (s = size halved ``blocks``
    times, floored: 1 for 28 and 4 blocks) and ``head.bias`` [ways] zero. Insertion order is
    this order; the peers draw ABML's noise in it.
    """
    params, side = {}, size
    for b in range(blocks):
        weight = torch.empty(hidden, channels if b == 0 else hidden, 3, 3, dtype=dtype)
        params[f"block{b}.conv.weight"] = torch.nn.init.xavier_uniform_(weight)
        params[f"block{b}.conv.bias"] = torch.zeros(hidden, dtype=dtype)
        params[f"block{b}.norm.weight"] = torch.rand(hidden, dtype=dtype)
        params[f"block{b}.norm.bias"] = torch.zeros(hidden, dtype=dtype)
        side //= 2
    head = torch.empty(ways, hidden * side * side, dtype=dtype)
    params["head.weight"] = torch.nn.init.xavier_uniform_(head)
    params["head.bias"] = torch.zeros(ways, dtype=dtype)
    return params


def conv4(params: Params, x: torch.Tensor,
          activation: Callable[[torch.Tensor], torch.Tensor] = F.relu,
          pool: Callable[[torch.Tensor], torch.Tensor] = max_pool) -> torch.Tensor:
    """Logits [B, N] of images x [B, C, H, W] under ``params`` (``init_params``'s keys).

    ``activation`` and ``pool`` default to ReLU and floor max-pool; the gradient checks swap in
    smooth ones (the meta-gradient of a piecewise-linear net jumps where a unit changes side).
    """
    blocks = (len(params) - 2) // 4
    for b in range(blocks):
        x = F.conv2d(x, params[f"block{b}.conv.weight"], params[f"block{b}.conv.bias"], padding=1)
        x = F.batch_norm(x, None, None, params[f"block{b}.norm.weight"],
                         params[f"block{b}.norm.bias"], training=True, eps=BN_EPS)
        x = pool(activation(x))
    return F.linear(x.flatten(1), params["head.weight"], params["head.bias"])
