"""How every experiment's program runs (``run(main)``), and errors it turns into one clear line."""
import contextlib
import sys
from typing import Callable, Sequence

import jax
from absl import app, flags, logging


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


def parse_flags(argv: Sequence[str]) -> Sequence[str]:
    """absl's flag parsing, where a bad flag, or a config file that raises (e.g. an unknown
    config name), ends the program with one line naming the flag and the reason, not the
    config file's traceback."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = f"{lines[0]} {lines[-1]}" if len(lines) > 1 else lines[0]
        sys.exit(f"error: {reason}")


def run(main: Callable[[Sequence[str]], None]) -> None:
    """``app.run(main)`` after ``prepare_main``, where a ValueError naming a flag (``--...``)
    or a FileNotFoundError (a data path) ends the program with its message on stderr and exit
    status 1, not a traceback."""
    def checked_main(argv: Sequence[str]) -> None:
        prepare_main(argv)
        try:
            main(argv)
        except (ValueError, FileNotFoundError) as error:
            if isinstance(error, ValueError) and "--" not in str(error):
                raise
            sys.exit(f"error: {error}")
    app.run(checked_main, flags_parser=parse_flags)
