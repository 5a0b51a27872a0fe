"""The step-time benchmark runs end to end (its smoke suite) and rewrites its BENCHMARKS.md table;
the PyTorch peers (benchmarks/peers) take its arguments, import without torch, pass their checks."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_step_time_smoke_writes_json_and_markdown(tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# B\n<!-- step_time:begin -->\nold\n<!-- step_time:end -->\nafter\n")
    out = tmp_path / "step_time.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.step_time", "--suite=smoke",
                             "--steps=2", "--peak_size=256", f"--out={out}",
                             f"--benchmarks_md={markdown}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(out.read_text())
    (row,) = written["rows"]
    assert written["matmul_size"] == 256 and written["peak_gflops_per_s"] > 0
    assert written["devices"] == "[CpuDevice(id=0)]"   # as the peak's process saw them
    # XLA's flop count of the step, and the rate it implies, as the table prints it
    assert row["flops"] > 0 and row["gflops_per_s"] == row["flops"] / row["median_s"] / 1e9
    percent = 100 * row["gflops_per_s"] / written["peak_gflops_per_s"]
    assert f"| {row['gflops_per_s']:.1f} | {percent:.1f} |" in result.stdout
    assert row["config"] == "abml smoke" and len(row["times_s"]) == 2
    assert row["min_s"] <= row["median_s"] <= row["max_s"] and row["peak_rss_mb"] > 0
    assert row["compile_s"] > 0 and row["first_step_s"] > 0   # compilation and first run apart
    assert row["platform"] == "cpu" and row["peak_device_mb"] is None   # the CPU's use is RSS
    assert "device MB" not in result.stdout
    text = markdown.read_text()
    assert "old" not in text and "| abml smoke |" in text and text.endswith("after\n")


def test_step_time_rejects_an_unknown_row():
    result = subprocess.run([sys.executable, "-m", "benchmarks.step_time", "--suite=smoke",
                             "--only=nope"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "--only must name a row" in result.stderr
    result = subprocess.run([sys.executable, "-m", "benchmarks.step_time", "--suite=smoke",
                             "--rounds=0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and result.stderr.strip() == (   # one line, no usage text
        "error: --rounds must be >= 1, got 0")


def test_rounds_pool_each_side_and_keep_each_rounds_ratio():
    """``--rounds``: ours and the peer's alternate; each side's timed steps pool over the rounds
    (median, min, max, rates from them), the peak memory is the largest, and every round's own
    ratio is kept. One round is the row as timed."""
    from benchmarks.step_tables import format_table, merge_rounds
    ours = lambda times, rss: {"config": "maml M=32", "meta_batch": 32, "flops": 4e9,
                               "compile_s": 3.0, "times_s": times, "median_s": sorted(times)[1],
                               "peak_rss_mb": rss, "peak_device_mb": None}
    peer = lambda times, rss: {"algo": "l2l_maml", "times_s": times, "median_s": sorted(times)[1],
                               "mean_s": 0.0, "peak_rss_mb": rss, "peak_device_mb": None}
    first = {**ours([1.0, 1.2, 1.1], 700.0), "peer": peer([2.0, 2.2, 2.1], 600.0)}
    second = {**ours([1.4, 1.6, 1.5], 710.0), "peer": peer([1.5, 1.7, 1.6], 590.0)}
    assert merge_rounds([first]) is first
    row = merge_rounds([first, second])
    assert row["rounds"] == 2 and row["times_s"] == [1.0, 1.2, 1.1, 1.4, 1.6, 1.5]
    assert (row["median_s"], row["min_s"], row["max_s"]) == (pytest.approx(1.3), 1.0, 1.6)
    assert row["tasks_per_s"] == pytest.approx(32 / 1.3)
    assert row["gflops_per_s"] == pytest.approx(4 / 1.3)
    assert row["peak_rss_mb"] == 710.0 and row["peer"]["peak_rss_mb"] == 600.0
    assert row["peer"]["median_s"] == pytest.approx(1.85) == row["peer"]["mean_s"]
    assert row["round_ratios"] == [1.1 / 2.1, 1.5 / 1.6]
    assert format_table([row], peak_gflops_per_s=10.0).endswith(f"| **{1.3 / 1.85:.2f}** |")


def test_profile_attributes_thunk_time_to_conv4_layers(tmp_path):
    """benchmarks.profile_step traces the smoke step and finds time in each of Conv4's layers."""
    out = tmp_path / "profile.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.profile_step", "--suite=smoke",
                             "--row=abml smoke", "--steps=1", f"--out={out}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ours = json.loads(out.read_text())["ours"]
    for layer in ("conv / dense matmul", "batch norm", "max-pool"):
        assert ours["by_layer"].get(layer, 0) > 0, (layer, ours["by_layer"])
    assert abs(sum(ours["by_layer"].values()) - sum(ours["by_kind"].values())) < 1e-9


