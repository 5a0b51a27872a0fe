"""The peers' 3×3 convolution kernels, one at a time: PyTorch's (oneDNN on CPU) forward pass,
input gradient and weight gradient of Conv4's convolutions, the counterpart of
``benchmarks.conv_kernels``' JAX side.

    .venv-peer/bin/python -m benchmarks.peers.conv_kernels --shapes='[[75, 14, 64, 64]]'

Each shape is [B, H (= W), C, F]: x [B, C, H, W] (NCHW, as the peers' Conv4 holds it), weight
[F, C, 3, 3], padding 1. Prints one JSON line: {"threads", "torch", "kernels": [{"shape",
"forward_s", "input_gradient_s", "weight_gradient_s"}]}, each the median of ``--repeats``
timed calls after two untimed ones.
"""
import argparse
import json
import os
import statistics
import time

from benchmarks.peers import require_torch

require_torch()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def median_seconds(function, repeats: int) -> float:
    for _ in range(2):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_kernels(batch: int, size: int, channels: int, features: int, repeats: int) -> dict:
    """Seconds of conv2d and of each half of its backward pass (``convolution_backward`` with
    one output mask each, as autograd calls it for a conv whose input or weight needs a
    gradient)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=generator)
    weight = torch.randn(features, channels, 3, 3, generator=generator)
    dy = torch.randn(batch, features, size, size, generator=generator)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(
            dy, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

    with torch.no_grad():
        return {"shape": [batch, size, channels, features],
                "forward_s": median_seconds(lambda: F.conv2d(x, weight, padding=1), repeats),
                "input_gradient_s": median_seconds(backward([True, False, False]), repeats),
                "weight_gradient_s": median_seconds(backward([False, True, False]), repeats)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.conv_kernels",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", required=True,
                        help="JSON list of [B, H, C, F], e.g. '[[75, 14, 64, 64]]'")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    try:
        shapes = json.loads(args.shapes)
    except json.JSONDecodeError:
        shapes = None
    if not (isinstance(shapes, list) and shapes and all(
            isinstance(shape, list) and len(shape) == 4
            and all(isinstance(n, int) and n >= 1 for n in shape) for shape in shapes)):
        parser.error(f"--shapes must be a JSON list of [B, H, C, F], each an integer >= 1, "
                     f"e.g. '[[75, 14, 64, 64]]'; got {args.shapes!r}")
    torch.set_num_threads(args.threads)
    kernels = [time_kernels(*shape, args.repeats) for shape in shapes]
    print(json.dumps({"threads": args.threads, "torch": torch.__version__, "kernels": kernels}))


if __name__ == "__main__":
    main()
