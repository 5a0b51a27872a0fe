r"""Conv4's 3×3 convolutions one kernel at a time, ours beside PyTorch's: where the meta-step's
remaining time against the peers goes (issue 20).

    python -m benchmarks.conv_kernels --peer_python=.venv-peer/bin/python \
        --out=benchmarks/results/conv_kernels.json

For each input that a Conv4-64 meta-step on Omniglot 5-way 1-shot (Q = 15) convolves, the 5
support and the 75 query images at each block's input size, times the three kernels of a
convolution's forward and backward pass: the forward pass, the input gradient and the weight
gradient. Ours are ``metabayes.conv3x3``'s (the CPU default, ``conv="direct"``), each jitted
alone (the weight gradient is ``conv3x3.weight_gradient``, the input gradient the convolution
with the flipped kernel, as the meta-step runs them). The peer's are PyTorch's
(``benchmarks.peers.conv_kernels``: ``F.conv2d`` and ``convolution_backward``, oneDNN on CPU),
in the peers' environment, in a fresh process after ours. Each time is the median of
``--repeats`` calls. Prints milliseconds and the ratio ours / peer per kernel, writes JSON.
"""
import json
import os
import statistics
import time

import jax
from absl import flags

from benchmarks.step_time import resolve_peer_python, run_json
from experiments.cli import define_number_list, run, write_json
from metabayes import conv3x3

KERNELS = ("forward", "input_gradient", "weight_gradient")
BLOCK_INPUTS = ((28, 1), (14, 64), (7, 64), (3, 64))   # Conv4 on 28×28×1: (H = W, C) per block


def shapes(batch_sizes, filters: int):
    """[B, H, C, F] of every block's convolution at each batch size."""
    return [[batch, size, channels if channels == 1 else filters, filters]
            for batch in batch_sizes for size, channels in BLOCK_INPUTS]


def median_seconds(function, *args, repeats: int) -> float:
    compiled = jax.jit(function).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_ours(batch: int, size: int, channels: int, features: int, repeats: int) -> dict:
    """Seconds of ``conv3x3.conv`` and of each half of its VJP (x [B, H, H, C], kernel
    [3, 3, C, F]); the half not asked for is dead code that XLA removes."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (batch, size, size, channels))
    kernel = jax.random.normal(keys[1], (3, 3, channels, features))
    dy = jax.random.normal(keys[2], (batch, size, size, features))
    gradient = lambda which: lambda x, kernel, dy: jax.vjp(conv3x3.conv, x, kernel)[1](dy)[which]
    return {"forward_s": median_seconds(conv3x3.conv, x, kernel, repeats=repeats),
            "input_gradient_s": median_seconds(gradient(0), x, kernel, dy, repeats=repeats),
            "weight_gradient_s": median_seconds(gradient(1), x, kernel, dy, repeats=repeats)}


def time_peer(peer_python: str, kernel_shapes, repeats: int) -> dict:
    return run_json([peer_python, "-m", "benchmarks.peers.conv_kernels",
                     f"--shapes={json.dumps(kernel_shapes)}", f"--repeats={repeats}",
                     f"--threads={os.cpu_count()}"])


def format_table(rows) -> str:
    """ms ours / peer (ratio) for each kernel, one line per input shape."""
    lines = ["| x [B, H, W, C] → F | GFLOP | " + " | ".join(
                 f"{k.replace('_', ' ')} ms, ours / peer" for k in KERNELS) + " |",
             "|---" * (2 + len(KERNELS)) + "|"]
    for row in rows:
        batch, size, channels, features = row["shape"]
        cells = []
        for kernel in KERNELS:
            ours = row["ours"][f"{kernel}_s"] * 1e3
            peer = row["peer"].get(f"{kernel}_s")
            cells.append(f"{ours:.2f}" if peer is None
                         else f"{ours:.2f} / {peer * 1e3:.2f} (**{ours / (peer * 1e3):.2f}×**)")
        lines.append(f"| [{batch}, {size}, {size}, {channels}] → {features} | "
                     f"{row['flops'] / 1e9:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    peer_python = resolve_peer_python(_PEER_PYTHON.value)
    kernel_shapes = shapes(_BATCH_SIZES.value, _FILTERS.value)
    rows = [{"shape": shape, "flops": 2 * shape[0] * shape[1] ** 2 * 9 * shape[2] * shape[3],
             "ours": time_ours(*shape, _REPEATS.value), "peer": {}} for shape in kernel_shapes]
    peer = time_peer(peer_python, kernel_shapes, _REPEATS.value) if peer_python else {}
    for row, kernels in zip(rows, peer.get("kernels", [])):
        row["peer"] = {k: v for k, v in kernels.items() if k != "shape"}
    print(format_table(rows))
    write_json(_OUT.value, {"jax": jax.__version__, "torch": peer.get("torch"),
                            "cpu_count": os.cpu_count(), "repeats": _REPEATS.value, "rows": rows})


if __name__ == "__main__":
    _BATCH_SIZES = define_number_list("batch_sizes", [5, 75], "Images per convolution: a "
                                      "task's support and query sets.", lower_bound=1)
    flags.register_validator("batch_sizes", bool, "--batch_sizes must name at least one size")
    _FILTERS = flags.DEFINE_integer("filters", 64, "Conv4's features per block.", lower_bound=1)
    _REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per kernel (the median is kept).",
                                    lower_bound=1)
    _PEER_PYTHON = flags.DEFINE_string("peer_python", "", "Python of the PyTorch peers' "
                                       "virtualenv (benchmarks/setup_peers.sh); empty: ours only.")
    _OUT = flags.DEFINE_string("out", "", "Where to write the JSON (none if empty).")
    run(main)