# ------------------------------------------------------------------ the PyTorch peers
PEER_VENV_PYTHON = os.path.join(ROOT, ".venv-peer", "bin", "python")
NO_TORCH = "import sys; sys.modules['torch'] = None\n"   # as if torch were not installed


def test_step_time_rows_pass_arguments_the_peers_accept():
    """Every omniglot row's peer command parses with the peers' own command line (no torch)."""
    from benchmarks.peers.options import parse_args
    from benchmarks.step_time import peer_command
    from benchmarks.suites import rows

    peered = [row for row in rows("omniglot") if row.peer_args]
    assert {row.peer_args[1] for row in peered} == {"torch_abml", "l2l_maml"}
    for row in peered:
        command = peer_command(row, 3, "python")
        assert command[1:3] == ["-m", "benchmarks.peers"]
        args = parse_args(command[3:])
        assert (args.meta_batch, args.steps, args.query, args.inner_steps) == (
            row.meta_batch, 3, 15, 5)
        assert args.first_order == ("FO" in row.name)
        assert args.device == "cpu"
        assert parse_args(peer_command(row, 3, "python", device="cuda")[3:]).device == "cuda"


def test_step_time_table_adds_device_memory_where_a_row_ran_on_an_accelerator():
    """On a GPU the table gains our and the peer's device memory; on the CPU it does not."""
    from benchmarks.step_tables import format_table
    from benchmarks.step_time import PEER_DEVICES

    assert PEER_DEVICES == {"cpu": "cpu", "gpu": "cuda"}   # no TPU peer: none is compared
    row = {"config": "maml M=32", "compile_s": 3.0, "median_s": 0.2, "min_s": 0.2, "max_s": 0.3,
           "tasks_per_s": 160.0, "gflops_per_s": 900.0, "peak_rss_mb": 2100.0,
           "peak_device_mb": None,
           "peer": {"algo": "l2l_maml", "median_s": 0.4, "peak_rss_mb": 900.0,
                    "peak_device_mb": None}}
    header, rule, line = format_table([row], peak_gflops_per_s=9000.0).splitlines()
    assert "device MB" not in header and line.endswith("| **0.50** |")
    assert header.count("|") == rule.count("|") == line.count("|")
    on_gpu = {**row, "peak_device_mb": 1234.4, "peer": {**row["peer"], "peak_device_mb": 567.0}}
    header, rule, line = format_table([on_gpu, row], peak_gflops_per_s=9000.0).splitlines()[:3]
    assert header.endswith("| device MB | peer device MB |")
    assert line.endswith("| **0.50** | 1234 | 567 |") and "| 10.0 | 2100 |" in line
    assert header.count("|") == rule.count("|") == line.count("|")


