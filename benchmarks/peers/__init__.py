"""The PyTorch peers of the step-time benchmark: MAML and ABML meta-steps written the way
PyTorch users write them, timed beside ``metabayes`` on the same machine.

    .venv-peer/bin/python -m benchmarks.peers --algo torch_abml --meta_batch 4 --steps 5

Peers (``--algo``):

* ``torch_maml``: second-order MAML as a plain Python loop over tasks
  (``torch.func.functional_call`` + ``torch.autograd.grad(create_graph=True)``,
  one backward per task);
* ``torch_abml``: ABML (Ravi & Beatson, ICLR 2019) as the same kind of loop;
* ``l2l_maml``: learn2learn's ``l2l.algorithms.MAML`` (clone / adapt / backward per task).

Modules: ``data`` (synthetic Omniglot-shaped tasks), ``conv4`` (the network, functional),
``maml``, ``abml``, ``l2l`` (one peer each), ``run`` (the command line and its JSON),
``check`` (correctness checks). Only ``torch`` (and learn2learn for ``l2l_maml``) is needed,
not jax or metabayes; build the environment with ``benchmarks/setup_peers.sh``.

Importing this package imports nothing: torch is imported by its submodules, so that code
running without torch (the JAX side of the benchmark, the tests) can still import it and ask
``torch_available()``.
"""
import importlib.util

ALGORITHMS = ("torch_maml", "torch_abml", "l2l_maml")

MISSING_TORCH = ("the PyTorch peers need torch (and learn2learn for l2l_maml); build their "
                 "environment with `bash benchmarks/setup_peers.sh .venv-peer` and run them "
                 "with .venv-peer/bin/python")


def torch_available() -> bool:
    """Whether ``import torch`` would find torch in this interpreter."""
    return importlib.util.find_spec("torch") is not None


def require_torch() -> None:
    """Raise ``ModuleNotFoundError`` saying how to get the peers' environment if torch is absent."""
    if not torch_available():
        raise ModuleNotFoundError(MISSING_TORCH, name="torch")
