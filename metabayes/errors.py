"""The errors a user can cause (bad options or data, divergence, memory), and how an application
learns which of its settings an option came from.

Their messages name library options in backticks (`inner_lr`), so that a command line can print
them as its own flags (``experiments.cli.flag_names``).
"""
import contextlib
from typing import Mapping


class NonFiniteLossError(FloatingPointError):
    """The meta-loss or its gradient became NaN or infinite."""


class DivergenceError(FloatingPointError):
    """The meta-loss grew by orders of magnitude, or is far worse than guessing, while finite."""

    def __init__(self, what: str):
        super().__init__(
            f"{what}: meta-training diverges. Lower the inner step size `inner_lr` (inner SGD on "
            "the summed likelihood is stable only below 2 / its curvature) or `outer_lr`.")


class NonFinitePredictionError(FloatingPointError):
    """The posterior predictive of some test tasks is NaN or infinite."""


class DataError(ValueError):
    """A data file that is damaged, truncated or not in the expected layout; the message starts
    with the file's path and says what was expected."""


# What a user can cause and is told about in one line (experiments.cli), not a bug.
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, MemoryError, ImportError,
               ConnectionError)


@contextlib.contextmanager
def options_set_by(renames: Mapping[str, object]):
    """Errors raised inside the block record, as ``error.option_renames``, the settings that
    ``renames`` maps their options to: {option: key} or {option: (key, the key it falls back
    to)}, e.g. the test-time learner's `inner_steps` set by an ``eval_inner_steps`` key."""
    try:
        yield
    except USER_ERRORS as error:
        error.option_renames = {**renames, **getattr(error, "option_renames", {})}
        raise
