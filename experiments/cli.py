"""How every experiment's program runs (``run(main)``), and the one place where the errors a user
can cause become one line naming the ``--config.KEY`` flags to change.

Library errors name library options in backticks (`inner_lr`). ``flag_names`` turns each into
the flag that sets it: ``--config.inner_lr``, or another key where the experiment built the
library object from one (the test-time learner's `inner_steps` is ``--config.eval_inner_steps``:
``metabayes.errors.options_set_by``).
"""
import contextlib
import json
import os
import re
import sys
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import jax
from absl import app, flags, logging

from experiments.run_config import flat
from metabayes.errors import USER_ERRORS, DataError

OPTION = re.compile(r"`([\w.]+)`")


def prepare_main(argv: Sequence[str]) -> None:
    """Reject stray positional arguments and quieten orbax and jax, which log every step at INFO."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {list(argv[1:])}")
    logging.set_verbosity(logging.WARNING)


def flag_names(message: str, keys: Iterable[str], renames: Mapping[str, Any] = {}) -> str:
    """``message`` with every `option` written as the flag that sets it: ``--config.KEY`` where
    KEY (``renames[option]``, else the option itself) is one of the config's ``keys``; a rename
    to (KEY, FALLBACK) names both, "--config.KEY (unset: --config.FALLBACK)". Any other `option`
    keeps its name, without the backticks."""
    keys = set(keys)
    as_flag = lambda key: f"--config.{key}" if key in keys else key

    def flag(match: re.Match) -> str:
        key = renames.get(match[1], match[1])
        if isinstance(key, str):
            return as_flag(key)
        return f"{as_flag(key[0])} (unset: {as_flag(key[1])})"

    return OPTION.sub(flag, message)


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


class NumberListParser(flags.ListParser):
    """A comma-separated list of ``number`` (int or float), each within [``lower_bound``,
    ``upper_bound``] (None: unbounded): a bad item fails at flag parsing, so ``parse_flags``
    names the flag in one line."""

    def __init__(self, number: type = int, lower_bound: Optional[float] = None,
                 upper_bound: Optional[float] = None):
        super().__init__()
        self.number, self.lower_bound, self.upper_bound = number, lower_bound, upper_bound

    def flag_type(self) -> str:
        return f"comma-separated list of {self.number.__name__}s"

    def parse(self, argument) -> list:
        items = super().parse(argument)
        try:
            values = [self.number(item) for item in items]
        except (TypeError, ValueError):
            raise ValueError(f"expected a {self.flag_type()}") from None
        if self.lower_bound is not None and any(value < self.lower_bound for value in values):
            raise ValueError(f"expected each at least {self.lower_bound}")
        if self.upper_bound is not None and any(value > self.upper_bound for value in values):
            raise ValueError(f"expected each at most {self.upper_bound}")
        return values


def define_number_list(name: str, default: Sequence, help: str, number: type = int,
                       lower_bound: Optional[float] = None,
                       upper_bound: Optional[float] = None) -> flags.FlagHolder:
    """``flags.DEFINE_list`` whose items are ``number``s (``NumberListParser``)."""
    return flags.DEFINE(NumberListParser(number, lower_bound, upper_bound), name, default, help,
                        serializer=flags.CsvListSerializer(","))


def write_json(path: Optional[str], results: Mapping) -> None:
    """Write a run's ``results`` to ``path`` as indented JSON, making its folder; with no path
    (an unset ``--out``) nothing."""
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump(results, f, indent=1)


def is_users_error(error: BaseException) -> bool:
    """A bad option, bad or missing data, divergence or memory, not a bug: ValueErrors and
    ImportErrors count when they name an option (`option` or --flag) or are about data."""
    if isinstance(error, (FileNotFoundError, FloatingPointError, MemoryError, ConnectionError,
                          DataError)):
        return True
    return isinstance(error, USER_ERRORS) and bool(OPTION.search(str(error)) or "--" in str(error))


def run(main: Callable[[Sequence[str]], None], config: Optional[flags.FlagHolder] = None) -> None:
    """``app.run(main)`` after ``prepare_main``, where a user's error (``is_users_error``) ends
    the program with one line on stderr, its options named as ``config``'s flags, and exit
    status 1; other errors (bugs) keep their traceback."""
    def checked_main(argv: Sequence[str]) -> None:
        prepare_main(argv)
        try:
            main(argv)
        except USER_ERRORS as error:
            if not is_users_error(error):
                raise
            keys = flat(config.value) if config is not None else ()
            message = " ".join(str(error).split()) or type(error).__name__
            sys.exit(f"error: {flag_names(message, keys, getattr(error, 'option_renames', {}))}")
    app.run(checked_main, flags_parser=parse_flags)