def test_peers_import_without_torch_and_say_how_to_get_it():
    """benchmarks.peers imports without torch; its programs stop with the setup command."""
    program = NO_TORCH + (
        "import benchmarks.peers as peers\n"
        "assert not peers.torch_available()\n"
        "try:\n"
        "    import benchmarks.peers.run\n"
        "except ModuleNotFoundError as error:\n"
        "    assert error.name == 'torch' and 'setup_peers.sh' in str(error), error\n"
        "    print('clear error')\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "clear error" in done.stdout, done.stderr[-3000:]
    done = subprocess.run([sys.executable, "-c", NO_TORCH + "import runpy; runpy.run_module("
                           "'benchmarks.peers', run_name='__main__')", "--algo", "torch_abml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "benchmarks/setup_peers.sh" in done.stderr, done.stderr[-3000:]


def peer_python():
    """A Python with torch: this one, else the peers' virtualenv at .venv-peer; None if neither."""
    try:
        import torch  # noqa: F401
        return sys.executable
    except ImportError:
        return PEER_VENV_PYTHON if os.path.isfile(PEER_VENV_PYTHON) else None


def test_peers_meta_gradients_check_and_a_step_runs():
    """benchmarks.peers.check passes (torch_maml == learn2learn, ABML with σ → 0 == MAML, both
    meta-gradients == finite differences) and a tiny timed ABML run prints its JSON."""
    python = peer_python()
    if python is None:
        pytest.skip("torch is not installed here nor in .venv-peer (the PyTorch peers' "
                    "environment: bash benchmarks/setup_peers.sh .venv-peer)")
    done = subprocess.run([python, "-m", "benchmarks.peers.check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and " 0 failed" in done.stdout, done.stdout + done.stderr[-3000:]
    done = subprocess.run([python, "-m", "benchmarks.peers", "--algo", "torch_abml",
                           "--meta_batch", "1", "--query", "1", "--inner_steps", "1",
                           "--warmup", "0", "--steps", "1", "--threads", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["algo"] == "torch_abml" and len(result["times_s"]) == 1
    assert result["meta_params"] == 2 * 112261   # μ_θ and log σ_θ of Conv4 (64 filters, 5 ways)
    assert result["config"]["device"] == "cpu" and result["peak_device_mb"] is None
    cuda = subprocess.run([python, "-c", "import torch; print(torch.cuda.is_available())"],
                          capture_output=True, text=True, timeout=120).stdout.strip() == "True"
    done = subprocess.run([python, "-m", "benchmarks.peers", "--algo", "torch_maml",
                           "--meta_batch", "1", "--query", "1", "--inner_steps", "1",
                           "--warmup", "0", "--steps", "1", "--device", "cuda"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if cuda:   # the CUDA peer runs and reports its device memory
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1])["peak_device_mb"] > 0
    else:      # one line saying why, no stack trace
        assert done.returncode != 0 and done.stderr.strip().startswith("--device=cuda: torch")
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_conv_kernels_times_each_kernel_beside_the_peers(tmp_path):
    """benchmarks.conv_kernels times the forward pass, input and weight gradient of every
    block's convolution, and the peer's where torch is at hand; bad flags get one line."""
    out = tmp_path / "conv_kernels.json"
    python = peer_python()
    done = subprocess.run([sys.executable, "-m", "benchmarks.conv_kernels", "--batch_sizes=2",
                           "--filters=4", "--repeats=1", f"--out={out}",
                           f"--peer_python={python or ''}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["shape"] for row in rows] == [[2, 28, 1, 4], [2, 14, 4, 4], [2, 7, 4, 4],
                                              [2, 3, 4, 4]]
    assert rows[1]["flops"] == 2 * 2 * 14 * 14 * 9 * 4 * 4
    for row in rows:
        sides = [row["ours"], row["peer"]] if python else [row["ours"]]
        for side in sides:
            assert all(side[f"{k}_s"] > 0 for k in ("forward", "input_gradient",
                                                     "weight_gradient")), row
    assert "| [2, 14, 14, 4] → 4 |" in done.stdout
    done = subprocess.run([sys.executable, "-m", "benchmarks.conv_kernels", "--batch_sizes=a"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (
        1, "error: flag --batch_sizes=a: expected a comma-separated list of ints\n")
    if python:   # the peers' side names its flag too, after argparse's usage line
        done = subprocess.run([python, "-m", "benchmarks.peers.conv_kernels", "--shapes=[[2, 5]]"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and "--shapes must be a JSON list of [B, H, C, F]" in \
            done.stderr.strip().splitlines()[-1], done.stderr


def test_reference_flops_count_every_inner_step_and_ignore_the_noise_form(monkeypatch):
    """XLA counts a loop's body once: the reference form unrolls the inner loop, so four inner
    steps count about four times one step's flops (4.2×: XLA fuses the steps a little
    differently; with the loop counted once, ~1×); and every variant of a row is counted alike,
    whatever ``$METABAYES_NOISE`` its process runs with."""
    import metabayes as mb
    from benchmarks.flops import reference_flops
    from benchmarks.suites import sinusoid_batch
    from metabayes.noise import NOISE_VARIABLE

    learner = mb.abml(mb.MLP(hidden=(16, 16)), likelihood=mb.Gaussian(0.5), inner_lr=1e-3)
    count = lambda steps: reference_flops(learner.replace_inner_steps(steps), sinusoid_batch, 3)
    outer, one, four = count(0), count(1), count(4)
    assert 3.8 < (four - outer) / (one - outer) < 4.6
    monkeypatch.setenv(NOISE_VARIABLE, "fused")
    assert count(4) == four


@pytest.mark.usefixtures("x64")
def test_shifted_matmul_row_traces_the_same_weight_gradient_as_matmuls():
    """The variant row "weight gradient as shifted matmuls" (the formulation before 2026-12-06)
    traces nine matmuls and no convolution for the weight gradient, with the default's values
    and second-order derivatives, on both sides of its transposed-product rule (F < 9C)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from benchmarks.suites import weight_gradient_as_shifted_matmuls
    from metabayes import conv3x3
    rng = np.random.default_rng(0)
    for channels, features in ((3, 4), (1, 10)):
        x = jnp.asarray(rng.normal(size=(2, 5, 4, channels)))
        dy = jnp.asarray(rng.normal(size=(2, 5, 4, features)))
        second = lambda x, dy: jax.grad(lambda x, dy: jnp.sum(jnp.sin(
            conv3x3.weight_gradient(x, dy))), argnums=(0, 1))(x, dy)
        default = (conv3x3.weight_gradient(x, dy), second(x, dy))
        with weight_gradient_as_shifted_matmuls():
            primitives = str(jax.make_jaxpr(conv3x3.weight_gradient)(x, dy))
            variant = (conv3x3.weight_gradient(x, dy), second(x, dy))
        assert primitives.count("dot_general") == 9 and "conv_general" not in primitives
        for a, b in zip(jax.tree_util.tree_leaves(variant), jax.tree_util.tree_leaves(default)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
