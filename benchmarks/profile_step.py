r"""Where a meta-step's time goes: ours by XLA thunk, the PyTorch peer's by ATen op, per layer.

    python -m benchmarks.profile_step --row='abml S=1 M=4' --peer_python=.venv-peer/bin/python \
        --out=benchmarks/results/profile_abml.json

Ours: ``jax.profiler`` traces ``--steps`` compiled steps of a ``benchmarks.step_time`` row; each
XLA:CPU thunk event is matched to its instruction in the optimised HLO, and the instruction to
the source line its metadata names, which says which layer of Conv4 (or which other part of the
step) it computes, forward or backward. The peer: ``benchmarks/profile_peer.py`` runs
``torch.profiler`` over the same configuration of ``benchmarks.peers`` in the peers' virtualenv
and sorts ATen ops into the same layers. Prints seconds per step per layer for both and writes JSON. Thunk times are
wall time per thunk; thunks that XLA runs concurrently overlap, so a column can sum to more
than the step.
"""
import ast
import bisect
import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile
import time

import jax
from absl import flags

from benchmarks.step_time import peer_command, resolve_peer_python, row_inputs, run_json
from benchmarks.suites import rows
from experiments.cli import run, write_json

# Layer of Conv4 (or other part of the step) by the function whose source line made the op.
LAYERS = {"conv3x3_patches": "conv (im2col slices)", "_linear": "conv / dense matmul",
          "Conv3x3.__call__": "conv / dense matmul", "Dense.__call__": "conv / dense matmul",
          "BatchNorm.__call__": "batch norm", "_sampled_param": "weight sampling",
          "max_pool_2x2": "max-pool", "Conv4.__call__": "relu",
          "lax_weight_gradient": "conv / dense matmul",
          "shifted_products": "conv / dense matmul", "_lax_conv": "conv / dense matmul",
          "flip": "conv / dense matmul"}
