"""The step-time benchmark's outputs: its markdown table, its JSON, the table's place between
markers in a markdown file, and the pooling of a row's rounds."""
import os
import platform
import re
import statistics

import jax

from experiments.cli import write_json

MARKERS = ("<!-- step_time:begin -->", "<!-- step_time:end -->")


def pooled(rounds: list) -> dict:
    """One side of a row over its rounds: the first round's entry with the timed steps of all
    rounds pooled (median, min, max, and ours' tasks/s and GFLOP/s or the peer's mean from them)
    and the largest peak memory."""
    times = [t for r in rounds for t in r["times_s"]]
    median = statistics.median(times)
    merged = {**rounds[0], "times_s": times, "median_s": median, "min_s": min(times),
              "max_s": max(times)}
    if "meta_batch" in merged:   # ours
        merged["tasks_per_s"] = merged["meta_batch"] / median
        merged["gflops_per_s"] = merged["flops"] / median / 1e9
    if "mean_s" in merged:   # the peer's
        merged["mean_s"] = statistics.fmean(times)
    for key in ("peak_rss_mb", "peak_device_mb"):
        values = [r[key] for r in rounds if r.get(key) is not None]
        merged[key] = max(values) if values else rounds[0].get(key)
    return merged


def merge_rounds(rounds: list) -> dict:
    """A row's result from its rounds (each ours with an optional ``peer``): each side pooled,
    and ``round_ratios``, our median over the peer's in each round. One round is returned as is."""
    if len(rounds) == 1:
        return rounds[0]
    merged = pooled(rounds)
    if all("peer" in r for r in rounds):
        merged["peer"] = pooled([r["peer"] for r in rounds])
        merged["round_ratios"] = [r["median_s"] / r["peer"]["median_s"] for r in rounds]
    merged["rounds"] = len(rounds)
    return merged


def megabytes(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def format_table(results, peak_gflops_per_s: float) -> str:
    """A markdown table of ``results`` (rows with an optional ``peer`` entry), each row's
    achieved GFLOP/s (XLA's flop count / median time) as a % of the measured matmul peak. Where
    a row ran on an accelerator, its device memory and its peer's follow the RSS columns."""
    on_device = any(r.get("peak_device_mb") is not None for r in results)
    device_header = " device MB | peer device MB |" if on_device else ""
    lines = ["| config | compile s | median s | min | max | tasks/s | GFLOP/s | % of peak | RSS MB "
             "| peer | peer median s | peer RSS MB | JAX / peer |" + device_header,
             "|---" * (15 if on_device else 13) + "|"]
    for r in results:
        peer = r.get("peer")
        peer_cells = (f"{peer['algo']} | {peer['median_s']:.3f} | {peer['peak_rss_mb']:.0f} | "
                      f"**{r['median_s'] / peer['median_s']:.2f}**" if peer else "- | - | - | -")
        device_cells = (f" {megabytes(r.get('peak_device_mb'))} | "
                        f"{megabytes((peer or {}).get('peak_device_mb'))} |" if on_device else "")
        lines.append(f"| {r['config']} | {r['compile_s']:.1f} | {r['median_s']:.3f} | "
                     f"{r['min_s']:.3f} | {r['max_s']:.3f} | {r['tasks_per_s']:.1f} | "
                     f"{r['gflops_per_s']:.1f} | "
                     f"{100 * r['gflops_per_s'] / peak_gflops_per_s:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {peer_cells} |{device_cells}")
    return "\n".join(lines)


def write_results(path: str, suite: str, peak: dict, results: list) -> None:
    """Write the run's JSON: the machine, the matmul peak (with the devices it ran on) and the
    rows timed so far. Starts no backend here: on a GPU this process would hold its memory while
    the rows' processes run."""
    write_json(path, {"suite": suite, "jax": jax.__version__,
                      "machine": platform.processor() or platform.machine(),
                      "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
                      **peak, "rows": results})


def replace_section(path: str, text: str) -> None:
    """Replace what lies between MARKERS in the file at ``path`` (ValueError if they are absent)."""
    with open(path) as f:
        document = f.read()
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.S)
    if not pattern.search(document):
        raise ValueError(f"--benchmarks_md={path} lacks the markers {MARKERS[0]} ... {MARKERS[1]}")
    with open(path, "w") as f:
        f.write(pattern.sub(lambda _: f"{MARKERS[0]}\n{text}\n{MARKERS[1]}", document))
