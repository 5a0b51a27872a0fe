"""Time one peer: ``python -m benchmarks.peers --algo ALGO [options]`` (``options.py``).

Runs ``--warmup`` then ``--steps`` meta-steps (zero the gradients, the peer's meta-gradient,
one Adam step), each on a fresh random meta-batch drawn (on the CPU, then moved to ``--device``)
before its clock starts, logs each step on stderr and prints one JSON line on stdout: ``algo``,
``config``, ``median_s`` / ``min_s`` / ``max_s`` / ``mean_s`` and ``times_s`` per timed step,
``peak_rss_mb`` (the process's maximum resident set), ``peak_device_mb`` (on CUDA, the most
memory torch's allocator held; else null), ``meta_params`` (their count), the losses of the
first and last steps, versions.

On CUDA a step's clock stops after ``torch.cuda.synchronize()``, and cuDNN picks its fastest
convolution for the fixed shapes (``torch.backends.cudnn.benchmark``), as a PyTorch user timing
a fixed-shape loop would set it.
"""
import json
import os
import platform
import statistics
import sys
import time
from typing import Tuple

from benchmarks.memory import peak_rss_bytes
from benchmarks.peers import require_torch
from benchmarks.peers.options import parse_args

require_torch()
import torch  # noqa: E402

from benchmarks.peers.abml import TorchABML  # noqa: E402
from benchmarks.peers.conv4 import init_params  # noqa: E402
from benchmarks.peers.data import MetaBatch, random_meta_batch  # noqa: E402
from benchmarks.peers.maml import TorchMAML  # noqa: E402

ABML_OPTIONS = ("samples", "kl_weight", "hyper_weight", "log_sigma_init", "a0", "b0")


def build(args):
    """The peer ``args.algo`` names on ``args.device``, its weights drawn on the CPU after
    ``torch.manual_seed(args.seed)`` (the same weights on every device)."""
    torch.manual_seed(args.seed)
    if args.algo == "l2l_maml":
        from benchmarks.peers.l2l import Learn2LearnMAML
        return Learn2LearnMAML(args.ways, args.inner_lr, args.inner_steps, args.first_order,
                               device=args.device)
    params = {name: p.to(args.device) for name, p in init_params(args.ways).items()}
    if args.algo == "torch_maml":
        return TorchMAML(params, args.inner_lr, args.inner_steps, args.first_order)
    return TorchABML(params, args.inner_lr, args.inner_steps, args.first_order,
                     **{name: getattr(args, name) for name in ABML_OPTIONS})


def meta_step(peer, optimizer: torch.optim.Optimizer, batch: MetaBatch) -> Tuple[float, float]:
    """One meta-training step, what is timed: zero the gradients, the peer's meta-gradient, one
    optimizer step. Returns (meta-loss, query NLL)."""
    optimizer.zero_grad()
    loss, nll = peer.meta_gradient(batch)
    optimizer.step()
    return loss, nll


def meta_batches(args):
    """The run's endless stream of random meta-batches (``data.random_meta_batch``), drawn on
    the CPU (the same batches on every device) and moved to ``args.device``."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    while True:
        batch = random_meta_batch(args.meta_batch, args.ways, args.shots, args.query, generator)
        yield MetaBatch(*(tensor.to(args.device) for tensor in batch))


def synchronize(device: str) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously; the CPU does not)."""
    if device == "cuda":
        torch.cuda.synchronize()


def check_device(device: str) -> None:
    """Stop with one line if ``--device`` names a device torch cannot use."""
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device=cuda: torch {torch.__version__} sees no CUDA device (a CPU build, "
                 "or no GPU here); use --device=cpu")


def time_steps(peer, args) -> dict:
    """Seconds and losses of ``args.warmup + args.steps`` meta-steps of ``peer`` under Adam."""
    optimizer = torch.optim.Adam(peer.parameters(), args.meta_lr)
    batches = meta_batches(args)
    times, losses, nlls = [], [], []
    for step in range(args.warmup + args.steps):
        batch = next(batches)
        synchronize(args.device)
        start = time.perf_counter()
        loss, nll = meta_step(peer, optimizer, batch)
        synchronize(args.device)
        seconds = time.perf_counter() - start
        losses.append(loss)
        nlls.append(nll)
        if step >= args.warmup:
            times.append(seconds)
        print(f"step {step:4d} loss {loss:.4f} query_nll {nll:.4f} time {seconds:.3f}s",
              file=sys.stderr)
    return {"times": times, "losses": losses, "nlls": nlls}


def main(argv=None):
    args = parse_args(argv)
    check_device(args.device)
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.device == "cuda"
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    peer = build(args)
    run = time_steps(peer, args)
    times, losses, nlls = run["times"], run["losses"], run["nlls"]
    versions = {"torch": torch.__version__}
    if args.device == "cuda":
        versions.update(cuda=torch.version.cuda, gpu=torch.cuda.get_device_name())
    if args.algo == "l2l_maml":
        versions.update(learn2learn=peer.version,
                        torchvision_placeholder=peer.torchvision_placeholder)
    config = {k: v for k, v in vars(args).items()
              if k not in ("algo", "steps", "warmup", "seed")
              and (args.algo == "torch_abml" or k not in ABML_OPTIONS)}
    k = max(1, min(5, len(losses) // 4))   # first / last k steps, warm-up included
    mean = lambda values: sum(values) / len(values) if values else None
    print(json.dumps({
        "peer": "pytorch", "algo": args.algo, "config": config,
        "steps": args.steps, "warmup": args.warmup,
        "median_s": statistics.median(times) if times else None,
        "min_s": min(times, default=None), "max_s": max(times, default=None),
        "mean_s": mean(times), "times_s": [round(t, 4) for t in times],
        "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
        "peak_device_mb": (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                           if args.device == "cuda" else None),
        "meta_params": sum(p.numel() for p in peer.parameters()),
        "loss_first": mean(losses[:k]), "loss_last": mean(losses[-k:]),
        "query_nll_first": mean(nlls[:k]), "query_nll_last": mean(nlls[-k:]),
        "query_nll_per_step": [round(v, 4) for v in nlls],
        "versions": versions, "python": platform.python_version(), "nproc": os.cpu_count(),
    }))
