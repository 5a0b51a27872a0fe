"""The peers' command line (``python -m benchmarks.peers --help``); imports nothing heavy, so
the JAX side can check the arguments it passes without torch."""
import argparse

from benchmarks.peers import ALGORITHMS

DEVICES = ("cpu", "cuda")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.peers",
        description="Time meta-training steps (inner loops, outer backward, Adam step) of one "
                    "PyTorch peer on random Omniglot-shaped tasks; print one JSON line.")
    p.add_argument("--algo", required=True, choices=ALGORITHMS)
    task = p.add_argument_group("tasks")
    task.add_argument("--ways", type=int, default=5, help="N classes per task")
    task.add_argument("--shots", type=int, default=1, help="K support images per class")
    task.add_argument("--query", type=int, default=15, help="Q query images per class")
    task.add_argument("--meta_batch", type=int, default=32, help="M tasks per meta-step")
    meta = p.add_argument_group("meta-learning")
    meta.add_argument("--inner_steps", type=int, default=5)
    meta.add_argument("--inner_lr", type=float, default=0.4,
                      help="inner SGD step on the mean cross-entropy of the support set")
    meta.add_argument("--meta_lr", type=float, default=1e-3, help="Adam's step size")
    meta.add_argument("--first_order", action="store_true",
                      help="hold the inner gradients constant (default: second order)")
    abml = p.add_argument_group("ABML (torch_abml)")
    abml.add_argument("--samples", type=int, default=1, help="S weight draws in the outer loss")
    abml.add_argument("--kl_weight", type=float, default=1e-4, help="β on KL(q ‖ p_θ)")
    abml.add_argument("--hyper_weight", type=float, default=None,
                      help="γ on −log p(θ) (default: kl_weight / meta_batch)")
    abml.add_argument("--log_sigma_init", type=float, default=-4.0, help="initial log σ_θ")
    abml.add_argument("--a0", type=float, default=1.0, help="Gamma hyperprior's shape")
    abml.add_argument("--b0", type=float, default=0.01, help="Gamma hyperprior's rate")
    run = p.add_argument_group("timing")
    run.add_argument("--steps", type=int, default=10, help="timed meta-steps")
    run.add_argument("--warmup", type=int, default=2, help="untimed meta-steps before them")
    run.add_argument("--device", choices=DEVICES, default="cpu",
                     help="where the network, its weights and the batches live (cuda: the "
                          "first GPU, cuDNN autotuned; each step synchronised before its clock "
                          "stops)")
    run.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    run.add_argument("--flush_denormal", action="store_true",
                     help="torch.set_flush_denormal(True), as XLA:CPU does by default")
    run.add_argument("--seed", type=int, default=0)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    for name in ("ways", "shots", "query", "meta_batch", "samples", "threads"):
        if getattr(args, name) < 1:
            parser().error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("inner_steps", "steps", "warmup"):
        if getattr(args, name) < 0:
            parser().error(f"--{name} must be >= 0, got {getattr(args, name)}")
    return args
