"""The step-time benchmark runs end to end (its smoke suite) and rewrites its BENCHMARKS.md table."""
import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_step_time_smoke_writes_json_and_markdown(tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# B\n<!-- step_time:begin -->\nold\n<!-- step_time:end -->\nafter\n")
    out = tmp_path / "step_time.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.step_time", "--suite=smoke",
                             "--steps=2", f"--out={out}", f"--benchmarks_md={markdown}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["config"] == "abml smoke" and len(row["times_s"]) == 2
    assert row["min_s"] <= row["median_s"] <= row["max_s"] and row["peak_rss_mb"] > 0
    assert row["compile_s"] > 0 and row["first_step_s"] > 0   # compilation and first run apart
    text = markdown.read_text()
    assert "old" not in text and "| abml smoke |" in text and text.endswith("after\n")


def test_step_time_rejects_an_unknown_row():
    result = subprocess.run([sys.executable, "-m", "benchmarks.step_time", "--suite=smoke",
                             "--only=nope"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "--only must name a row" in result.stderr


def test_profile_attributes_thunk_time_to_conv4_layers(tmp_path):
    """benchmarks.profile_step traces the smoke step and finds time in each of Conv4's layers."""
    out = tmp_path / "profile.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.profile_step", "--suite=smoke",
                             "--row=abml smoke", "--steps=1", f"--out={out}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ours = json.loads(out.read_text())["ours"]
    for layer in ("conv / dense matmul", "conv (im2col slices)", "batch norm", "max-pool"):
        assert ours["by_layer"].get(layer, 0) > 0, (layer, ours["by_layer"])
    assert abs(sum(ours["by_layer"].values()) - sum(ours["by_kind"].values())) < 1e-9