ASYNC_END = "end: "   # the trace's event for an asynchronous thunk's completion
CONTAINERS = {"while", "conditional", "call"}   # their thunks contain other thunks: not counted
INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\([^=]*?\)|\S+)\s+([\w\-]+)\(")
FRAME_ID = re.compile(r"stack_frame_id=(\d+)")
TABLE_ROW = re.compile(r'^(\d+) (?:"(.*)"|\{(.*)\})$')
LAYER_FILES = (os.path.join("metabayes", "layers.py"), os.path.join("metabayes", "models.py"))


def enclosing_functions(path: str) -> dict:
    """{line: 'Class.function'} for every line of the Python file at ``path``."""
    with open(path) as f:
        tree = ast.parse(f.read())
    lines = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if isinstance(child, ast.FunctionDef):
                    lines.update({line: name for line in range(child.lineno, child.end_lineno + 1)})
                visit(child, name + ".")
    visit(tree, "")
    return lines


def stack_tables(hlo_text: str) -> dict:
    """The FileNames, FunctionNames, FileLocations and StackFrames tables of an HLO module's text
    as {table: {id: str or {field: value}}}."""
    tables, current = collections.defaultdict(dict), None
    for line in hlo_text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            current = line
            continue
        match = TABLE_ROW.match(line) if current else None
        if not match:
            current = None if current and line.strip() else current
            continue
        value = match.group(2)
        if value is None:
            value = dict(field.split("=") for field in match.group(3).split())
        tables[current][int(match.group(1))] = value
    return tables


def source_of(frame: int, tables: dict, functions: dict) -> str:
    """The layer function (``Class.method`` in metabayes/layers.py or models.py) on the call
    stack of ``frame``, else the innermost frame's ``file:function``."""
    innermost, seen = None, set()
    while frame in tables["StackFrames"] and frame not in seen:
        seen.add(frame)
        entry = tables["StackFrames"][frame]
        location = tables["FileLocations"][int(entry["file_location_id"])]
        path = tables["FileNames"][int(location["file_name_id"])]
        if path.endswith(LAYER_FILES):
            if path not in functions:
                functions[path] = enclosing_functions(path) if os.path.isfile(path) else {}
            return functions[path].get(int(location["line"]), "?")
        innermost = innermost or (f"{os.path.basename(path)}:"
                                  f"{tables['FunctionNames'][int(location['function_name_id'])]}")
        frame = int(entry["parent_frame_id"])
    return innermost or "?"


def instructions(hlo_text: str) -> dict:
    """{instruction name: (opcode, source, shape)} of an optimised HLO module (``source_of``)."""
    tables, functions, found = stack_tables(hlo_text), {}, {}
    for line in hlo_text.splitlines():
        match = INSTRUCTION.match(line)
        if match:
            frame = FRAME_ID.search(line)
            source = source_of(int(frame.group(1)), tables, functions) if frame else "?"
            found[match.group(1)] = (match.group(3), source, match.group(2))
    return found


def layer_of(name: str, opcode: str, where: str) -> str:
    """The layer of Conv4 an instruction belongs to, else the part of the step. Every matmul
    (YNNPACK's ``ynn_fusion`` thunks, whose stack frames XLA drops) is a conv's or the head's."""
    if name.startswith("ynn_fusion") or opcode in ("dot", "convolution"):
        return "conv / dense matmul"
    if where in LAYERS:
        return LAYERS[where]
    if opcode in ("copy", "transpose", "concatenate", "slice", "pad", "dynamic-slice",
                  "dynamic-update-slice", "broadcast", "reshape") or "copy" in name:
        return "other data movement"
    return "rest of the step (loss, KL, optimizer, RNG)"


def kind_of(name: str, opcode: str) -> str:
    """What an XLA:CPU thunk does, from its opcode and the name XLA gave its fusion."""
    if name.startswith("ynn_fusion") or opcode == "dot":
        return "matmul (YNNPACK)"
    if opcode == "convolution":
        return "convolution (Eigen)"
    if opcode in ("copy", "transpose") or name.startswith("copy"):
        return "layout copies (transposes)"
    if opcode in ("concatenate", "slice", "pad", "dynamic-slice", "dynamic-update-slice"):
        return "slicing / concatenation"
    if opcode == "broadcast":
        return "broadcasts"
    return "elementwise and reduction fusions" if opcode == "fusion" else f"other ({opcode})"


def thunk_seconds(event: dict, completions: list) -> float:
    """A thunk's time: its event's duration, or for an asynchronous thunk (XLA:CPU's Eigen
    convolutions, whose event is only their launch) from its start to its next ``end:`` event
    (``completions``: their sorted timestamps)."""
    done = bisect.bisect_left(completions, event["ts"])
    if done == len(completions):
        return event["dur"] * 1e-6
    return (completions[done] - event["ts"]) * 1e-6


def profile_ours(row, steps: int) -> dict:
    """Seconds per step of ``row``'s compiled step by layer, by kind of thunk, by source and by
    instruction (the 40 largest)."""
    key, batch, state = row_inputs(row)
    with row.traced_under():
        step = row.learner.train_step.lower(state, batch, key).compile()   # compiled once, run below
    hlo = instructions(step.as_text())
    jax.block_until_ready(step(state, batch, key))
    times = []
    for i in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(step(state, batch, jax.random.fold_in(key, i)))
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as folder:
        jax.profiler.start_trace(folder, create_perfetto_trace=True)
        for i in range(steps):
            state, metrics = step(state, batch, jax.random.fold_in(key, i))
            jax.block_until_ready((state, metrics))
        jax.profiler.stop_trace()
        trace_path = glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"),
                               recursive=True)[0]
        with gzip.open(trace_path) as f:
            trace = json.load(f)
    events = [e for e in (trace["traceEvents"] if isinstance(trace, dict) else trace)
              if e.get("ph") == "X"]
    ends = collections.defaultdict(list)   # an asynchronous thunk's completions, by name
    for event in events:
        if event["name"].startswith(ASYNC_END):
            ends[event["name"][len(ASYNC_END):]].append(event["ts"])
    for times_of_one in ends.values():
        times_of_one.sort()
    by_layer, by_kind, by_source, by_name = (collections.Counter() for _ in range(4))
    for event in events:
        if event["name"] not in hlo:
            continue
        opcode, where, shape = hlo[event["name"]]
        if opcode in CONTAINERS:
            continue
        seconds = thunk_seconds(event, ends.get(event["name"], [])) / steps
        by_layer[layer_of(event["name"], opcode, where)] += seconds
        by_kind[kind_of(event["name"], opcode)] += seconds
        by_source[where] += seconds
        by_name[f"{event['name']} {shape} ({where})"] += seconds
    return {"step_s": statistics.median(times), "by_layer": dict(by_layer),
            "by_kind": dict(by_kind), "by_source": dict(by_source.most_common(20)),
            "by_instruction": dict(by_name.most_common(40))}


