"""experiments.cli.run: bad flags and missing data end the program with one message, exit 1."""
import sys

import pytest

from experiments.cli import run


def exits_with(error, monkeypatch):
    def main(argv):
        raise error
    monkeypatch.setattr(sys, "argv", ["experiment"])
    with pytest.raises(SystemExit) as exit_info:
        run(main)
    return exit_info.value.code


def test_flag_and_path_errors_end_with_their_message(monkeypatch):
    for error in (ValueError("--config.ways must be >= 1"), FileNotFoundError("no Omniglot in D")):
        assert exits_with(error, monkeypatch) == f"error: {error}"


def test_other_errors_keep_their_traceback(monkeypatch):
    with pytest.raises(ValueError, match="a bug"):
        exits_with(ValueError("a bug"), monkeypatch)


def test_stray_arguments_are_rejected(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["experiment", "stray"])
    with pytest.raises(SystemExit) as exit_info:
        run(lambda argv: None)
    assert exit_info.value.code == 1 and "unexpected arguments: ['stray']" in capsys.readouterr().err
