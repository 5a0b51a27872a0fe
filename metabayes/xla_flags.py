"""Defaults for $XLA_FLAGS, which XLA reads once, when its first backend starts."""
import os


def set_default_xla_flag(name: str, value: str) -> None:
    """Append ``--name=value`` to $XLA_FLAGS unless it already sets ``name`` (the user's wins)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if name not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{name}={value}".strip()
