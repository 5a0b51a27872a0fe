r"""Time one jitted meta-training step (inner loops + outer gradient + optax update), beside the
PyTorch peers of ``benchmarks/peers`` (``python -m benchmarks.peers``) on the same machine.

    python -m benchmarks.step_time --suite=omniglot --out=benchmarks/results/step_time.json
    bash benchmarks/setup_peers.sh .venv-peer            # once: torch 2.13, learn2learn
    python -m benchmarks.step_time --suite=omniglot --peer_python=.venv-peer/bin/python \
        --out=benchmarks/results/step_time.json --benchmarks_md=BENCHMARKS.md

Every row runs in a fresh process, one after the other (never two at once), so its compile time
and peak memory are its own: first ours, then its PyTorch peer (the hand-written ABML loop for
ABML rows, learn2learn for MAML rows; same shapes, Conv4 with floor max-pool, batch
statistics, same order of differentiation). Prints a table with the ratio JAX
time / peer time, writes JSON, and optionally replaces the table between the step-time markers
of a markdown file. Each row also reports its achieved GFLOP/s, XLA's flop count
(``cost_analysis()``) of the step in one loop-free reference form, the same for every variant
(``benchmarks.flops.reference_flops``), over its median time, as a % of the machine's f32
matmul peak, measured in the same run in a fresh process (``--peak_size``² jitted matmuls, the
best of 5). Data are random arrays of the configured shapes. Machines are noisy: compare
ratios measured in one run, never absolute seconds across runs. ``--rounds=N`` alternates ours
and the peer's N times per row, so that both sides see the same stretches of a noisy machine;
the JSON keeps each round's ratio.

On a GPU the same command compares against the CUDA build of the peers (``--device cuda``;
``setup_peers.sh`` installs PyPI's torch, which is that build), with ``conv="auto"`` choosing
``lax.conv`` for ours, and the table adds each side's device memory (XLA's allocator peak,
torch's ``max_memory_allocated``). A row that ran on a TPU has no peer.
"""
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

import jax
from absl import flags

from benchmarks.flops import cost_analysis, matmul_peak, reference_flops
from benchmarks.memory import peak_rss_bytes
from benchmarks.step_tables import format_table, merge_rounds, replace_section, write_results
from benchmarks.suites import Row, rows
from experiments.cli import run
from metabayes.training.sharding import replicate, shard_tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # runs ``-m benchmarks.*``


PEER_DEVICES = {"cpu": "cpu", "gpu": "cuda"}   # JAX's platform -> the peers' --device


def peer_command(row: Row, steps: int, python: str, module: str = "benchmarks.peers",
                 device: str = "cpu") -> list:
    """The command line of ``row``'s PyTorch peer (Omniglot 5-way 1-shot shapes, all cores, on
    ``device``), run by ``python`` from ``ROOT``; ``module``: the peers' program
    (``benchmarks.profile_peer`` takes the same arguments)."""
    return [python, "-m", module, *row.peer_args, "--ways", "5", "--shots", "1", "--query", "15",
            "--inner_steps", "5", "--inner_lr", "0.4", "--meta_batch", str(row.meta_batch),
            "--threads", str(os.cpu_count()), "--warmup", "2", "--steps", str(steps),
            "--device", device]


def resolve_peer_python(python: str) -> str:
    """``--peer_python`` as an absolute path ("" stays "": no peers); ValueError if it is not an
    executable."""
    found = shutil.which(python) if python else ""
    if python and not found:
        raise ValueError(f"--peer_python={python} is not an executable; build the peers' "
                         "environment with `bash benchmarks/setup_peers.sh .venv-peer`")
    return os.path.abspath(found) if found else ""


def peak_rss_mb():
    return peak_rss_bytes() / 2**20


