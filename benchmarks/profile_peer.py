"""The PyTorch peer's meta-step under ``torch.profiler``, its self time sorted into Conv4's layers.

    .venv-peer/bin/python -m benchmarks.profile_peer --algo torch_abml --meta_batch 4 --steps 3

Run by ``benchmarks.profile_step`` with the peers' Python (``benchmarks/setup_peers.sh``), from
the repository's root, with ``python -m benchmarks.peers``'s arguments: builds the same peer,
runs ``--warmup`` meta-steps, times ``--steps`` more (median ``step_s``), profiles the same
batches again and prints one JSON line ``{"algo": ..., "step_s": ..., "by_layer": {layer:
profiled seconds per step}, "by_op": {...}}``. Each op's self time goes to the layer of its
outermost ATen op, or for backward ops to the autograd node that ran it
(``ConvolutionBackward0``, ``NativeBatchNormBackwardBackward0``, ...).
"""
import collections
import itertools
import json
import statistics
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


def main(argv=None):
    from benchmarks.peers import require_torch
    from benchmarks.peers.options import parse_args
    args = parse_args(argv)
    if args.device != "cpu":
        raise SystemExit(f"--device={args.device}: benchmarks.profile_peer profiles CPU time "
                         "only; use --device=cpu")
    require_torch()
    import torch
    from benchmarks.peers.run import build, meta_batches, meta_step

    torch.set_num_threads(args.threads)
    peer = build(args)
    optimizer = torch.optim.Adam(peer.parameters(), args.meta_lr)
    batches = meta_batches(args)
    for batch in itertools.islice(batches, args.warmup):
        meta_step(peer, optimizer, batch)
    timed = list(itertools.islice(batches, args.steps))
    times = []
    for batch in timed:
        start = time.perf_counter()
        meta_step(peer, optimizer, batch)
        times.append(time.perf_counter() - start)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for batch in timed:
            meta_step(peer, optimizer, batch)
    by_layer, by_op = collections.Counter(), collections.Counter()
    for event in profile.events():
        seconds = event.self_cpu_time_total * 1e-6 / args.steps
        if seconds > 0 and not event.name.startswith("autograd::engine"):
            by_layer[layer_of(event)] += seconds
            by_op[event.name] += seconds
    print(json.dumps({"algo": args.algo, "step_s": statistics.median(times),
                      "by_layer": dict(by_layer), "by_op": dict(by_op.most_common(25))}))


if __name__ == "__main__":
    main()
