"""What every experiment's ``main`` does first, and errors it turns into one clear line."""
import contextlib
from typing import Sequence

import jax
from absl import app, logging


def prepare_main(argv: Sequence[str]) -> None:
    """Reject stray positional arguments and quieten orbax and jax, which log every step at INFO."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {list(argv[1:])}")
    logging.set_verbosity(logging.WARNING)


@contextlib.contextmanager
def explain_out_of_memory(stage: str, remedy: str):
    """Re-raise XLA's RESOURCE_EXHAUSTED inside the block as a MemoryError naming ``stage`` and
    the flags that size it (``remedy``), instead of a traceback from deep inside XLA."""
    try:
        yield
    except jax.errors.JaxRuntimeError as error:
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        raise MemoryError(f"{stage} ran out of memory ({str(error).splitlines()[0]}). "
                          f"{remedy}") from None
