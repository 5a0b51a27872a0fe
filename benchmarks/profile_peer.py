"""The PyTorch peer's meta-step under ``torch.profiler``, its self time sorted into Conv4's layers.

Run by ``benchmarks.profile_step`` with the peers' Python (``benchmarks/setup_peers.sh``): takes
``peer_torch.py``'s arguments plus ``--peer_dir``, runs ``--warmup`` steps, times ``--steps``
(median ``step_s``), profiles the same batches again and prints one JSON line ``{"step_s": ...,
"by_layer": {layer: profiled seconds per step}, "by_op": {...}}``. Each op's self time goes to
the layer of its outermost ATen op, or for backward ops to the autograd node that ran it
(``ConvolutionBackward0``, ``NativeBatchNormBackwardBackward0``, ...).
"""
import collections
import json
import statistics
import sys
import time

LAYERS = (("onvolution", "conv / dense matmul"), ("conv2d", "conv / dense matmul"),
          ("addmm", "conv / dense matmul"), ("Addmm", "conv / dense matmul"),
          ("linear", "conv / dense matmul"), ("atch_norm", "batch norm"),
          ("BatchNorm", "batch norm"), ("max_pool", "max-pool"), ("MaxPool", "max-pool"),
          ("relu", "relu"), ("Relu", "relu"), ("threshold", "relu"))


def layer_of(event) -> str:
    """The Conv4 layer an op event belongs to, by its autograd node or outermost ATen op."""
    outermost, node = event.name, None
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("autograd::engine::evaluate_function: "):
            node = node or parent.name.split(": ", 1)[1]
        elif parent.name.startswith("aten::"):
            outermost = parent.name
        parent = parent.cpu_parent
    name = node or outermost
    return next((layer for key, layer in LAYERS if key in name),
                "rest of the step (loss, KL, optimizer, RNG)")


def main():
    argv = sys.argv[1:]
    folder = argv.pop(argv.index("--peer_dir") + 1)
    argv.remove("--peer_dir")
    sys.path.insert(0, folder)
    import torch
    import peer_torch

    args = peer_torch.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    step, _, _ = peer_torch.BUILDERS[args.algo](args, {})
    sampler = peer_torch.TaskSampler(args.ways, args.shots, args.query, args.meta_batch,
                                     seed=args.seed + 1)
    for _ in range(args.warmup):
        step(sampler.sample())
    batches = [sampler.sample() for _ in range(args.steps)]
    times = []
    for batch in batches:
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for batch in batches:
            step(batch)
    by_layer, by_op = collections.Counter(), collections.Counter()
    for event in profile.events():
        seconds = event.self_cpu_time_total * 1e-6 / args.steps
        if seconds > 0 and not event.name.startswith("autograd::engine"):
            by_layer[layer_of(event)] += seconds
            by_op[event.name] += seconds
    print(json.dumps({"algo": args.algo, "step_s": statistics.median(times), "by_layer": dict(by_layer),
                      "by_op": dict(by_op.most_common(25))}))


if __name__ == "__main__":
    main()
