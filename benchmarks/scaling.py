r"""Tasks per second of the meta-training step with the meta-batch sharded over 1, 2, 4, 8 devices.

    python -m benchmarks.scaling --out=benchmarks/results/scaling.json

On a CPU-only machine the devices are XLA's fake host devices (``--xla_force_host_platform_
device_count=8``, set here before jax starts): they share the same cores, so the table shows the
overhead of sharding, not a speed-up. On a multi-GPU or TPU host it uses the real devices. The
global meta-batch is fixed (strong scaling); rows whose meta-batch the device count does not
divide are skipped.
"""
from metabayes.xla_flags import set_default_xla_flag

set_default_xla_flag("xla_force_host_platform_device_count", "8")   # before jax's backend starts

import jax  # noqa: E402
import optax  # noqa: E402
from absl import flags  # noqa: E402

import metabayes as mb  # noqa: E402
from benchmarks.step_time import time_row  # noqa: E402
from benchmarks.suites import Row, omniglot_batch, sinusoid_batch  # noqa: E402
from experiments.cli import define_number_list, run, write_json  # noqa: E402
from metabayes.training.sharding import task_mesh  # noqa: E402

_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after the compiling one (>= 1).")
_DEVICES = define_number_list("devices", [1, 2, 4, 8], "Device counts to time.", lower_bound=1)
_OUT = flags.DEFINE_string("out", "", "Where to write the JSON results (none if empty).")


def rows():
    """ABML on the sinusoid MLP (M = 32) and on Conv4 5-way 1-shot, 64 filters (M = 8)."""
    yield Row("sinusoid abml M=32", mb.abml(mb.MLP(), likelihood=mb.Gaussian(0.1), inner_lr=2e-5),
              sinusoid_batch, 32, ())
    yield Row("omniglot abml S=1 M=8", mb.abml(
        mb.Conv4(num_classes=5), inner_lr=0.08, inner_steps=5, outer_optimizer=optax.adam(1e-3),
        kl_weight=1e-4, init_log_sigma=-4.0), omniglot_batch, 8, ())


def main(argv):
    del argv
    counts = _DEVICES.value
    if not counts or max(counts) > jax.device_count():
        raise ValueError(f"--devices must lie in 1..{jax.device_count()} (the devices "
                         f"present), got {_DEVICES.value}")
    kind = jax.devices()[0].device_kind
    print(f"{jax.device_count()} × {kind}" + (" (fake host devices sharing the CPU's cores: "
                                              "overhead only)" if jax.default_backend() == "cpu" else ""))
    print(f"{'config':<24}{'devices':>8}{'compile s':>10}{'median s':>10}{'tasks/s':>9}")
    results = []
    for row in rows():
        for count in counts:
            if row.meta_batch % count:
                continue
            result = {**time_row(row, _STEPS.value, task_mesh(jax.devices()[:count])),
                      "devices": count}
            results.append(result)
            print(f"{row.name:<24}{count:>8}{result['compile_s']:>10.1f}"
                  f"{result['median_s']:>10.4f}{result['tasks_per_s']:>9.1f}", flush=True)
    write_json(_OUT.value, {"jax": jax.__version__, "backend": jax.default_backend(),
                            "device_kind": kind, "rows": results})


if __name__ == "__main__":
    run(main)