def peak_device_mb():
    """The most memory XLA's allocator has held on the first local device (GPU, TPU), in MB;
    None where the device does not report it (the CPU, whose use is the RSS)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def row_inputs(row: Row):
    """(key, meta-batch, train state) of ``row``: random data and a freshly initialised state.
    The data are drawn by one compiled program: op by op, they would leave ~80 MB of small
    compiled programs in the row's peak memory, which training from a data set does not have."""
    key = jax.random.PRNGKey(0)
    batch = jax.jit(row.make_batch, static_argnums=1)(key, row.meta_batch)
    return key, batch, row.learner.init(key, jax.tree_util.tree_map(lambda a: a[0],
                                                                    batch.support[0]))


def time_row(row: Row, steps: int, mesh=None) -> dict:
    """Compile time (tracing, lowering and XLA compilation, ahead of time), the untimed first
    run's seconds, then median / min / max seconds of ``steps`` steps of that executable,
    tasks/s, peak RSS; with a ``mesh``, the meta-batch is sharded over its devices and the
    state replicated."""
    key, batch, state = row_inputs(row)
    if mesh is not None:
        batch, state = shard_tasks(batch, mesh), replicate(state, mesh)
    start = time.perf_counter()
    with row.traced_under():
        train_step = row.learner.train_step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    cost = cost_analysis(train_step)
    start = time.perf_counter()
    state, metrics = train_step(state, batch, key)
    jax.block_until_ready((state, metrics))
    first_step_s = time.perf_counter() - start
    times = []
    for step in range(steps):
        step_key = jax.random.fold_in(key, step)
        start = time.perf_counter()
        state, metrics = train_step(state, batch, step_key)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    if not math.isfinite(float(metrics["loss"])):
        raise FloatingPointError(f"{row.name}: the meta-loss is not finite; a timing of a "
                                 "diverged step would not be representative")
    median = statistics.median(times)
    peak_rss = peak_rss_mb()   # the step's own: before the flop count compiles another program
    peak_device = peak_device_mb()
    flops = reference_flops(row.learner, row.make_batch, row.meta_batch)
    return {"config": row.name, "platform": jax.default_backend(), "meta_batch": row.meta_batch,
            "compile_s": compile_s, "peak_device_mb": peak_device,
            "first_step_s": first_step_s, "median_s": median, "min_s": min(times),
            "max_s": max(times), "times_s": times,
            "tasks_per_s": row.meta_batch / median, "peak_rss_mb": peak_rss,
            "loss": float(metrics["loss"]), "flops": flops,
            "compiled_flops": cost.get("flops", 0.0),
            "bytes_accessed": cost.get("bytes accessed", 0.0),
            "gflops_per_s": flops / median / 1e9}


def run_json(command: list, env=()) -> dict:
    """Run ``command`` from ``ROOT`` with ``env`` added to the environment; return the JSON
    object on the last line of its stdout."""
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **dict(env)})
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_beside_peer(row: Row, peer_python: str) -> dict:
    """One round of a row: ours in a fresh process, then (with ``peer_python``) its peer's."""
    result = run_json([sys.executable, "-m", "benchmarks.step_time", f"--suite={_SUITE.value}",
                       f"--steps={_STEPS.value}", f"--only={row.name}"], row.env)
    device = PEER_DEVICES.get(result["platform"])
    if peer_python and row.peer_args and device:
        result["peer"] = run_json(peer_command(row, _STEPS.value, peer_python, device=device))
    elif peer_python and row.peer_args:
        print(f"{row.name}: no PyTorch peer on {result['platform']} (the peers run on "
              f"{' and '.join(PEER_DEVICES.values())})", flush=True)
    return result


