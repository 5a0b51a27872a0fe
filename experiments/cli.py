"""What every experiment's ``main`` does first."""
from typing import Sequence

from absl import app, logging


def prepare_main(argv: Sequence[str]) -> None:
    """Reject stray positional arguments and quieten orbax and jax, which log every step at INFO."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {list(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
