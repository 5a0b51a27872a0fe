"""The wheel bandit of ABML's Table 1: the environment (``wheel``), the meta-training episodes
and network (``episodes``), what an agent keeps of its pulls (``history``), the agents and the
play loop (``agents``), the head at its closed-form optimum (``exact_head``) and the steps on
the hidden layers through it (``profile_steps``), the NeuralLinear baseline
(``neural_linear``) and Table 1's protocol (``trials``)."""
from metabayes.xla_flags import set_default_xla_flag

# XLA:CPU's concurrency-optimised scheduler deadlocks (0% CPU, forever) some runs of the vmapped
# play loop, which holds Cholesky and triangular solves (jax 0.10.2: NeuralLinear acting in 6
# vmapped trials for 300 pulls hung in 5 of 8 runs; with the scheduler off, 0 of 14). It is
# turned off when this package is imported before the CPU backend starts, as the wheel-bandit
# programs do. The rest of the library keeps XLA's default: the flag was measured only here.
set_default_xla_flag("xla_cpu_enable_concurrency_optimized_scheduler", "false")