def main(argv):
    del argv
    for name, value in (("steps", _STEPS.value), ("rounds", _ROUNDS.value)):
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}")
    suite = list(rows(_SUITE.value))
    unknown = [name for name in _ROWS.value if name not in [r.name for r in suite]]
    if unknown:
        raise ValueError(f"--rows {unknown} are not rows of --suite={_SUITE.value}: "
                         f"{[r.name for r in suite]}")
    if _ONLY.value:
        row = next((r for r in suite if r.name == _ONLY.value), None)
        if row is None:
            raise ValueError(f"--only must name a row of --suite={_SUITE.value}: "
                             f"{[r.name for r in suite]}, got {_ONLY.value!r}")
        print(json.dumps(time_row(row, _STEPS.value)))
        return
    if _PEAK.value:
        print(json.dumps(matmul_peak(_PEAK_SIZE.value)))
        return
    peer_python = resolve_peer_python(_PEER_PYTHON.value)
    peak = run_json([sys.executable, "-m", "benchmarks.step_time", "--peak",
                     f"--peak_size={_PEAK_SIZE.value}"])
    print(f"f32 matmul peak: {peak['peak_gflops_per_s']:.1f} GFLOP/s "
          f"({peak['matmul_size']}² in {peak['matmul_s']:.3f} s)", flush=True)
    results = []
    for row in [r for r in suite if not _ROWS.value or r.name in _ROWS.value]:
        results.append(merge_rounds([time_beside_peer(row, peer_python)
                                     for _ in range(_ROUNDS.value)]))
        print(format_table(results, peak["peak_gflops_per_s"]).splitlines()[-1], flush=True)
        if _OUT.value:   # after every row, so a run cut short keeps the rows it finished
            write_results(_OUT.value, _SUITE.value, peak, results)
    table = format_table(results, peak["peak_gflops_per_s"])
    print(table)
    if _BENCHMARKS_MD.value:
        replace_section(_BENCHMARKS_MD.value, table)


if __name__ == "__main__":  # flags exist only when run as a program, so benchmarks.scaling imports
    _SUITE = flags.DEFINE_enum("suite", "omniglot",
                               ["omniglot", "variants", "fewshot", "sinusoid", "wheel_bandit",
                                "smoke"],
                               "omniglot: Conv4 5-way 1-shot Q=15 K=5 at M=4 and 32; variants: "
                               "each change of issue 20 (convolution, task chunks, their "
                               "checkpoint policy, the weight noise stored once, sequential "
                               "outer draws, the weight gradient's transposed copies, "
                               "YNNPACK's convolutions) against the default at M=32, S=5 outer "
                               "samples, XLA:CPU's fusion emitters; "
                               "fewshot: Conv4-32 on miniImageNet's 84x84x3, "
                               "5-way 1-shot Q=15 K=5 M=4; sinusoid: the MLP of "
                               "experiments.sinusoid; wheel_bandit: the meta-training step of "
                               "experiments.wheel_bandit (M=64); smoke: one tiny step.")
    _ROWS = flags.DEFINE_list("rows", [], "Only these rows of the suite (names as printed, e.g. "
                              "'abml S=1 M=32,maml M=32'); empty: all.")
    _STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after the compiling one (>= 1).")
    _ROUNDS = flags.DEFINE_integer(
        "rounds", 1, "Rounds per row (>= 1): ours, then the peer's, alternating, each in a fresh "
        "process; the table pools each side's timed steps over the rounds.")
    _OUT = flags.DEFINE_string("out", "", "Where to write the JSON results (none if empty).")
    _PEER_PYTHON = flags.DEFINE_string(
        "peer_python", "", "Python of the PyTorch peers' virtualenv (benchmarks/setup_peers.sh); "
        "empty: time JAX only.")
    _BENCHMARKS_MD = flags.DEFINE_string(
        "benchmarks_md", "", "Markdown file whose table between the step-time markers is replaced.")
    _PEAK = flags.DEFINE_bool("peak", False, "Measure the f32 matmul peak in this process and "
                              "print its JSON (how the driver measures it in a fresh process).")
    _PEAK_SIZE = flags.DEFINE_integer("peak_size", 4096, "Side of the matmul that measures the "
                                      "machine's f32 peak.", lower_bound=1)
    _ONLY = flags.DEFINE_string("only", "", "Time this one row in this process and print its JSON "
                                "(how the driver runs each row in a fresh process).")
    run(main)