def format_table(ours: dict, peer: dict) -> str:
    """Each layer's share of the profiled thunk (op) time, and that share of the unprofiled
    median step: profiling adds a cost per op, so profiled seconds overstate the step, most for
    layers made of many small ops."""
    columns = [c for c in (ours, peer) if c]
    layers = sorted(set().union(*(c["by_layer"] for c in columns)),
                    key=lambda k: -ours["by_layer"].get(k, 0.0))
    header = ("| layer | ours share | ours s / step |"
              + (" peer share | peer s / step |" if peer else ""))
    lines = [header, "|---" * (1 + 2 * len(columns)) + "|"]
    for layer in layers:
        cells = []
        for column in columns:
            share = column["by_layer"].get(layer, 0.0) / sum(column["by_layer"].values())
            cells += [f"{100 * share:.0f}%", f"{share * column['step_s']:.3f}"]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    steps = " | | ".join(f"{c['step_s']:.3f}" for c in columns)
    lines.append(f"| step (unprofiled median) | | {steps} |")
    return "\n".join(lines)


def main(argv):
    del argv
    suite = {r.name: r for r in rows(_SUITE.value)}
    if _ROW.value not in suite:
        raise ValueError(f"--row must be a row of --suite={_SUITE.value}: {list(suite)}, "
                         f"got {_ROW.value!r}")
    if _STEPS.value < 1:
        raise ValueError(f"--steps must be >= 1, got {_STEPS.value}")
    row, peer_python = suite[_ROW.value], resolve_peer_python(_PEER_PYTHON.value)
    ours = profile_ours(row, _STEPS.value)
    peer = {}
    if peer_python and row.peer_args:
        peer = run_json(peer_command(row, _STEPS.value, peer_python,
                                     module="benchmarks.profile_peer"))
    print(f"{row.name}, {_STEPS.value} profiled steps")
    print(format_table(ours, peer))
    kinds = sorted(ours["by_kind"].items(), key=lambda kv: -kv[1])
    print("\n| ours by kind of thunk | s / step |\n|---|---|")
    print("\n".join(f"| {kind} | {seconds:.3f} |" for kind, seconds in kinds))
    write_json(_OUT.value, {"row": row.name, "steps": _STEPS.value, "jax": jax.__version__,
                            "xla_flags": os.environ.get("XLA_FLAGS", ""), "ours": ours,
                            "peer": peer})


if __name__ == "__main__":
    _SUITE = flags.DEFINE_enum("suite", "omniglot", ["omniglot", "variants", "smoke"],
                               "A suite of benchmarks.step_time.")
    _ROW = flags.DEFINE_string("row", "abml S=1 M=4", "A row of that suite.")
    _STEPS = flags.DEFINE_integer("steps", 3, "Profiled steps after a warm-up step (>= 1).")
    _OUT = flags.DEFINE_string("out", "", "Where to write the JSON (none if empty).")
    _PEER_PYTHON = flags.DEFINE_string("peer_python", "", "Python of the peers' virtualenv; "
                                       "empty: profile ours only.")
    run(main)
