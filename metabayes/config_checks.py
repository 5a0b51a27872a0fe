"""Type and range rules for config keys, checked in one pass before any work.

Every key of an experiment's config has one rule (``check_config`` refuses a key without one), so
a bad value fails at once with a line naming the key, not after loading data or training:

    RULES = {"steps": integer(1), "outer_lr": number(0, open_low=True), "conv": one_of("xla", ...)}
    check_config(config, RULES)

Each rule also carries ``bad``, a value it rejects, which the tests use to walk every key.
Cross-key conditions (e.g. shots + query ≤ images per class) stay where they are checked.
"""
import dataclasses
import math
from numbers import Integral, Real
from typing import Any, Callable, Mapping, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Rule:
    """``problem(value)`` is None for a good value, else what was expected ("an integer >= 1")."""

    expected: str
    accepts: Callable[[Any], bool]
    bad: Any

    def problem(self, value) -> Optional[str]:
        return None if self.accepts(value) else self.expected


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def integer(low: int, high: Optional[int] = None) -> Rule:
    """An integer in [low, high] (no upper bound when ``high`` is None)."""
    within = f">= {low}" if high is None else f"in {low}..{high}"
    return Rule(f"an integer {within}",
                lambda v: _is_int(v) and v >= low and (high is None or v <= high), low - 1)


def number(low: float = -math.inf, high: float = math.inf, *, open_low: bool = False) -> Rule:
    """A finite real number in [low, high] ((low, high] with ``open_low``)."""
    bound = "(" if open_low else "["
    if low == -math.inf and high == math.inf:
        expected = "a finite number"
    elif high == math.inf:
        expected = f"a finite number {'>' if open_low else '>='} {low}"
    else:
        expected = f"a finite number in {bound}{low}, {high}]"
    def accepts(v):
        return (isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
                and (v > low if open_low else v >= low) and v <= high)
    bad = math.nan if low == -math.inf else (low if open_low else low - 1)
    return Rule(expected, accepts, bad)


def positive() -> Rule:
    """A finite number > 0."""
    return dataclasses.replace(number(0.0, open_low=True), expected="a positive finite number")


def one_of(*choices) -> Rule:
    return Rule(f"one of {list(choices)}", lambda v: v in choices, "not-a-choice")


BOOLEAN = Rule("True or False", lambda v: isinstance(v, bool), "yes")
TEXT = Rule("a string", lambda v: isinstance(v, str), 0)


def optional(rule: Rule) -> Rule:
    """None (unset: the documented default applies) or a value ``rule`` accepts."""
    return Rule(f"{rule.expected}, or unset", lambda v: v is None or rule.accepts(v), rule.bad)


def sequence_of(rule: Rule, length: Optional[int] = None, min_length: int = 0) -> Rule:
    """A tuple or list of values ``rule`` accepts, of ``length`` (or at least ``min_length``)."""
    size = f"{length} " if length is not None else ""
    def accepts(v):
        return (isinstance(v, (tuple, list)) and all(rule.accepts(x) for x in v)
                and (len(v) == length if length is not None else len(v) >= min_length))
    return Rule(f"a sequence of {size}values, each {rule.expected}", accepts, (rule.bad,))


def check_option(name: str, value: Any, rule: Rule, owner: str = "") -> Any:
    """``value`` if ``rule`` accepts it, else ValueError "[owner ]`name` must be ...; got ..."."""
    if (problem := rule.problem(value)) is not None:
        raise ValueError(f"{owner + ' ' if owner else ''}`{name}` must be {problem}; got {value!r}")
    return value


def check_config(config: Mapping[str, Any], rules: Mapping[str, Any], prefix: str = "") -> None:
    """ValueError naming the first key (`key`) whose value breaks its rule. ``rules`` maps each
    key to a Rule, or to a dict of rules for a nested config; a key without a rule is an error
    (every key must be checked)."""
    unruled = sorted(set(config.keys()) - set(rules))
    if unruled:
        raise KeyError(f"config keys without a rule: {[prefix + key for key in unruled]}")
    for key, value in config.items():
        rule = rules[key]
        if isinstance(rule, Mapping):
            check_config(value, rule, prefix=f"{prefix}{key}.")
        else:
            check_option(prefix + key, value, rule)


def bad_values(rules: Mapping[str, Any], prefix: str = "") -> Tuple[Tuple[str, Any], ...]:
    """(dotted key, a value its rule rejects) for every rule, nested ones included."""
    found = []
    for key, rule in rules.items():
        if isinstance(rule, Mapping):
            found.extend(bad_values(rule, prefix=f"{prefix}{key}."))
        else:
            found.append((prefix + key, rule.bad))
    return tuple(found)
